/*
 * participants.c - the table of threads (of processes) using a ring, and
 * whether the process behind an entry is still alive.
 *
 * Each thread that operates on a ring holds one entry; the entry records the
 * claim the thread is making, which crash recovery needs to tell dead holders
 * from live ones, and how its death can be established (layout.h):
 *
 *   LOCK  (Linux) the owner holds a write lock on the entry's first byte of the
 *         segment file, an open-file-description lock (F_OFD_SETLK) taken
 *         through lock_fd, a description only its process holds. The kernel
 *         drops it when the process dies, whatever its pid namespace and under
 *         qemu-user too; a prober asks with F_OFD_GETLK through its own
 *         description (probe_fd). A free lock on an ACTIVE entry: dead, or
 *         leaving after it withdrew everything.
 *   PID   where such locks do not exist (macOS) or could not be taken: pid +
 *         start time + pid/time namespace identity, where only evidence of
 *         death counts and anything that cannot be checked is alive.
 *
 * Atomic pairs in this file:
 *   J1 (join: acq_rel CAS of state to JOINING) pairs with L1 (leave: release
 *      CAS of ACTIVE to FREE): the previous owner is done with the entry before reuse.
 *   J2 (join: release stores of the identity fields, after J1) pairs with the
 *      acquire loads of those fields by readers that re-check `state` after them
 *      (seqlock style, entry_snapshot): a reader that saw a new field also sees
 *      the state J1 wrote, so it knows the fields changed hands.
 *   J3 (join: release store ACTIVE) pairs with acquire loads of `state` by
 *      table readers: they see the identity fields of the new owner, and the
 *      lock was taken before it (a system call that returned before J3).
 *   L0 (leave: release store claim_n = 0, before the lock is dropped) pairs
 *      with recovery's acquire load of claim_n (recovery.c R2): a prober that
 *      finds the lock free, by a system call after ours, sees the withdrawal.
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
#include <sys/mman.h>

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

/* Forks this address space went through, counted in the child by a
 * pthread_atfork handler (registered at the first create or attach), which runs
 * inside fork() before anything else in the child (CPython frees other threads'
 * objects then, and their participants leave). "Is this still the process that
 * joined?" asks this, not the pid: a child in a new pid namespace can carry its
 * parent's pid number (both 1). */
static _Atomic unsigned long forks;
static pthread_once_t counting_forks = PTHREAD_ONCE_INIT;

static void count_fork(void)
{
    /* relaxed: the child is single-threaded here; later loads are its own */
    atomic_fetch_add_explicit(&forks, 1, memory_order_relaxed);
}

static void count_forks(void)
{
    pthread_atfork(NULL, NULL, count_fork);
}

unsigned long shmring__process(void)
{
    pthread_once(&counting_forks, count_forks);
    /* relaxed: only this process's own handler writes it (see count_fork) */
    return atomic_load_explicit(&forks, memory_order_relaxed);
}

/* PID liveness: only evidence makes a process dead: no such pid, a zombie, or
 * a pid now carried by a process started at another time. Anything we cannot
 * check (another namespace, /proc unreadable, out of descriptors) counts as
 * alive: recovering a live process's claim would corrupt the ring, waiting for
 * a dead one only delays. */
static int process_alive(pid_t pid, uint64_t start_time, uint64_t pid_ns)
{
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

#if defined(F_OFD_SETLK) && defined(F_OFD_GETLK)
#define SHMRING_HAVE_OFD_LOCKS 1

/* The byte of the segment file whose lock says that entry i's owner lives. */
static off_t lock_offset(const shmring_t *r, uint32_t i)
{
    return (off_t)((const unsigned char *)&r->parts[i] - (const unsigned char *)r->seg);
}

static int ofd_lock(int fd, int cmd, short type, off_t at, short *found)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl); /* l_pid must be 0 for OFD locks */
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = at;
    fl.l_len = 1;
    int rc = fcntl(fd, cmd, &fl);
    if (found)
        *found = fl.l_type;
    return rc;
}

/* 1 if some description holds entry i's write lock, 0 if none does, -1 if the
 * kernel would not say. A read-lock probe conflicts only with write locks,
 * which need write access, so a reader cannot fake a participant's life. */
static int lock_held(const shmring_t *r, uint32_t i)
{
    short found;
    if (ofd_lock(r->probe_fd, F_OFD_GETLK, F_RDLCK, lock_offset(r, i), &found) != 0)
        return -1;
    return found != F_UNLCK;
}

