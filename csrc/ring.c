/*
 * ring.c - the bounded MPMC ring protocol (after Vyukov's bounded MPMC queue),
 * with batch claims: a producer or consumer takes k consecutive positions with
 * one CAS on write_pos / read_pos.
 *
 * Slot states (the word of the slot holding position p, see layout.h):
 *   free          the producer that claims p may fill it
 *   committed     the consumer that claims p may read it
 *   hole          abandoned by a dead producer: consumers skip it
 *   next lap free read and released: free for position p + capacity
 *
 * maxsize is exact even though capacity is a power of two: a producer claims
 * position p only while p - read_pos < maxsize (read_pos is advanced when a
 * consumer claims, so the count includes messages being read).
 *
 * Atomic pairs (label: where, order -> partner, what it makes visible):
 *   P1  put_claim  acquire load of seq   -> C3: the previous reader is done with
 *                                           the payload before we overwrite it
 *   P2  put_claim  announcement fields stored with release -> acquire loads by crash
 *                  recovery; withdrawn (claim_n = 0, release) after commit, so a
 *                  recoverer that sees it withdrawn also sees the commit
 *   P5  get_claim  release store of claim_role = GET_HELD after a successful claim ->
 *                  recovery's acquire load: every announced message was ours
 *   P3  put_claim  release CAS write_pos -> acquire loads of write_pos by crash
 *                                           recovery: a claimed position is always
 *                                           covered by its claimer's announcement
 *   P4  put_commit release store of committed -> C1: payload and len are visible
 *   C1  get_claim  acquire load of seq   -> P4
 *   C2  get_claim  release CAS read_pos  -> as P3, for consumers' announcements;
 *                                           also the acquire reload of read_pos by a
 *                                           producer that must trust read_pos <= write_pos
 *   C3  get_release release store of next-lap free -> P1
 *   T1  task_done  release CAS tasks_done -> T2: a returning join() sees the work
 *   T2  joined / task_done  acquire load tasks_done -> T1: then write_pos, loaded
 *                  after it, is at least tasks_done (so put - done cannot wrap)
 *   F1/F2 (wait.c) order "publish, then check for sleepers" against
 *         "announce sleeping, then re-check" so that no wake-up is lost.
 */
#define _GNU_SOURCE
#include <string.h>
#include <time.h>

#include "internal.h"

/* ---- test hooks ---- */

/* relaxed: test configuration, set before the operations it affects */
static _Atomic int hook_point;
static _Atomic uint64_t hook_ns;

void shmring_debug_set_hook(int point, uint64_t ns)
{
    atomic_store_explicit(&hook_ns, ns, memory_order_relaxed);
    atomic_store_explicit(&hook_point, point, memory_order_relaxed);
}

static inline void hook(int point)
{
    if (__builtin_expect(atomic_load_explicit(&hook_point, memory_order_relaxed) == point, 0)) {
        uint64_t ns = atomic_load_explicit(&hook_ns, memory_order_relaxed);
        struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
        nanosleep(&ts, NULL);
    }
}

void shmring__hook(int point)
{
    hook(point);
}

/* Ask for the lines of the slot a few positions ahead with intent to write, so
 * that taking them from the consumer's cache overlaps with the work between two
 * puts instead of stalling the next put's fence. This is what keeps single-message
 * puts fast when the cores are far apart (measured: ~1.8x on a VM whose
 * cross-core transfer takes ~190 ns). Skipped when the ring is at least half
 * full: those lines may still be the consumers' to read. */
#define SHMRING_PREFETCH_AHEAD 4

