/*
 * wait.c - sleeping until a ring changes, without a system call on the fast path.
 *
 * A waiter spins briefly, then sets its sleeper bit in the wait queue and
 * sleeps on the queue's futex word (Linux: shared futex; macOS 14.4+:
 * os_sync_wait_on_address with the SHARED flag; elsewhere a bounded sleep).
 * Whoever makes progress (commit, release, task_done) calls shmring__notify,
 * which only enters the kernel when some sleeper bit is set.
 *
 * Atomic pairs in this file:
 *   F1 (waiter: seq_cst fence between setting its sleeper bit and re-checking the ring)
 *   F2 (notifier: seq_cst fence between publishing progress and reading the bits)
 *      Either F2 precedes F1, and the waiter's re-check sees the progress and
 *      does not sleep, or F1 precedes F2, and the notifier sees the bit and
 *      wakes it. No wake-up is lost.
 *   N2 (notifier: release increment of the futex word) pairs with W2 (waiter:
 *      acquire load of the futex word): a waiter whose snapshot already includes
 *      the bump also sees the progress, so it never sleeps on a stale snapshot
 *      with the progress invisible.
 * Waits are bounded by the caller's slice, so timeouts and signals are handled
 * by the caller between slices.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#elif defined(__APPLE__) && defined(__has_include)
#if __has_include(<os/os_sync_wait_on_address.h>)
#include <os/os_sync_wait_on_address.h>
#define SHMRING_HAVE_OS_SYNC 1
#endif
#endif

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#if !defined(__linux__)
/* Sleep of the bounded-sleep fallback: short enough for latency, long enough
 * that an idle waiter costs well under 1% of a core. */
#define SHMRING_POLL_NS 2000000u

static int sleep_slice(uint64_t timeout_ns)
{
    uint64_t ns = timeout_ns < SHMRING_POLL_NS ? timeout_ns : SHMRING_POLL_NS;
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    if (nanosleep(&ts, NULL) != 0 && errno == EINTR)
        return SHMRING_EINTR;
    return 1;
}
#endif

/* Sleep while *word == expected, at most timeout_ns. 1: woken or the word
 * changed; 0: timed out; SHMRING_EINTR: a signal arrived. */
static int os_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t timeout_ns)
{
#if defined(__linux__)
    struct timespec ts = {(time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u)};
    /* No FUTEX_PRIVATE_FLAG: the word is in memory shared between processes. */
    if (syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, NULL, 0) == 0)
        return 1;
    if (errno == EINTR)
        return SHMRING_EINTR;
    return errno == ETIMEDOUT ? 0 : 1;
#elif defined(SHMRING_HAVE_OS_SYNC)
    if (__builtin_available(macOS 14.4, *)) {
        if (os_sync_wait_on_address_with_timeout((void *)word, expected, sizeof(uint32_t),
                                                 OS_SYNC_WAIT_ON_ADDRESS_SHARED,
                                                 OS_CLOCK_MACH_ABSOLUTE_TIME, timeout_ns) >= 0)
            return 1;
        if (errno == EINTR)
            return SHMRING_EINTR;
        return errno == ETIMEDOUT ? 0 : 1;
    }
    (void)word;
    (void)expected;
    return sleep_slice(timeout_ns);
#else
    (void)word;
    (void)expected;
    return sleep_slice(timeout_ns);
#endif
}

/* Wake every sleeper on word: 1 if one was woken, 0 if nobody was asleep
 * there, -1 if the OS does not say. */
static int os_wake_all(_Atomic uint32_t *word)
{
#if defined(__linux__)
    long woken = syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    return woken < 0 ? -1 : woken > 0;
#elif defined(SHMRING_HAVE_OS_SYNC)
    if (__builtin_available(macOS 14.4, *)) {
        if (os_sync_wake_by_address_all((void *)word, sizeof(uint32_t), OS_SYNC_WAKE_BY_ADDRESS_SHARED) == 0)
            return 1;
        return errno == ENOENT ? 0 : -1;
    }
    return -1;
#else
    (void)word; /* sleepers poll */
    return -1;
#endif
}

/* A sleeper bit with nobody asleep behind it is a waiter between setting it
 * and sleeping, or one killed in its sleep, whose bit would make every later
 * notify a system call. The second is for recovery, which frees the dead
 * entry and clears its bits; asked at most every SHMRING_REAP_NS per handle. */
#define SHMRING_REAP_NS 100000000u

static void reap_sleepers(shmring_t *r)
{
    uint64_t now = shmring_now_ns();
    /* relaxed: a process-local rate limit; a race only recovers twice */
    if (now < atomic_load_explicit(&r->reap_after_ns, memory_order_relaxed))
        return;
    atomic_store_explicit(&r->reap_after_ns, now + SHMRING_REAP_NS, memory_order_relaxed);
    shmring_recover(r);
}

static uint32_t sleeper_words(const shmring_t *r)
{
    return (r->max_participants + 63) / 64;
}

void shmring__notify(shmring_t *r, struct shmring_waitq *q)
{
    /* F2: pairs with F1. */
    atomic_thread_fence(memory_order_seq_cst);
    for (uint32_t w = 0; w < sleeper_words(r); w++) {
        /* relaxed: ordered by F2 */
        if (atomic_load_explicit(&q->sleepers[w], memory_order_relaxed) != 0) {
            /* N2: pairs with W2. */
            atomic_fetch_add_explicit(&q->futex, 1, memory_order_release);
            if (os_wake_all(&q->futex) == 0)
                reap_sleepers(r);
            return;
        }
    }
}