static int same_file(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* This process's own open file description of the segment, for its locks
 * (called with members_lock held). A description inherited across fork is the
 * parent's too, and its locks would live as long as either process: it is
 * dropped and the file opened again, through /proc (works after the name was
 * unlinked) or by name if that is still the same file. -1 if neither works. */
static int own_lock_fd(shmring_t *r)
{
    unsigned long process = shmring__process();
    if (r->lock_fd >= 0 && r->lock_process == process)
        return r->lock_fd;
    if (r->lock_fd >= 0)
        close(r->lock_fd);
    memset(r->locked, 0, sizeof r->locked); /* a new description holds nothing */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", r->probe_fd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fd = shm_open(r->name, O_RDWR | O_NONBLOCK, 0);
        if (fd >= 0 && !same_file(fd, r->probe_fd)) {
            close(fd);
            fd = -1;
        }
    }
    r->lock_fd = fd;
    r->lock_process = process;
    return fd;
}
#endif

int shmring__entry_alive(const shmring_t *r, uint32_t i, const struct shmring__entry_view *v)
{
    if (SHMRING_PART_STATUS(v->state) == SHMRING_PART_JOINING_LOCKED) {
        /* its liveness field is not written yet: only the lock can tell */
#ifdef SHMRING_HAVE_OFD_LOCKS
        return lock_held(r, i) != 0;
#else
        return 1;
#endif
    }
    if (SHMRING_PART_STATUS(v->state) == SHMRING_PART_JOINING)
        return 1;
    if (v->liveness == SHMRING_LIVENESS_PID)
        return process_alive(v->pid, v->start_time, v->pid_ns);
#ifdef SHMRING_HAVE_OFD_LOCKS
    if (v->liveness == SHMRING_LIVENESS_LOCK)
        return lock_held(r, i) != 0;
#else
    (void)r;
    (void)i;
#endif
    return 1; /* a lock we cannot probe here, or garbage: no evidence of death */
}

/* Lock entry i's byte through our description, before taking the entry (called
 * with members_lock held): 1 if locked; 0 if not (no OFD locks here, no
 * descriptor, or a reader's read lock on it: the PID fallback then); -1 if the
 * entry is not ours to take: another description holds its write lock (a joiner
 * racing us), or ours does (another thread of this handle has just taken it, and
 * unlocking after a failed CAS would drop that thread's lock). */
static int lock_entry(shmring_t *r, uint32_t i)
{
#ifdef SHMRING_HAVE_OFD_LOCKS
    uint64_t bit = UINT64_C(1) << (i % 64);
    int fd = own_lock_fd(r);
    if (fd >= 0 && (r->locked[i / 64] & bit))
        return -1;
    for (int attempt = 0; fd >= 0 && attempt < 2; attempt++) {
        if (ofd_lock(fd, F_OFD_SETLK, F_WRLCK, lock_offset(r, i), NULL) == 0) {
            r->locked[i / 64] |= bit;
            return 1;
        }
        /* What is in the way? A write lock: another joiner (or an owner) has the
         * entry, not ours to take. Nothing any more: try again. A read lock: a
         * reader squatting, which only the PID fallback gets past. */
        short found = F_UNLCK;
        if (ofd_lock(fd, F_OFD_GETLK, F_WRLCK, lock_offset(r, i), &found) != 0 || found == F_RDLCK)
            break;
        if (found == F_WRLCK)
            return -1;
    }
#else
    (void)r;
    (void)i;
#endif
    return 0;
}

/* Drop our lock on entry i, if we hold it (members_lock held). */
static void unlock_entry(shmring_t *r, uint32_t i)
{
#ifdef SHMRING_HAVE_OFD_LOCKS
    uint64_t bit = UINT64_C(1) << (i % 64);
    if (r->lock_fd >= 0 && r->lock_process == shmring__process() && (r->locked[i / 64] & bit)) {
        ofd_lock(r->lock_fd, F_OFD_SETLK, F_UNLCK, lock_offset(r, i), NULL);
        r->locked[i / 64] &= ~bit;
    }
#else
    (void)r;
    (void)i;
#endif
}

static void release_liveness(shmring_t *r, uint32_t i)
{
    pthread_mutex_lock(&r->members_lock);
    unlock_entry(r, i);
    pthread_mutex_unlock(&r->members_lock);
}

void shmring_after_fork(shmring_t *r)
{
    /* Another thread of the parent may have held the lock at fork: start afresh. */
    pthread_mutex_init(&r->members_lock, NULL);
#ifdef SHMRING_HAVE_OFD_LOCKS
    if (r->lock_fd >= 0) {
        close(r->lock_fd); /* the parent's locks stay with the parent */
        r->lock_fd = -1;
    }
    memset(r->locked, 0, sizeof r->locked);
#endif
}