static inline void prefetch_for_write(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
    /* PREFETCHW; a no-op (NOP encoding) on the few x86 CPUs without it */
    __asm__ __volatile__("prefetchw %0" ::"m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

static inline void prefetch_next_slots(const shmring_participant_t *me, uint64_t next)
{
    const shmring_t *r = me->ring;
    uint64_t ahead = next + SHMRING_PREFETCH_AHEAD;
    if (ahead - me->cached_read_pos < r->maxsize / 2) {
        prefetch_for_write(shmring_slot_payload(r, ahead));
        prefetch_for_write(shmring__seq(r, ahead));
    }
}

static void announce(struct shmring_participant_entry *e, uint32_t role, uint64_t pos, uint32_t n)
{
    /* P2: all three release, read with acquire by recovery: a recoverer that sees
     * any field of this announcement also sees everything we did before it (the
     * commit or release of our previous claim), so a mix of old and new fields
     * can never make it take our previous slots for abandoned ones. */
    atomic_store_explicit(&e->claim_role, role, memory_order_release);
    atomic_store_explicit(&e->claim_pos, pos, memory_order_release);
    atomic_store_explicit(&e->claim_n, n, memory_order_release);
}

static void withdraw(struct shmring_participant_entry *e)
{
    /* release: a recoverer that reads 0 here (acquire) also sees our commit or
     * release of the slots, so it never mistakes them for abandoned ones. */
    atomic_store_explicit(&e->claim_n, 0, memory_order_release);
}

static int no_claim(struct shmring_participant_entry *e)
{
    withdraw(e); /* an announcement whose CAS failed: we hold nothing */
    return 0;
}

/* Has the counter moved on from *pos? If so, *pos takes its value. relaxed: a
 * guess for the next try, which the claim's CAS decides. */
static int moved_on(_Atomic uint64_t *counter, uint64_t *pos)
{
    uint64_t now = atomic_load_explicit(counter, memory_order_relaxed);
    if (now == *pos)
        return 0;
    *pos = now;
    return 1;
}

/* How many positions from pos fit before the end of the payload area. */
static inline uint64_t to_wrap(const shmring_t *r, uint64_t pos)
{
    return r->capacity - (pos & r->mask);
}

/* The first run of up to n positions from pos: it stops at the end of the payload area. */
static inline uint32_t run_at(const shmring_t *r, uint64_t pos, uint32_t n)
{
    return to_wrap(r, pos) < n ? (uint32_t)to_wrap(r, pos) : n;
}

/* Slot words are walked run by run (a run ends at the end of the ring): every
 * word of a run is expected to hold, or is given, the same value (layout.h).
 * Batches touch one word per message: these loops, not the payload memcpy,
 * bound batch throughput. */

/* Records rings pack their slot words (2 or 4 bytes), so on x86-64 a run of
 * them is checked and stored 16 bytes at a time: plain vector loads followed by
 * one acquire fence, one release fence followed by plain vector stores. This is
 * the fence form of P1/C1 (loads, then fence acquire) and P4/C3 (fence release,
 * then stores), and what the per-word atomics compile to on x86 anyway (plain
 * moves; the fences only stop the compiler). x86 reads and writes each aligned
 * word of a vector access whole. For batches of 4096 24-byte records it takes
 * ~5 instructions per slot word to well under one. In C11 terms these plain
 * accesses race with the atomics; that they work rests on x86 and on GCC and
 * clang treating the fences as compiler barriers, which is why the path is
 * limited to them. Elsewhere (aarch64: a 16-byte access at a 2-byte aligned
 * address is not promised whole words before LSE2), under ThreadSanitizer (it
 * cannot pair fences with plain accesses) and with -DSHMRING_SCALAR_WORDS, the
 * per-word atomic loops below do it all. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__SANITIZE_THREAD__) && \
    !defined(SHMRING_SCALAR_WORDS)
#define SHMRING_PACKED_VECTORS 1
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#undef SHMRING_PACKED_VECTORS
#endif
#endif
#endif

#ifdef SHMRING_PACKED_VECTORS
typedef uint64_t words2 __attribute__((vector_size(16), aligned(2)));

/* 16 bytes of `value` repeated in words of the ring's width. */
static inline words2 pattern(const shmring_t *r, uint32_t value)
{
    uint64_t lane = value * (r->seq_bytes == 2 ? UINT64_C(0x0001000100010001) : UINT64_C(0x0000000100000001));
    return (words2){lane, lane};
}

/* How many packed words from w, a multiple of 32 bytes' worth up to run, hold expect. */
static uint32_t count_packed(const shmring_t *r, const void *w, uint32_t expect, uint32_t run)
{
    const unsigned char *p = w;
    const words2 e = pattern(r, expect);
    const uint32_t per = 32 / r->seq_bytes;
    uint32_t k = 0;
    for (; k + per <= run; k += per) {
        words2 a, b;
        memcpy(&a, p + k * r->seq_bytes, sizeof a);
        memcpy(&b, p + k * r->seq_bytes + sizeof a, sizeof b);
        words2 diff = (a ^ e) | (b ^ e);
        if ((diff[0] | diff[1]) != 0)
            break; /* the scalar loop finds which word differs */
    }
    /* P1 / C1 for the words read above: pairs with C3 / P4 (either form) */
    atomic_thread_fence(memory_order_acquire);
    return k;
}

/* Store value into the packed words from w, 16 bytes at a time up to run; how many it stored. */
static uint32_t store_packed(const shmring_t *r, void *w, uint32_t value, uint32_t run)
{
    unsigned char *p = w;
    const words2 v = pattern(r, value);
    const uint32_t per = 16 / r->seq_bytes;
    uint32_t k = 0;
    /* P4 / C3 for the words stored below: pairs with C1 / P1 (either form) */
    atomic_thread_fence(memory_order_release);
    for (; k + per <= run; k += per)
        memcpy(p + k * r->seq_bytes, &v, sizeof v);
    return k;
}
#endif

/* How many slots from pos, up to max, are in state `code` for their position;
 * *last is the first word that was not (when fewer than max). acquire: P1
 * (free) / C1 (committed). */
static uint32_t count_runs(const shmring_t *r, uint64_t pos, uint32_t max, uint32_t code, uint32_t *last)
{
    uint32_t n = 0;
    *last = 0;
    while (n < max) {
        uint32_t run = run_at(r, pos + n, max - n);
        uint32_t expect = shmring__state(r, pos + n, code);
        const unsigned char *w = shmring__seq(r, pos + n);
        uint32_t k = 0;
#ifdef SHMRING_PACKED_VECTORS
        if (r->meta_shift != 3)
            k = count_packed(r, w, expect, run);
#endif
        for (; k < run; k++) {
            uint32_t seq = shmring__word_load(r, w + ((size_t)k << r->meta_shift), memory_order_acquire);
            if (seq != expect) {
                *last = seq;
                return n + k;
            }
        }
        n += run;
    }
    return n;
}

static inline uint32_t count_states(const shmring_t *r, uint64_t pos, uint32_t max, uint32_t code,
                                    uint32_t *last)
{
    if (max == 1) { /* a single message: its word alone, inlined */
        *last = shmring__seq_load(r, pos, memory_order_acquire);
        return *last == shmring__state(r, pos, code);
    }
    return count_runs(r, pos, max, code, last);
}

/* Put the slots of [pos + from, pos + to) in state `code` for their position
 * plus `ahead` (0, or capacity for the next lap), release: P4 commits, holes,
 * C3 releases. */
static void store_runs(const shmring_t *r, uint64_t pos, uint32_t from, uint32_t to, uint64_t ahead,
                       uint32_t code)
{
    for (uint32_t i = from; i < to;) {
        uint32_t run = run_at(r, pos + i, to - i);
        uint32_t value = shmring__state(r, pos + i + ahead, code);
        unsigned char *w = shmring__seq(r, pos + i);
        uint32_t k = 0;
#ifdef SHMRING_PACKED_VECTORS
        if (r->meta_shift != 3)
            k = store_packed(r, w, value, run);
#endif
        for (; k < run; k++)
            shmring__word_store(r, w + ((size_t)k << r->meta_shift), value, memory_order_release);
        i += run;
    }
}

static inline void store_states(const shmring_t *r, uint64_t pos, uint32_t from, uint32_t to, uint64_t ahead,
                                uint32_t code)
{
    if (to - from == 1) /* a single message: its word alone, inlined */
        shmring__seq_store(r, pos + from, shmring__state(r, pos + from + ahead, code), memory_order_release);
    else
        store_runs(r, pos, from, to, ahead, code);
}

/* P4: commit [pos + from, pos + to): the first `keep` of the claim as messages,
 * the rest as holes that consumers skip. Pairs with C1. */
static void publish(const shmring_t *r, uint64_t pos, uint32_t from, uint32_t to, uint32_t keep)
{
    uint32_t split = keep < from ? from : keep > to ? to : keep;
    if (from < split) /* the common single message: one call, not four (the halves, the holes) */
        store_states(r, pos, from, split, 0, SHMRING_SEQ_COMMITTED);
    if (split < to)
        store_states(r, pos, split, to, 0, SHMRING_SEQ_HOLE);
}

int shmring_put_claim(shmring_participant_t *me, uint32_t max_n, int flags, shmring_span_t *span)
{
    shmring_t *r = me->ring;
    struct shmring_segment *seg = r->seg;
    if (max_n == 0)
        return 0;
    /* relaxed: a first guess; the CAS (P3) decides. */
    uint64_t pos = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
    for (;;) {
        uint64_t used = pos - me->cached_read_pos;
        if ((int64_t)used < 0 || used + max_n > r->maxsize) {
            /* acquire (C2): read_pos <= write_pos for what we load next. The
             * slot itself is handed over by C3 -> P1. */
            me->cached_read_pos = atomic_load_explicit(&seg->cons.read_pos, memory_order_acquire);
            used = pos - me->cached_read_pos;
            if ((int64_t)used < 0) { /* our pos is stale: readers are past it */
                uint64_t now = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
                if ((int64_t)(me->cached_read_pos - now) > 0) {
                    withdraw(me->entry);
                    return SHMRING_ECORRUPT; /* readers ahead of writers */
                }
                pos = now;
                continue;
            }
            if (used >= r->maxsize)
                return no_claim(me->entry);
        }
        uint64_t room = r->maxsize - used;
        if (flags & SHMRING_CLAIM_CONTIGUOUS && to_wrap(r, pos) < room)
            room = to_wrap(r, pos);
        uint32_t want = room < max_n ? (uint32_t)room : max_n;
        uint32_t seq;
        /* P1: pairs with C3 (acquire loads inside). */
        uint32_t n = count_states(r, pos, want, SHMRING_SEQ_FREE, &seq);
        if (n == 0) {
            /* last lap's message is still being read, unless pos went stale
             * meanwhile (then the word may be laps ahead of it): look again */
            if (shmring__seq_diff(r, seq, shmring__state(r, pos, SHMRING_SEQ_FREE)) < 0) {
                if (moved_on(&seg->prod.write_pos, &pos))
                    continue;
                return no_claim(me->entry);
            }
            /* Another producer took pos, so write_pos has moved (P1 synchronised
             * with whoever wrote seq after claiming). If it has not, the slot
             * says something the counters deny: refuse rather than spin. */
            if (moved_on(&seg->prod.write_pos, &pos))
                continue;
            withdraw(me->entry);
            return SHMRING_ECORRUPT;
        }
        announce(me->entry, SHMRING_CLAIM_PUT, pos, n);
        /* P3: release publishes the announcement with the claim. On failure pos
         * is reloaded (relaxed: again only a guess). */
        if (atomic_compare_exchange_weak_explicit(&seg->prod.write_pos, &pos, pos + n,
                                                  memory_order_release, memory_order_relaxed)) {
            span->pos = pos;
            span->n = n;
            hook(SHMRING_HOOK_PUT_CLAIMED);
            return (int)n;
        }
    }
}

void shmring_put_commit_partial(shmring_participant_t *me, const shmring_span_t *span, uint32_t keep)
{
    shmring_t *r = me->ring;
    uint32_t half = span->n / 2, holes = span->n - (keep < span->n ? keep : span->n);
    publish(r, span->pos, 0, half, keep);
    hook(SHMRING_HOOK_PUT_COMMITTING);
    publish(r, span->pos, half, span->n, keep);
    if (holes)
        /* T1 (release, as a task_done): holes will never get a task_done() */
        atomic_fetch_add_explicit(&r->seg->join.tasks_done, holes, memory_order_release);
    withdraw(me->entry);
    prefetch_next_slots(me, span->pos + span->n);
    shmring__notify(r, &r->seg->not_empty);
}

void shmring_put_commit(shmring_participant_t *me, const shmring_span_t *span)
{
    shmring_put_commit_partial(me, span, span->n);
}

/* Consume the run of holes (slots abandoned by dead producers, marked by crash
 * recovery, or by an aborted reservation's commit) starting at pos: claim them
 * like messages, release them at once. */
static void skip_holes(shmring_participant_t *me, uint64_t pos)
{
    shmring_t *r = me->ring;
    uint32_t n = 0;
    /* C1: pairs with the recoverer's acq_rel CAS or the producer's P4 that made the hole. */
    while (n < UINT32_MAX &&
           shmring__seq_load(r, pos + n, memory_order_acquire) == shmring__state(r, pos + n, SHMRING_SEQ_HOLE))
        n++;
    if (n == 0)
        return; /* another consumer skipped them first */
    announce(me->entry, SHMRING_CLAIM_GET, pos, n);
    /* C2 */
    if (atomic_compare_exchange_strong_explicit(&r->seg->cons.read_pos, &pos, pos + n,
                                                memory_order_release, memory_order_relaxed)) {
        shmring_span_t span = {pos, n};
        shmring_get_release(me, &span);
    } else {
        withdraw(me->entry);
    }
}

int shmring_get_claim(shmring_participant_t *me, uint32_t max_n, int flags, shmring_span_t *span)
{
    shmring_t *r = me->ring;
    struct shmring_segment *seg = r->seg;
    if (max_n == 0)
        return 0;
    /* relaxed: a first guess; the CAS (C2) decides. */
    uint64_t pos = atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed);
    for (;;) {
        uint32_t want = max_n, seq;
        if (flags & SHMRING_CLAIM_CONTIGUOUS)
            want = run_at(r, pos, want);
        /* C1: pairs with P4 (acquire loads inside). */
        uint32_t n = count_states(r, pos, want, SHMRING_SEQ_COMMITTED, &seq);
        if (n == 0) {
            /* not committed yet: empty, unless pos went stale meanwhile */
            if (shmring__seq_diff(r, seq, shmring__state(r, pos, SHMRING_SEQ_COMMITTED)) < 0) {
                if (moved_on(&seg->cons.read_pos, &pos))
                    continue;
                return no_claim(me->entry);
            }
            if (seq == shmring__state(r, pos, SHMRING_SEQ_HOLE)) {
                skip_holes(me, pos);
            } else {
                /* Another consumer took pos, so read_pos has moved (C1
                 * synchronised with the release of pos). If it has not, the
                 * slot contradicts the counters: refuse rather than spin. */
                uint64_t now = atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed);
                if (now == pos) {
                    withdraw(me->entry);
                    return SHMRING_ECORRUPT;
                }
            }
            pos = atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed);
            continue;
        }
        announce(me->entry, SHMRING_CLAIM_GET, pos, n);
        /* C2: as P3, for the consumer's announcement. */
        if (atomic_compare_exchange_weak_explicit(&seg->cons.read_pos, &pos, pos + n,
                                                  memory_order_release, memory_order_relaxed)) {
            /* P5 */
            atomic_store_explicit(&me->entry->claim_role, SHMRING_CLAIM_GET_HELD, memory_order_release);
            span->pos = pos;
            span->n = n;
            hook(SHMRING_HOOK_GET_CLAIMED);
            return (int)n;
        }
    }
}

