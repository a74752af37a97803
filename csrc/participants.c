/*
 * participants.c - the table of threads (of processes) using a ring, and
 * whether the process behind an entry is still alive.
 *
 * Each thread that operates on a ring holds one entry; the entry records the
 * owning process (pid + start time + pid namespace, robust against pid reuse)
 * and the claim the thread is making, which crash recovery needs to tell dead
 * holders from live ones.
 *
 * Atomic pairs in this file:
 *   J1 (join: acq_rel CAS of state to JOINING) pairs with L1 (leave: release
 *      store of FREE): the previous owner is done with the entry before reuse.
 *   J2 (join: release stores of the identity fields, after J1) pairs with the
 *      acquire loads of those fields by readers that re-check `state` after them
 *      (seqlock style, entry_snapshot): a reader that saw a new field also sees
 *      the state J1 wrote, so it knows the fields changed hands.
 *   J3 (join: release store ACTIVE) pairs with acquire loads of `state` by
 *      table readers: they see pid/start_time/pid_ns of the new owner.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef __APPLE__
#include <sys/sysctl.h>
#endif

#include "internal.h"

/* What the OS says about a running pid: its start time and whether it is a
 * zombie. SHMRING_OK, or an error if the OS would not say (no /proc, no file
 * descriptor left, hidden by hidepid...): the caller must then assume alive. */
static int process_info(pid_t pid, uint64_t *start_time, int *zombie)
{
#if defined(__linux__)
    /* Field 3 of /proc/PID/stat is the state, field 22 the start time in clock
     * ticks since boot. The command name (field 2) may contain spaces and ')',
     * so parse after the last ')'. */
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
    if (p == NULL || p[1] != ' ')
        return SHMRING_ESYS;
    *zombie = p[2] == 'Z' || p[2] == 'X';
    for (int field = 2; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (p == NULL)
            return SHMRING_ESYS;
    }
    *start_time = strtoull(p + 1, NULL, 10);
    if (*zombie) {
        /* The state is the main thread's: a process whose main thread exited
         * while others run shows 'Z' too. Only a single-threaded one is a zombie. */
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return SHMRING_ESYS;
        char status[4096];
        n = read(fd, status, sizeof status - 1);
        close(fd);
        if (n <= 0)
            return SHMRING_ESYS;
        status[n] = '\0';
        const char *threads = strstr(status, "\nThreads:");
        if (threads == NULL)
            return SHMRING_ESYS;
        *zombie = strtol(threads + 10, NULL, 10) <= 1;
    }
    return SHMRING_OK;
#elif defined(__APPLE__)
    int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PID, (int)pid};
    struct kinfo_proc kp;
    size_t len = sizeof kp;
    if (sysctl(mib, 4, &kp, &len, NULL, 0) != 0 || len == 0)
        return SHMRING_ESYS;
    *zombie = kp.kp_proc.p_stat == SZOMB;
    *start_time = (uint64_t)kp.kp_proc.p_starttime.tv_sec * 1000000u +
                  (uint64_t)kp.kp_proc.p_starttime.tv_usec;
    return SHMRING_OK;
#else
    (void)pid;
    *start_time = 0;
    *zombie = 0;
    return SHMRING_OK;
#endif
}

/* Identity of the pid and time namespaces we live in: pids, and the start times
 * /proc reports, mean nothing across them. */
static uint64_t own_namespaces(void)
{
    uint64_t id = 0;
#if defined(__linux__)
    struct stat st;
    if (stat("/proc/self/ns/pid", &st) == 0)
        id = (uint64_t)st.st_ino;
    if (stat("/proc/self/ns/time", &st) == 0)
        id = id * 1000003u ^ (uint64_t)st.st_ino;
#endif
    return id;
}

int shmring__process_alive(pid_t pid, uint64_t start_time, uint64_t pid_ns)
{
    /* Only evidence makes a process dead: no such pid, a zombie, or a pid now
     * carried by a process started at another time. Anything we cannot check
     * (another namespace, /proc unreadable, out of descriptors) counts as alive:
     * recovering a live process's claim would corrupt the ring, waiting for a
     * dead one only delays. */
    if (pid_ns != own_namespaces())
        return 1;
    if (pid <= 0)
        return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    uint64_t now_start = 0;
    int zombie = 0;
    if (process_info(pid, &now_start, &zombie) != SHMRING_OK)
        return 1;
    if (zombie)
        return 0; /* killed, not yet reaped by its parent */
    return start_time == 0 || now_start == start_time;
}

int shmring__entry_snapshot(const struct shmring_participant_entry *e, struct shmring__entry_view *v)
{
    /* acquire: pairs with J3 and L1: the state says who owns the fields */
    v->state = atomic_load_explicit(&e->state, memory_order_acquire);
    /* acquire: pairs with J2, validated by the re-check of state below */
    v->pid = atomic_load_explicit(&e->pid, memory_order_acquire);
    v->start_time = atomic_load_explicit(&e->start_time, memory_order_acquire);
    v->pid_ns = atomic_load_explicit(&e->pid_ns, memory_order_acquire);
    /* relaxed: ordered after the field loads by their acquire */
    return atomic_load_explicit(&e->state, memory_order_relaxed) == v->state;
}

