/*
 * wait.c - sleeping until a ring changes, without a system call on the fast path.
 *
 * A waiter spins briefly, then sets its sleeper bit in the wait queue and
 * sleeps on the queue's futex word (Linux: shared futex; macOS 14.4+:
 * os_sync_wait_on_address with the SHARED flag; elsewhere a bounded sleep).
 * Whoever makes progress (commit, release, task_done) calls shmring__wake
 * (inline, internal.h), whose shmring__notify here enters the kernel only
 * when some sleeper bit is set. The wait queues
 * and what makes a wait end (ops->ready) are the ring kind's (kind.h); the
 * kind's wait (queue.c, shmring_queue_wait) spins on its own readiness first.
 *
 * Atomic pairs in this file:
 *   F1 (waiter: seq_cst fence between setting its sleeper bit and bumping the
 *      futex word (W3), and re-checking the ring)
 *   F2 (notifier, shmring__notify: seq_cst fence between publishing progress
 *      and reading the bits)
 *      Either F2 precedes F1, and the waiter's re-check sees the progress and
 *      does not sleep, or F1 precedes F2, and the notifier sees the bit and
 *      wakes it. No wake-up is lost.
 *   N2 (notifier: release increment of the futex word) pairs with W2 (waiter:
 *      its own acquire increment of the futex word, its snapshot): a waiter
 *      whose snapshot already includes the bump also sees the progress, so it
 *      never sleeps on a stale snapshot with the progress invisible.
 *   W3 (waiter: that increment, sequenced before F1) pairs with N3 (notifier:
 *      relaxed load of the futex word after F2, only when a sleeper bit is
 *      set). A handle remembers the word as its last wake left it (shmring_t
 *      woke); a notifier that finds it unchanged skips the wake call: every
 *      waiter asleep behind a bit bumped the word before that wake (F1 before
 *      F2 makes a later bump visible to N3), so that wake woke it or its wait
 *      returned at once on the changed word. Without this, a waiter woken but
 *      not yet run (its CPU busy with another process) cost each later progress
 *      a futex system call until it ran (a topic's 1 -> 2 subscribers on one
 *      CPU: a fifth of the publisher's time). Layout version 9 made waiters
 *      bump the word: a version 8 waiter that only loads it would be skipped.
 *      The word is 32 bits: 2^32 bumps between two of a handle's notifies
 *      would make an unchanged word of a changed one (a wake missed until the
 *      waiter's slice ends, at most SLICE_NS in the binding).
 * Waits are bounded by the caller's slice, so timeouts and signals are handled
 * by the caller between slices.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

#include "kind.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#elif defined(__APPLE__) && defined(__has_include)
#if __has_include(<os/os_sync_wait_on_address.h>)
#include <os/os_sync_wait_on_address.h>
#define SHMRING_HAVE_OS_SYNC 1
#endif
#endif

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

/* shmring_t woke[k]: bit 63 once this handle woke waitqs[k], bit 32 if that
 * wake found nobody asleep, the low 32 bits the futex word it left. */
#define WOKE_MADE (UINT64_C(1) << 63)
#define WOKE_NOBODY (UINT64_C(1) << 32)

static __attribute__((noinline)) int wake_sleepers(shmring_t *r, struct shmring_waitq *q)
{
    uint32_t k = 0;
    while (k < r->n_waitqs && r->waitqs[k] != q)
        k++;
    if (k < r->n_waitqs) {
        /* relaxed: process-local; the value it holds was left by a wake that returned */
        uint64_t last = atomic_load_explicit(&r->woke[k], memory_order_relaxed);
        /* N3: pairs with W3 (ordered after the sleeper bits by F2) */
        uint32_t now = atomic_load_explicit(&q->futex, memory_order_relaxed);
        if ((last & WOKE_MADE) && (uint32_t)last == now)
            return (last & WOKE_NOBODY) != 0; /* nobody slept since our wake: it woke them */
    }
    /* N2: pairs with W2. */
    uint32_t left = atomic_fetch_add_explicit(&q->futex, 1, memory_order_release) + 1;
    int woken = os_wake_all(&q->futex);
    int nobody = woken == 0; /* nobody asleep behind the bit */
    /* a wake that failed is no wake to skip on. A skip replays the flag of the
     * wake it skips on: a dead sleeper's bit left beside one a woken waiter
     * cleared is reaped by the next wake that moves the word (any new sleeper's
     * bump does), not by every notify meanwhile. */
    if (k < r->n_waitqs && woken >= 0)
        atomic_store_explicit(&r->woke[k], WOKE_MADE | (nobody ? WOKE_NOBODY : 0) | left, memory_order_relaxed);
    return nobody;
}