void shmring_get_release(shmring_participant_t *me, const shmring_span_t *span)
{
    shmring_t *r = me->ring;
    /* C3: pairs with P1. */
    if (span->n > 1)
        store_states(r, span->pos, 0, span->n / 2, r->capacity, SHMRING_SEQ_FREE);
    hook(SHMRING_HOOK_GET_RELEASING);
    store_states(r, span->pos, span->n / 2, span->n, r->capacity, SHMRING_SEQ_FREE);
    withdraw(me->entry);
    shmring__notify(r, &r->seg->not_full);
}

unsigned char *shmring_slot_payload(const shmring_t *r, uint64_t pos)
{
    return r->payload + (pos & r->mask) * r->slot_size;
}

void shmring_slot_set_len(const shmring_t *r, uint64_t pos, uint32_t len)
{
    if (!(r->flags & SHMRING_FLAG_RECORDS)) /* records are always slot_size long */
        *shmring__len(r, pos) = len;
}

int64_t shmring_slot_len(const shmring_t *r, uint64_t pos)
{
    /* Read once: a peer scribbling on the segment cannot make us copy more
     * than a slot after this check. */
    if (r->flags & SHMRING_FLAG_RECORDS)
        return (int64_t)r->slot_size;
    uint32_t len = *shmring__len(r, pos);
    return len > r->slot_size ? SHMRING_ECORRUPT : (int64_t)len;
}