int shmring__entry_snapshot(const struct shmring_participant_entry *e, struct shmring__entry_view *v)
{
    /* acquire: pairs with J3 and L1: the state says who owns the fields */
    v->state = atomic_load_explicit(&e->state, memory_order_acquire);
    /* acquire: pairs with J2, validated by the re-check of state below */
    v->pid = atomic_load_explicit(&e->pid, memory_order_acquire);
    v->start_time = atomic_load_explicit(&e->start_time, memory_order_acquire);
    v->pid_ns = atomic_load_explicit(&e->pid_ns, memory_order_acquire);
    v->liveness = atomic_load_explicit(&e->liveness, memory_order_acquire);
    /* relaxed: ordered after the field loads by their acquire */
    return atomic_load_explicit(&e->state, memory_order_relaxed) == v->state;
}

/* Take entry i whose state word is `expected`; its new state word if we got
 * it (never 0: ACTIVE), else 0. */
static uint32_t take_entry(shmring_t *r, uint32_t i, uint32_t expected, pid_t pid, uint64_t start_time,
                      uint64_t pid_ns)
{
    struct shmring_participant_entry *e = &r->parts[i];
    uint32_t gen = SHMRING_PART_GEN(expected) + 1;
    /* The lock first, then the entry: a joiner killed in between leaves an entry
     * whose death shows (JOINING_LOCKED, lock gone), never one stuck JOINING. */
    pthread_mutex_lock(&r->members_lock);
    int locked = lock_entry(r, i);
    int taken = locked >= 0;
    /* J1: pairs with L1. */
    if (taken && !atomic_compare_exchange_strong_explicit(
                     &e->state, &expected,
                     SHMRING_PART_STATE(locked ? SHMRING_PART_JOINING_LOCKED : SHMRING_PART_JOINING, gen),
                     memory_order_acq_rel, memory_order_relaxed)) {
        if (locked)
            unlock_entry(r, i);
        taken = 0;
    }
    pthread_mutex_unlock(&r->members_lock);
    if (!taken)
        return 0;
    shmring__hook(SHMRING_HOOK_JOINING);
    uint32_t liveness = locked ? SHMRING_LIVENESS_LOCK : SHMRING_LIVENESS_PID;
    uint32_t active = SHMRING_PART_STATE(SHMRING_PART_ACTIVE, gen);
    /* J2 */
    atomic_store_explicit(&e->pid, (int32_t)pid, memory_order_release);
    atomic_store_explicit(&e->start_time, start_time, memory_order_release);
    atomic_store_explicit(&e->pid_ns, pid_ns, memory_order_release);
    atomic_store_explicit(&e->liveness, liveness, memory_order_release);
    /* relaxed: published by J3 */
    atomic_store_explicit(&e->claim_n, 0, memory_order_relaxed);
    atomic_store_explicit(&e->claim_role, SHMRING_CLAIM_NONE, memory_order_relaxed);
    /* A previous owner killed in its sleep may have left its sleeper bits set. */
    shmring__clear_sleeper(r, i);
    /* J3: pairs with acquire loads of state by table readers. */
    atomic_store_explicit(&e->state, active, memory_order_release);
    return active;
}

int shmring_participant_join(shmring_t *r, shmring_participant_t **out)
{
    *out = NULL;
    if (r->readonly)
        return SHMRING_EPERM; /* attached to look, not to take part */
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
    uint32_t state = 0;
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
                if ((status != SHMRING_PART_ACTIVE && status != SHMRING_PART_JOINING_LOCKED) ||
                    shmring__entry_alive(r, i, &v) ||
                    atomic_load_explicit(&r->parts[i].claim_n, memory_order_acquire) != 0)
                    continue;
            }
            if ((state = take_entry(r, i, v.state, pid, start_time, pid_ns)) != 0)
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
    me->process = shmring__process();
    me->state = state;
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
    /* Only an entry still ours: one recovered meanwhile (its owner judged dead)
     * may have a new owner, whose announcement and lock must stay. relaxed: the
     * state only says whose the entry is, and nobody takes it from us between
     * this load and our unlock, as our lock is still held (L1 then decides). */
    if (me->process == shmring__process() &&
        atomic_load_explicit(&me->entry->state, memory_order_relaxed) == me->state) {
        struct shmring_participant_entry *e = me->entry;
        /* L0: a prober that finds our lock free below sees nothing announced */
        atomic_store_explicit(&e->claim_n, 0, memory_order_release);
        shmring__clear_sleeper(r, me->index);
        release_liveness(r, me->index);
        /* L1: pairs with J1 of the next owner. Keeps the generation. A CAS, as
         * a recoverer or joiner that found our lock free may own the entry now. */
        uint32_t active = me->state;
        atomic_compare_exchange_strong_explicit(&e->state, &active,
                                                SHMRING_PART_STATE(SHMRING_PART_FREE, SHMRING_PART_GEN(active)),
                                                memory_order_release, memory_order_relaxed);
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
        else if (SHMRING_PART_STATUS(v.state) != SHMRING_PART_FREE && shmring__entry_alive(r, i, &v))
            alive++;
    }
    return alive;
}