int shmring__notify(shmring_t *r, struct shmring_waitq *q)
{
    /* F2: pairs with F1. */
    atomic_thread_fence(memory_order_seq_cst);
    for (uint32_t w = 0; w < shmring__sleeper_words(r); w++)
        /* relaxed: ordered by F2 */
        if (atomic_load_explicit(&q->sleepers[w], memory_order_relaxed) != 0)
            return wake_sleepers(r, q);
    return 0;
}

void shmring__clear_sleeper(const shmring_t *r, uint32_t i)
{
    for (uint32_t k = 0; k < r->n_waitqs; k++)
        /* relaxed: the bit only tells notifiers whether to make a system call */
        atomic_fetch_and_explicit(&r->waitqs[k]->sleepers[i / 64], ~(UINT64_C(1) << (i % 64)),
                                  memory_order_relaxed);
}

uint32_t shmring__sleepers(const shmring_t *r, const struct shmring_waitq *q)
{
    uint32_t n = 0;
    for (uint32_t w = 0; w < shmring__sleeper_words(r); w++)
        /* relaxed: a snapshot for display */
        n += (uint32_t)__builtin_popcountll(atomic_load_explicit(&q->sleepers[w], memory_order_relaxed));
    return n;
}

int shmring__sleep(shmring_participant_t *me, int what, uint64_t timeout_ns)
{
    shmring_t *r = me->ring;
    struct shmring_waitq *q = r->waitqs[what];
    _Atomic uint64_t *word = &q->sleepers[me->index / 64];
    uint64_t bit = UINT64_C(1) << (me->index % 64);
    /* relaxed: ordered before the re-check by F1 */
    atomic_fetch_or_explicit(word, bit, memory_order_relaxed);
    /* W2: pairs with N2; W3, before F1: a notifier's N3 then sees the word moved */
    uint32_t snapshot = atomic_fetch_add_explicit(&q->futex, 1, memory_order_acquire) + 1;
    /* F1: pairs with F2. */
    atomic_thread_fence(memory_order_seq_cst);
    int ready = r->ops->ready_at ? r->ops->ready_at(me, what) : r->ops->ready(r, what);
    int rc = ready ? 1 : os_wait(&q->futex, snapshot, timeout_ns);
    /* relaxed: a stale bit only costs a notifier one spare wake call */
    atomic_fetch_and_explicit(word, ~bit, memory_order_relaxed);
    return rc;
}

void shmring_wake_all(shmring_t *r)
{
    if (r->readonly)
        return; /* nobody waits on a handle that only looks */
    for (uint32_t i = 0; i < r->n_waitqs; i++) {
        /* release: as N2 */
        atomic_fetch_add_explicit(&r->waitqs[i]->futex, 1, memory_order_release);
        os_wake_all(&r->waitqs[i]->futex);
    }
}

static uint64_t ns_of(const struct timespec *ts)
{
    return (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
}

uint64_t shmring_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ns_of(&ts);
}

uint64_t shmring__coarse_now_ns(void)
{
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0)
#endif
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
            return 0;
    return ns_of(&ts);
}

/* A deadline check is made for every message a get claims, and the precise
 * clock costs about as much as a fifth of a 64-byte get (16 ns on this
 * project's VM). Linux's CLOCK_MONOTONIC_COARSE (4 ns: the same clock as of
 * the last timer tick) lags it by about a tick (4 ms; 4.4 ms seen), never
 * leads it: a deadline further than SHMRING_COARSE_TRUST_NS beyond it has
 * not passed. Nearer ones read the precise clock. The limit of the trust: a
 * tick held up for longer than that (a VM resumed from a pause runs until its
 * first tick with the time of before; the vCPU that keeps time preempted by
 * its host that long) lets a message through that much after its deadline.
 * Without a coarse clock the first look is at the precise clock, and the rule
 * holds the same. */
#define SHMRING_COARSE_TRUST_NS 100000000u

int shmring_deadline_passed(shmring_clock_t *clock, uint64_t deadline_ns)
{
    if (clock->precise_ns == 0) {
        if (clock->coarse_ns == 0)
            clock->coarse_ns = shmring__coarse_now_ns();
        if (clock->coarse_ns != 0 && deadline_ns > clock->coarse_ns + SHMRING_COARSE_TRUST_NS)
            return 0;
        clock->precise_ns = shmring_now_ns();
    }
    return clock->precise_ns >= deadline_ns;
}