int shmring_put(shmring_participant_t *me, const void *data, size_t len)
{
    shmring_t *r = me->ring;
    if (len > r->slot_size)
        return SHMRING_ETOOBIG;
    shmring_span_t span;
    int n = shmring_put_claim(me, 1, 0, &span);
    if (n <= 0)
        return n;
    memcpy(shmring_slot_payload(r, span.pos), data, len);
    shmring_slot_set_len(r, span.pos, (uint32_t)len);
    shmring_put_commit(me, &span);
    return 1;
}

int shmring_get(shmring_participant_t *me, void *buf, size_t buf_size, size_t *len)
{
    shmring_t *r = me->ring;
    if (buf_size < r->slot_size)
        return SHMRING_EINVAL;
    shmring_span_t span;
    int n = shmring_get_claim(me, 1, 0, &span);
    if (n <= 0)
        return n;
    int64_t l = shmring_slot_len(r, span.pos);
    if (l >= 0)
        memcpy(buf, shmring_slot_payload(r, span.pos), (size_t)l);
    shmring_get_release(me, &span);
    if (l < 0)
        return (int)l;
    *len = (size_t)l;
    return 1;
}

void shmring_copy_span(const shmring_t *r, const shmring_span_t *span, void *buf, int into_ring)
{
    uint64_t n = span->n, first = run_at(r, span->pos, span->n);
    unsigned char *slot = shmring_slot_payload(r, span->pos), *b = buf;
    if (into_ring) {
        memcpy(slot, b, first * r->slot_size);
        memcpy(r->payload, b + first * r->slot_size, (n - first) * r->slot_size);
    } else {
        memcpy(b, slot, first * r->slot_size);
        memcpy(b + first * r->slot_size, r->payload, (n - first) * r->slot_size);
    }
}