/* Take entry i whose state word is `expected`; 1 if we got it. */
static int take_entry(shmring_t *r, uint32_t i, uint32_t expected, pid_t pid, uint64_t start_time,
                      uint64_t pid_ns)
{
    struct shmring_participant_entry *e = &r->parts[i];
    uint32_t joining = SHMRING_PART_STATE(SHMRING_PART_JOINING, SHMRING_PART_GEN(expected) + 1);
    /* J1: pairs with L1. */
    if (!atomic_compare_exchange_strong_explicit(&e->state, &expected, joining, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return 0;
    /* J2 */
    atomic_store_explicit(&e->pid, (int32_t)pid, memory_order_release);
    atomic_store_explicit(&e->start_time, start_time, memory_order_release);
    atomic_store_explicit(&e->pid_ns, pid_ns, memory_order_release);
    /* relaxed: published by J3 */
    atomic_store_explicit(&e->claim_n, 0, memory_order_relaxed);
    atomic_store_explicit(&e->claim_role, SHMRING_CLAIM_NONE, memory_order_relaxed);
    /* A previous owner killed in its sleep may have left its sleeper bits set. */
    shmring__clear_sleeper(r, i);
    /* J3: pairs with acquire loads of state by table readers. */
    atomic_store_explicit(&e->state, SHMRING_PART_STATE(SHMRING_PART_ACTIVE, SHMRING_PART_GEN(joining)),
                          memory_order_release);
    return 1;
}

int shmring_participant_join(shmring_t *r, shmring_participant_t **out)
{
    *out = NULL;
    pid_t pid = getpid();
    uint64_t start_time = 0;
    int zombie = 0;
    if (process_info(pid, &start_time, &zombie) != SHMRING_OK)
        start_time = 0; /* liveness then falls back to the pid alone */
    uint64_t pid_ns = own_namespaces();
    shmring_participant_t *me = calloc(1, sizeof *me);
    if (me == NULL)
        return SHMRING_ENOMEM;
    int got = -1;
    /* First a free entry; failing that, the entry of a process that died
     * holding no claim; failing that, recover what dead processes hold (which
     * frees their entries) and look once more. */
    for (int pass = 0; pass < 3 && got < 0; pass++) {
        if (pass == 2)
            shmring_recover(r);
        for (uint32_t i = 0; i < r->max_participants && got < 0; i++) {
            struct shmring__entry_view v;
            if (!shmring__entry_snapshot(&r->parts[i], &v))
                continue;
            uint32_t status = SHMRING_PART_STATUS(v.state);
            if (pass != 1 && status != SHMRING_PART_FREE)
                continue;
            if (pass == 1) {
                /* Dead first, then its claim: read before the death was
                 * established, a claim made just before dying could be missed
                 * and then erased. acquire: pairs with P2 / withdraw (ring.c).
                 * The CAS in take_entry fails if the entry changed hands. */
                if (status != SHMRING_PART_ACTIVE || shmring__process_alive(v.pid, v.start_time, v.pid_ns) ||
                    atomic_load_explicit(&r->parts[i].claim_n, memory_order_acquire) != 0)
                    continue;
            }
            if (take_entry(r, i, v.state, pid, start_time, pid_ns))
                got = (int)i;
        }
    }
    if (got < 0) {
        free(me);
        return SHMRING_EFULLTABLE;
    }
    me->ring = r;
    me->index = (uint32_t)got;
    me->entry = &r->parts[got];
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
        struct shmring_participant_entry *e = me->entry;
        /* relaxed: ordered before the entry's release by L1 */
        atomic_store_explicit(&e->claim_n, 0, memory_order_relaxed);
        shmring__clear_sleeper(r, me->index);
        uint32_t state = atomic_load_explicit(&e->state, memory_order_relaxed);
        /* L1: pairs with J1 of the next owner. Keeps the generation. */
        atomic_store_explicit(&e->state, SHMRING_PART_STATE(SHMRING_PART_FREE, SHMRING_PART_GEN(state)),
                              memory_order_release);
    }
    free(me);
}

uint32_t shmring__count_alive(const shmring_t *r)
{
    uint32_t alive = 0;
    for (uint32_t i = 0; i < r->max_participants; i++) {
        struct shmring__entry_view v;
        if (!shmring__entry_snapshot(&r->parts[i], &v))
            alive++; /* changing hands right now: someone is there */
        else if (SHMRING_PART_STATUS(v.state) == SHMRING_PART_JOINING ||
                 (SHMRING_PART_STATUS(v.state) == SHMRING_PART_ACTIVE &&
                  shmring__process_alive(v.pid, v.start_time, v.pid_ns)))
            alive++;
    }
    return alive;
}
