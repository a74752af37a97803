/*
 * participants.c - the table of threads (of processes) using a ring.
 *
 * Each thread that operates on a ring holds one entry; the entry records the
 * owning process (pid + start time, robust against pid reuse) and the claim the
 * thread is making, which crash recovery needs to tell dead holders from live ones.
 *
 * Atomic pairs in this file:
 *   J1 (join: acquire CAS FREE -> JOINING) pairs with L1 (leave: release store
 *      FREE): the previous owner is done with the entry before we reuse it.
 *   J2 (join: release store ACTIVE) pairs with the acquire load of `state` by
 *      anyone inspecting the table (stats, liveness): they see pid/start_time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __APPLE__
#include <sys/sysctl.h>
#endif

#include "internal.h"

int shmring__process_start_time(pid_t pid, uint64_t *out)
{
#if defined(__linux__)
    /* Field 22 of /proc/PID/stat: start time in clock ticks since boot. The
     * command name (field 2) may contain spaces and ')', so parse after the last ')'. */
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return SHMRING_ESYS;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return SHMRING_ESYS;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return SHMRING_ESYS;
    for (int field = 2; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (p == NULL)
            return SHMRING_ESYS;
    }
    *out = strtoull(p + 1, NULL, 10);
    return SHMRING_OK;
#elif defined(__APPLE__)
    int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PID, (int)pid};
    struct kinfo_proc kp;
    size_t len = sizeof kp;
    if (sysctl(mib, 4, &kp, &len, NULL, 0) != 0 || len == 0)
        return SHMRING_ESYS;
    *out = (uint64_t)kp.kp_proc.p_starttime.tv_sec * 1000000u +
           (uint64_t)kp.kp_proc.p_starttime.tv_usec;
    return SHMRING_OK;
#else
    (void)pid;
    *out = 0;
    return SHMRING_OK;
#endif
}

int shmring_participant_join(shmring_t *r, shmring_participant_t **out)
{
    *out = NULL;
    pid_t pid = getpid();
    uint64_t start_time = 0;
    if (shmring__process_start_time(pid, &start_time) != SHMRING_OK)
        start_time = 0; /* liveness then falls back to the pid alone */
    shmring_participant_t *me = calloc(1, sizeof *me);
    if (me == NULL)
        return SHMRING_ENOMEM;
    for (uint32_t i = 0; i < r->max_participants; i++) {
        struct shmring_participant_entry *e = &r->parts[i];
        uint32_t expected = SHMRING_PART_FREE;
        /* J1: pairs with L1. */
        if (!atomic_compare_exchange_strong_explicit(&e->state, &expected, SHMRING_PART_JOINING,
                                                     memory_order_acquire, memory_order_relaxed))
            continue;
        /* relaxed: published by J2 */
        atomic_store_explicit(&e->pid, (int32_t)pid, memory_order_relaxed);
        atomic_store_explicit(&e->start_time, start_time, memory_order_relaxed);
        atomic_store_explicit(&e->claim_n, 0, memory_order_relaxed);
        atomic_store_explicit(&e->claim_role, SHMRING_CLAIM_NONE, memory_order_relaxed);
        /* J2: pairs with acquire loads of state by table readers. */
        atomic_store_explicit(&e->state, SHMRING_PART_ACTIVE, memory_order_release);

        me->ring = r;
        me->entry = e;
        me->pid = pid;
        /* relaxed: any value is a valid lower bound of read_pos */
        me->cached_read_pos = atomic_load_explicit(&r->seg->cons.read_pos, memory_order_relaxed);
        pthread_mutex_lock(&r->members_lock);
        me->next = r->members;
        if (r->members)
            r->members->prev = me;
        r->members = me;
        pthread_mutex_unlock(&r->members_lock);
        *out = me;
        return SHMRING_OK;
    }
    free(me);
    return SHMRING_EFULLTABLE;
}

void shmring_participant_leave(shmring_participant_t *me)
{
    if (me == NULL)
        return;
    shmring_t *r = me->ring;
    pthread_mutex_lock(&r->members_lock);
    if (me->prev)
        me->prev->next = me->next;
    else
        r->members = me->next;
    if (me->next)
        me->next->prev = me->prev;
    pthread_mutex_unlock(&r->members_lock);
    /* A forked child inherits its parent's handles but not its entries. */
    if (me->pid == getpid()) {
        /* relaxed: ordered before the entry's release by L1 */
        atomic_store_explicit(&me->entry->claim_n, 0, memory_order_relaxed);
        /* L1: pairs with J1 of the next owner. */
        atomic_store_explicit(&me->entry->state, SHMRING_PART_FREE, memory_order_release);
    }
    free(me);
}