int64_t shmring_put_records(shmring_participant_t *me, const void *src, uint64_t n)
{
    shmring_span_t span;
    int k = shmring_put_claim(me, n < UINT32_MAX ? (uint32_t)n : UINT32_MAX, 0, &span);
    if (k > 0) {
        shmring_copy_span(me->ring, &span, (void *)src, 1);
        shmring_put_commit(me, &span);
    }
    return k;
}

int64_t shmring_get_records(shmring_participant_t *me, void *dst, uint64_t max_n)
{
    shmring_span_t span;
    int k = shmring_get_claim(me, max_n < UINT32_MAX ? (uint32_t)max_n : UINT32_MAX, 0, &span);
    if (k > 0) {
        shmring_copy_span(me->ring, &span, dst, 0);
        shmring_get_release(me, &span);
    }
    return k;
}

int shmring_task_done(shmring_participant_t *me, uint64_t n)
{
    shmring_t *r = me->ring;
    struct shmring_segment *seg = r->seg;
    /* T2: the write_pos loaded below is at least this. */
    uint64_t done = atomic_load_explicit(&seg->join.tasks_done, memory_order_acquire);
    uint64_t put;
    do {
        /* relaxed: an upper bound for tasks_done (T2 orders it after done) */
        put = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
        if (n > put - done)
            return SHMRING_EJOIN;
        /* T1: pairs with T2; on failure, acquire as T2. */
    } while (!atomic_compare_exchange_weak_explicit(&seg->join.tasks_done, &done, done + n,
                                                    memory_order_release, memory_order_acquire));
    if (done + n == put)
        shmring__notify(r, &seg->join.joined);
    return SHMRING_OK;
}