void shmring__clear_sleeper(const shmring_t *r, uint32_t i)
{
    struct shmring_waitq *qs[3] = {&r->seg->not_empty, &r->seg->not_full, &r->seg->join.joined};
    for (int k = 0; k < 3; k++)
        /* relaxed: the bit only tells notifiers whether to make a system call */
        atomic_fetch_and_explicit(&qs[k]->sleepers[i / 64], ~(UINT64_C(1) << (i % 64)),
                                  memory_order_relaxed);
}

/* Is the slot for position pos free to be written (read and released a lap ago)? */
static int slot_free(const shmring_t *r, uint64_t pos)
{
    /* relaxed: a hint for waiters; the claim re-reads it with acquire (P1) */
    uint32_t seq = shmring__seq_load(r, pos, memory_order_relaxed);
    return shmring__seq_diff(r, seq, shmring__state(r, pos, SHMRING_SEQ_FREE)) >= 0;
}

/* Could the operation we wait for succeed now? relaxed loads throughout: a
 * hint only, the operation itself re-reads with the right orders; F1 orders
 * these loads after our waiter registration. */
static int ready(const shmring_t *r, int what)
{
    struct shmring_segment *seg = r->seg;
    if (what == SHMRING_WAIT_READABLE) {
        uint64_t pos = atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed);
        uint32_t seq = shmring__seq_load(r, pos, memory_order_relaxed);
        return shmring__seq_diff(r, seq, shmring__state(r, pos, SHMRING_SEQ_COMMITTED)) >= 0;
    }
    if (what == SHMRING_WAIT_WRITABLE) {
        uint64_t pos = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
        uint64_t rd = atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed);
        int64_t used = (int64_t)(pos - rd);
        if (used >= 0 && (uint64_t)used >= r->maxsize)
            return 0;
        return slot_free(r, pos);
    }
    return shmring_unfinished(r) == 0;
}

/* A producer that finds the ring full spins until there is room for a run of
 * messages, not for one. Resuming at the first freed slot keeps producer and
 * consumer in lockstep at the full end: every put then re-reads read_pos and
 * the slot word the consumer has just written, and the consumer pays for each
 * steal of its lines. Measured on this project's 2-core VM with a ring held
 * full, 64-byte put_bytes/get_bytes went from about 7 to 11-14 million
 * messages/s (runs of 8: ~10.5M, 32: ~13.5M, 128: ~14M, 1024: ~13M). Only the spin waits
 * for the run: the check before sleeping is exact, so nobody sleeps while
 * there is room (that would cost the consumer a wake call per release).
 * A producer facing a full ring waits anyway; at most it waits out the spin
 * when fewer than a run's slots come free. */
#define SHMRING_SPIN_ROOM 128u

static uint64_t spin_room(const shmring_t *r)
{
    uint64_t room = r->maxsize / 8 < SHMRING_SPIN_ROOM ? r->maxsize / 8 : SHMRING_SPIN_ROOM;
    return room ? room : 1;
}

/* Is there room for `room` messages from write_pos on? relaxed loads: a hint,
 * as in ready(). The count: position pos + room - 1 is within maxsize once the
 * message maxsize positions before it was claimed, and we see that it was when
 * it has been released (read_pos stays untouched: the consumer writes it for
 * every message). The slot at pos itself must be free too: with several
 * consumers an earlier message may still be held after a later one's release. */
static int has_room(const shmring_t *r, uint64_t room)
{
    uint64_t pos = atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed);
    uint64_t last = pos + room - 1;
    if (last >= r->maxsize) {
        uint64_t gate = last - r->maxsize;
        uint32_t seq = shmring__seq_load(r, gate, memory_order_relaxed);
        if (shmring__seq_diff(r, seq, shmring__state(r, gate + r->capacity, SHMRING_SEQ_FREE)) < 0)
            return 0;
    }
    return slot_free(r, pos);
}

static struct shmring_waitq *waitq_for(const shmring_t *r, int what)
{
    switch (what) {
    case SHMRING_WAIT_READABLE: return &r->seg->not_empty;
    case SHMRING_WAIT_WRITABLE: return &r->seg->not_full;
    default: return &r->seg->join.joined;
    }
}

int shmring_wait(shmring_participant_t *me, int what, uint64_t timeout_ns, uint32_t spin)
{
    shmring_t *r = me->ring;
    uint64_t room = what == SHMRING_WAIT_WRITABLE ? spin_room(r) : 0;
    for (uint32_t i = 0; i < spin; i++) {
        if (room ? has_room(r, room) : ready(r, what))
            return 1;
        cpu_relax();
    }
    if (timeout_ns == 0)
        return ready(r, what);
    struct shmring_waitq *q = waitq_for(r, what);
    _Atomic uint64_t *word = &q->sleepers[me->index / 64];
    uint64_t bit = UINT64_C(1) << (me->index % 64);
    /* relaxed: ordered before the re-check by F1 */
    atomic_fetch_or_explicit(word, bit, memory_order_relaxed);
    /* F1: pairs with F2. */
    atomic_thread_fence(memory_order_seq_cst);
    /* W2: pairs with N2. */
    uint32_t snapshot = atomic_load_explicit(&q->futex, memory_order_acquire);
    int rc = ready(r, what) ? 1 : os_wait(&q->futex, snapshot, timeout_ns);
    /* relaxed: a stale bit only costs a notifier one spare wake call */
    atomic_fetch_and_explicit(word, ~bit, memory_order_relaxed);
    return rc;
}

void shmring_wake_all(shmring_t *r)
{
    if (r->readonly)
        return; /* nobody waits on a handle that only looks */
    struct shmring_waitq *qs[3] = {&r->seg->not_empty, &r->seg->not_full, &r->seg->join.joined};
    for (int i = 0; i < 3; i++) {
        /* release: as N2 */
        atomic_fetch_add_explicit(&qs[i]->futex, 1, memory_order_release);
        os_wake_all(&qs[i]->futex);
    }
}

uint64_t shmring_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