uint64_t shmring_unfinished(const shmring_t *r)
{
    /* T2: pairs with T1. Load tasks_done first: tasks_done <= write_pos at every
     * instant, so done >= put below means both were equal in between. */
    uint64_t done = atomic_load_explicit(&r->seg->join.tasks_done, memory_order_acquire);
    /* relaxed: write_pos publishes nothing join() needs */
    uint64_t put = atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed);
    return put > done ? put - done : 0;
}

int shmring_stuck(const shmring_t *r, int what, uint64_t *pos)
{
    struct shmring_segment *seg = r->seg;
    if (r->readonly)
        return 0; /* it has no slots to look at (segment.c, snapshot) */
    /* relaxed throughout: a hint that decides whether recovery is worth running */
    if (what == SHMRING_WAIT_READABLE) {
        uint64_t rp = atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed);
        uint32_t seq = shmring__seq_load(r, rp, memory_order_relaxed);
        uint64_t wp = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
        *pos = rp;
        /* claimed by a producer, not committed */
        return seq == shmring__state(r, rp, SHMRING_SEQ_FREE) && (int64_t)(wp - rp) > 0;
    }
    if (what == SHMRING_WAIT_WRITABLE) {
        uint64_t wp = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
        uint32_t seq = shmring__seq_load(r, wp, memory_order_relaxed);
        uint64_t rp = atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed);
        uint64_t prev = wp - r->capacity; /* the position the slot held last lap */
        *pos = wp;
        /* claimed by a consumer (read_pos is past it), not released */
        return (seq == shmring__state(r, prev, SHMRING_SEQ_COMMITTED) ||
                seq == shmring__state(r, prev, SHMRING_SEQ_HOLE)) &&
               (int64_t)(rp - prev) > 0;
    }
    return 0;
}

static uint32_t count_sleepers(const shmring_t *r, const struct shmring_waitq *q)
{
    uint32_t n = 0;
    for (uint32_t w = 0; w < (r->max_participants + 63) / 64; w++)
        /* relaxed: a snapshot for display */
        n += (uint32_t)__builtin_popcountll(atomic_load_explicit(&q->sleepers[w], memory_order_relaxed));
    return n;
}

void shmring_get_stats(const shmring_t *r, shmring_stats_t *out)
{
    struct shmring_segment *seg = r->seg;
    /* A snapshot for display and qsize(), documented as approximate. read_pos
     * first, with acquire (C2), so that write_pos loaded after it is at least
     * read_pos and write_pos - read_pos cannot wrap; likewise tasks_done (T2). */
    out->read_pos = atomic_load_explicit(&seg->cons.read_pos, memory_order_acquire);
    out->tasks_done = atomic_load_explicit(&seg->join.tasks_done, memory_order_acquire);
    out->write_pos = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
    out->readers_waiting = count_sleepers(r, &seg->not_empty);
    out->writers_waiting = count_sleepers(r, &seg->not_full);
    /* relaxed: counters for display */
    out->lost = atomic_load_explicit(&seg->stats.lost, memory_order_relaxed);
    out->recoveries = atomic_load_explicit(&seg->stats.recoveries, memory_order_relaxed);
}

uint32_t shmring_participants_alive(const shmring_t *r)
{
    return shmring__count_alive(r);
}

void shmring_get_info(const shmring_t *r, shmring_info_t *out)
{
    /* written once by the creator before the magic published the segment */
    out->creator_pid = r->seg->hdr.creator_pid;
    out->created_unix_ns = r->seg->hdr.created_unix_ns;
    out->mapped_size = r->mapped_size;
    out->participants = 0;
    for (uint32_t i = 0; i < r->max_participants; i++)
        /* relaxed: a count for display */
        out->participants += SHMRING_PART_STATUS(atomic_load_explicit(&r->parts[i].state, memory_order_relaxed)) !=
                             SHMRING_PART_FREE;
    out->participants_alive = shmring__count_alive(r);
}
