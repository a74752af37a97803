/*
 * queue.c - the bounded MPMC queue protocol (after Vyukov's bounded MPMC queue),
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
 *   P3  put_claim  release CAS write_pos -> acquire loads of write_pos by crash
 *                                           recovery: a claimed position is always
 *                                           covered by its claimer's announcement
 *   P4  put_commit release store of committed -> C1: payload and len are visible
 *   P5  get_claim  release store of claim_role = GET_HELD (GET_SUPERVISED) after a successful claim ->
 *                  recovery's acquire load: every announced message was ours
 *   C1  get_claim  acquire load of seq   -> P4
 *   C2  get_claim  release CAS read_pos  -> as P3, for consumers' announcements;
 *                                           also the acquire reload of read_pos by a
 *                                           producer that must trust read_pos <= write_pos
 *   C3  get_release release store of next-lap free -> P1
 *   T1  shmring__queue_add_done (queue_recovery.c; for task_done, holes,
 *                  discards, lost messages: R5) release
 *                  CAS tasks_done, to at most the write_pos loaded after T2 ->
 *                  T2: a returning join() sees the work
 *   T2  joined / add_done  acquire load tasks_done -> T1: then write_pos, loaded
 *                  after it, is at least tasks_done (so put - done cannot wrap,
 *                  and T1's cap keeps it so: tasks_done <= write_pos always)
 *   V1  validate (attach) acquire loads of read_pos, tasks_done, write_pos -> C2, T1:
 *                  a live ring then shows read_pos, tasks_done <= write_pos
 *   Shut-down (shmring_queue_shutdown; the flags: layout.h):
 *   D1  shutdown   release fetch_or of DRAINING (and DISCARDING) into read_pos
 *                  -> D3; C2 is a CAS on the same word, so no get claim succeeds
 *                  after DISCARDING, and every later one sees DRAINING
 *   D2  seal       release fetch_or of SHUT into write_pos (shmring__seal,
 *                  internal.h), after D1 (by the shutdown, or by whoever finds
 *                  read_pos flagged and write_pos not: after its acquire load
 *                  of read_pos, so D1 happens before it) -> D3. P3 is a CAS on
 *                  the same word: each claim is before D2 in its modification
 *                  order (within the end D2 leaves) or fails; no order is
 *                  needed for that, release is for D3
 *   D3  refusals   acquire re-load of the counter whose flag refused a call, or
 *                  said drained (shut_down, drained) -> D1 / D2: a call that raises
 *                  ShutDown sees what the shutting-down thread did before
 *                  shutdown(). The flags themselves are tested on values the claims
 *                  load anyway (the relaxed first guess, the CAS's failure): the
 *                  hot path pays a test of a bit, no load, no order
 *   D4  drained    relaxed load of write_pos after D3's load of read_pos: D2
 *                  happens before it, and a shut write_pos moves no more, so it is
 *                  the final end; read_pos there means every message was claimed
 *   D5  discard    release store of claim_role = GET_COUNTED before counting ->
 *                  recovery's acquire load (R2): a discarder killed before it is a
 *                  dead consumer whose claim recovery counts as lost; after it,
 *                  the count is the discarder's
 *   D6  a joiner after an immediate shutdown sleeps on not_empty (a late commit
 *                  wakes that queue, never joined): its discard's RMW of SHUT
 *                  into write_pos, then its sleeper bit, F1 (wait.c), then its
 *                  re-check (ready_at: unfinished, the slot at read_pos);
 *                  against a waker of joiners (queue_recovery.c, shmring__queue_wake_joiners):
 *                  its progress (T1), F2 of its wake of joined, then a relaxed
 *                  load of write_pos and, shut, a wake of not_empty. Either F2
 *                  precedes F1 and the re-check sees the progress, or F1
 *                  precedes F2 and the load sees SHUT (an RMW sequenced before
 *                  F1) and the wake the bit. A late commit: P4, F2 against F1
 *                  and the slot's word, as for any getter
 *   Deadlines (the queue's area, layout.h):
 *   E1  set_expiry relaxed stores of `expiring` (once) and of the slot's entry,
 *                  between the claim and P4 -> E2: P4 / C1 order them, so a
 *                  consumer that acquired the commit sees the flag and the entry
 *   E2  live_run   relaxed loads of `expiring` and the entries, after C1 (the
 *                  entry of a position is written only by its claimer, before
 *                  its commit, and read only by its consumer, before C3)
 *   E3  put claim  relaxed load of `expiring`, after P1, and stores clearing the
 *                  claimed slots' entries: a slot whose entry an earlier lap's
 *                  claimer wrote (after setting `expiring`: E1) came to us
 *                  through P4 -> C1 -> C3 -> P1, so the flag is seen. A claimer
 *                  that died is past by the time recovery runs. A claim with
 *                  SHMRING_CLAIM_EXPIRY_SET leaves the entries to its caller's
 *                  E1, which stores every one of them before the commit.
 *   P1, C1 of runs of more than one slot, and P4, C3 likewise, are slots.c's:
 *         per-word acquire loads / release stores, or on x86-64 outside TSan
 *         plain 16-byte accesses after an acquire fence / before a release
 *         fence (the vector path; its own stress rows, test_c_core.py).
 *   F1/F2, N2/W2 (wait.c) order "publish, then check for sleepers" against
 *         "announce sleeping, then re-check" so that no wake-up is lost; the
 *         waits' readiness checks (ready, has_room) are relaxed hints ordered
 *         by F1.
 *   Recovery's side of P2, P3, P5, C2 (R1, R2) and of P1/C1 (R3): queue_recovery.c.
 */
#define _GNU_SOURCE
#include <string.h>

#include "queue.h"

/* Ask for the lines of the slot a few positions ahead with intent to write, so
 * that taking them from the consumer's cache overlaps with the work between two
 * puts instead of stalling the next put's fence. This is what keeps single-message
 * puts fast when the cores are far apart (measured: ~1.8x on a VM whose
 * cross-core transfer takes ~190 ns). Skipped when the ring is at least half
 * full: those lines may still be the consumers' to read. */
#define SHMRING_PREFETCH_AHEAD 4
/* (shmring__prefetch_for_write: slots.h) */

static inline void prefetch_next_slots(const shmring_participant_t *me, uint64_t next)
{
    const shmring_t *r = me->ring;
    uint64_t ahead = next + SHMRING_PREFETCH_AHEAD;
    if (ahead - me->cached_read_pos < r->maxsize / 2) {
        shmring__prefetch_for_write(shmring__slot_payload(r, ahead));
        shmring__prefetch_for_write(shmring__seq(r, ahead));
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

/* A call refused because the queue is shut down: `counter`'s flag said so. D3:
 * acquire, pairs with D1 / D2 (whose release sequence holds every later value). */
static int shut_down(struct shmring_participant_entry *e, _Atomic uint64_t *counter)
{
    withdraw(e);
    (void)atomic_load_explicit(counter, memory_order_acquire);
    return SHMRING_ESHUTDOWN;
}

/* Shut down and drained: read_pos flagged, and at the final end (a getter that
 * found nothing looks; so do waits). D3, D4; seals write_pos if need be. */
static int drained(struct shmring_segment *seg)
{
    uint64_t rp = atomic_load_explicit(&seg->cons.read_pos, memory_order_acquire); /* D3 */
    if (!(rp & SHMRING_DRAINING))
        return 0;
    return shmring_pos(rp) == shmring__seal(seg); /* D4 */
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

/* P4: commit [pos + from, pos + to): the first `keep` of the claim as messages,
 * the rest as holes that consumers skip. Pairs with C1. */
static void publish(const shmring_t *r, uint64_t pos, uint32_t from, uint32_t to, uint32_t keep)
{
    uint32_t split = keep < from ? from : keep > to ? to : keep;
    if (from < split) /* the common single message: one call, not four (the halves, the holes) */
        shmring__store_states(r, pos, from, split, 0, SHMRING_SEQ_COMMITTED);
    if (split < to)
        shmring__store_states(r, pos, split, to, 0, SHMRING_SEQ_HOLE);
}

/* ---- message deadlines (the queue's area, layout.h): the put side ---- */

static inline struct shmring_queue_area *queue_area(const shmring_t *r)
{
    return (struct shmring_queue_area *)r->kind_area;
}

static inline struct shmring_expiry *expiry_entry(const shmring_t *r, uint64_t pos)
{
    return (struct shmring_expiry *)(r->kind_area + SHMRING_LINE) + (pos & r->mask);
}

/* A put claim's: clear the deadlines its slots held on an earlier lap, once
 * any message has had one. E3: relaxed, after P1 (count_states): whoever wrote
 * a deadline into one of these slots set `expiring` first, and its commit
 * reached us through the consumer's release of the slot, so we see the flag. */
static inline void clear_expiries(const shmring_t *r, uint64_t pos, uint32_t n)
{
    if (__builtin_expect(!atomic_load_explicit(&queue_area(r)->expiring, memory_order_relaxed), 1))
        return;
    for (uint32_t i = 0; i < n; i++)
        atomic_store_explicit(&expiry_entry(r, pos + i)->deadline_ns, 0, memory_order_relaxed);
}

/* shmring_queue_put_claim's body, inlined into the single-message put too */
static inline int put_claim(shmring_participant_t *me, uint32_t max_n, int flags, shmring_span_t *span)
{
    shmring_t *r = me->ring;
    struct shmring_segment *seg = r->seg;
    if (max_n == 0)
        return 0;
    /* relaxed: a first guess; the CAS (P3) decides. It carries SHMRING_SHUT,
     * tested at once: the whole cost of shut-down to a put. */
    uint64_t pos = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
    for (;;) {
        if (__builtin_expect(pos & SHMRING_SHUT, 0))
            return shut_down(me->entry, &seg->prod.write_pos);
        uint64_t used = pos - me->cached_read_pos;
        if ((int64_t)used < 0 || used + max_n > r->maxsize) {
            /* acquire (C2): read_pos <= write_pos for what we load next. The
             * slot itself is handed over by C3 -> P1. */
            uint64_t rp = atomic_load_explicit(&seg->cons.read_pos, memory_order_acquire);
            if (__builtin_expect(rp & SHMRING_COUNTER_FLAGS, 0)) {
                /* shutting down (D1 seen with acquire: D3): make sure no claim
                 * succeeds, then refuse at the top (a producer blocked on a full
                 * queue whose shutdown was killed midway completes it) */
                pos = shmring__seal(seg) | SHMRING_SHUT;
                continue;
            }
            me->cached_read_pos = rp;
            used = pos - me->cached_read_pos;
            if ((int64_t)used < 0) { /* our pos is stale: readers are past it */
                uint64_t now = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
                if ((int64_t)(me->cached_read_pos - shmring_pos(now)) > 0) {
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
        if (flags & SHMRING_CLAIM_CONTIGUOUS && shmring__to_wrap(r, pos) < room)
            room = shmring__to_wrap(r, pos);
        uint32_t want = room < max_n ? (uint32_t)room : max_n;
        uint32_t seq;
        /* P1: pairs with C3 (acquire loads inside). */
        uint32_t n = shmring__count_states(r, pos, want, SHMRING_SEQ_FREE, &seq);
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
            if (!(flags & SHMRING_CLAIM_EXPIRY_SET)) /* else the caller writes them: one store, not two */
                clear_expiries(r, pos, n);
            shmring__hook(SHMRING_HOOK_PUT_CLAIMED);
            return (int)n;
        }
    }
}

int shmring_queue_put_claim(shmring_participant_t *me, uint32_t max_n, int flags, shmring_span_t *span)
{
    return put_claim(me, max_n, flags, span);
}

void shmring_queue_put_commit_partial(shmring_participant_t *me, const shmring_span_t *span, uint32_t keep)
{
    shmring_t *r = me->ring;
    uint32_t half = span->n / 2, holes = span->n - (keep < span->n ? keep : span->n);
    publish(r, span->pos, 0, half, keep);
    shmring__hook(SHMRING_HOOK_PUT_COMMITTING);
    publish(r, span->pos, half, span->n, keep);
    int reached = 0;
    if (holes) /* they will never get a task_done() */
        shmring__queue_add_done(r->seg, holes, 0, &reached);
    withdraw(me->entry);
    prefetch_next_slots(me, span->pos + span->n);
    shmring__wake(r, &r->seg->not_empty);
    if (reached)
        shmring__queue_wake_joiners(r);
}

void shmring_queue_put_commit(shmring_participant_t *me, const shmring_span_t *span)
{
    shmring_queue_put_commit_partial(me, span, span->n);
}

/* Claim the n positions from pos (read_pos as loaded: `word`, with its flags,
 * which the CAS keeps) and release them at once, handing nothing out: a run of
 * holes (counted by whoever made them) or of expired messages (counted here,
 * in stats.expired and done for join()). Another consumer may take them first. */
static void drop_run(shmring_participant_t *me, uint64_t word, uint64_t pos, uint32_t n, int expired)
{
    announce(me->entry, SHMRING_CLAIM_GET, pos, n);
    /* C2 */
    if (!atomic_compare_exchange_strong_explicit(&me->ring->seg->cons.read_pos, &word, word + n,
                                                 memory_order_release, memory_order_relaxed)) {
        withdraw(me->entry);
        return;
    }
    shmring_span_t span = {pos, n};
    if (expired) {
        /* as D5: killed after it, our count stands; before it (role GET, claimed),
         * recovery counts them lost instead. Either way once. */
        atomic_store_explicit(&me->entry->claim_role, SHMRING_CLAIM_GET_COUNTED, memory_order_release);
        shmring__queue_count_done(me->ring->seg, &me->ring->seg->stats.expired, n);
    }
    shmring_queue_get_release(me, &span);
    if (expired)
        shmring__queue_wake_joiners(me->ring);
}

/* Consume the run of holes (slots abandoned by dead producers, marked by crash
 * recovery, or by an aborted reservation's commit) starting at pos. */
static void skip_holes(shmring_participant_t *me, uint64_t word, uint64_t pos)
{
    shmring_t *r = me->ring;
    uint32_t n = 0;
    /* C1: pairs with the recoverer's acq_rel CAS or the producer's P4 that made the hole. */
    while (n < UINT32_MAX &&
           shmring__seq_load(r, pos + n, memory_order_acquire) == shmring__state(r, pos + n, SHMRING_SEQ_HOLE))
        n++;
    if (n)
        drop_run(me, word, pos, n, 0); /* else another consumer skipped them first */
}

/* ---- message deadlines: the get side ---- */

int shmring_queue_expiry(const shmring_t *r, uint64_t pos, uint64_t *deadline_ns)
{
    /* E2: relaxed, after the claim's C1 */
    if (!atomic_load_explicit(&queue_area(r)->expiring, memory_order_relaxed))
        return 0;
    *deadline_ns = atomic_load_explicit(&expiry_entry(r, pos)->deadline_ns, memory_order_relaxed);
    return *deadline_ns != 0;
}

void shmring_queue_set_expiry(const shmring_t *r, uint64_t pos, uint32_t n, uint64_t deadline_ns)
{
    /* E1: relaxed, ordered before the commit by P4 */
    if (!atomic_load_explicit(&queue_area(r)->expiring, memory_order_relaxed))
        atomic_store_explicit(&queue_area(r)->expiring, 1, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++)
        atomic_store_explicit(&expiry_entry(r, pos + i)->deadline_ns, deadline_ns, memory_order_relaxed);
}

void shmring_queue_count_expired(shmring_t *r, uint64_t n)
{
    if (!r->readonly)
        atomic_fetch_add_explicit(&r->seg->stats.expired, n, memory_order_relaxed); /* a statistic */
}

/* Has the message at pos a deadline that passed? The clock: read at the first
 * deadline met (one clock read a claim). */
static int expired_at(const shmring_t *r, uint64_t pos, shmring_clock_t *clock)
{
    uint64_t deadline;
    return shmring_queue_expiry(r, pos, &deadline) && shmring_deadline_passed(clock, deadline);
}

/* Entries ahead of a get that it asks the cache for: two 64-byte lines on. */
#define EXPIRY_PREFETCH_AHEAD 16u

/* Most expired messages one drop takes: a get of one message that meets a
 * backlog of them drops it in runs this long, not one at a time. */
#define DROP_MAX 4096u

/* Of the n committed messages from pos: how many lead before the first whose
 * deadline passed. 0: the first has; then *expired says how many in a row. */
static uint32_t live_run(const shmring_t *r, uint64_t pos, uint32_t n, uint32_t *expired)
{
    shmring_clock_t clock = {0, 0};
    uint32_t i = 0;
    while (i < n && !expired_at(r, pos + i, &clock))
        i++;
    if (i > 0)
        return i;
    while (i < n && expired_at(r, pos + i, &clock))
        i++;
    *expired = i;
    return 0;
}

/* A get claim (discarding 0), or a discarder's after an immediate shutdown
 * (discarding SHMRING_DISCARDING): a claim that finds read_pos's DISCARDING
 * flag other than its own refuses. The CAS keeps the flags. */
static inline int get_claim(shmring_participant_t *me, uint32_t max_n, int flags, shmring_span_t *span,
                            uint64_t discarding)
{
    shmring_t *r = me->ring;
    struct shmring_segment *seg = r->seg;
    if (max_n == 0)
        return 0;
    /* relaxed: a first guess; the CAS (C2) decides. It carries the shut-down
     * flags, tested at once (D3): the whole cost of shut-down to a get. */
    uint64_t word = atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed);
    for (;;) {
        if (__builtin_expect((word & SHMRING_DISCARDING) != discarding, 0)) {
            if (discarding)
                return no_claim(me->entry); /* never: the flag stays once set */
            int rc = shut_down(me->entry, &seg->cons.read_pos);
            shmring__seal(seg); /* no claim after it (D3 made D1 happen before) */
            return rc;
        }
        uint64_t pos = shmring_pos(word);
        uint32_t want = max_n, seq;
        if (flags & SHMRING_CLAIM_CONTIGUOUS)
            want = shmring__run_at(r, pos, want);
        /* C1: pairs with P4 (acquire loads inside). */
        uint32_t n = shmring__count_states(r, pos, want, SHMRING_SEQ_COMMITTED, &seq);
        /* E2: relaxed, after C1; tested first, the whole cost to a queue without deadlines */
        if (__builtin_expect(atomic_load_explicit(&queue_area(r)->expiring, memory_order_relaxed), 0) &&
            n > 0 && !(flags & SHMRING_CLAIM_EXPIRED) && !discarding) {
            uint32_t expired = 0;
            /* the entries a few lines on, so that their transfer from the
             * producer's cache overlaps this get instead of stalling a later
             * one (measured, 64-byte gets of one message: 0.88 -> 0.90-0.93 of
             * the rate without deadlines) */
            __builtin_prefetch(expiry_entry(r, pos + EXPIRY_PREFETCH_AHEAD), 0, 3);
            n = live_run(r, pos, n, &expired);
            if (n == 0) { /* never handed out: dropped, counted, and on to what follows */
                if (expired == want && want < DROP_MAX) { /* a backlog: drop it in large runs (C1 again) */
                    uint32_t wide = shmring__count_states(r, pos, DROP_MAX, SHMRING_SEQ_COMMITTED, &seq);
                    (void)live_run(r, pos, wide, &expired);
                }
                drop_run(me, word, pos, expired, 1);
                word = atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed);
                continue;
            }
        }
        if (n == 0) {
            /* not committed yet: empty, unless pos went stale meanwhile */
            if (shmring__seq_diff(r, seq, shmring__state(r, pos, SHMRING_SEQ_COMMITTED)) < 0) {
                if (moved_on(&seg->cons.read_pos, &word))
                    continue;
                if (__builtin_expect(word & SHMRING_DRAINING, 0) && drained(seg))
                    return shut_down(me->entry, &seg->cons.read_pos);
                return no_claim(me->entry);
            }
            if (seq == shmring__state(r, pos, SHMRING_SEQ_HOLE)) {
                skip_holes(me, word, pos);
            } else {
                /* Another consumer took pos, so read_pos has moved (C1
                 * synchronised with the release of pos). If it has not, the
                 * slot contradicts the counters: refuse rather than spin. */
                uint64_t now = atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed);
                if (now == word) {
                    withdraw(me->entry);
                    return SHMRING_ECORRUPT;
                }
            }
            word = atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed);
            continue;
        }
        announce(me->entry, SHMRING_CLAIM_GET, pos, n);
        /* C2: as P3, for the consumer's announcement. */
        if (atomic_compare_exchange_weak_explicit(&seg->cons.read_pos, &word, word + n,
                                                  memory_order_release, memory_order_relaxed)) {
            /* P5 */
            atomic_store_explicit(&me->entry->claim_role,
                                  flags & SHMRING_CLAIM_SUPERVISED ? SHMRING_CLAIM_GET_SUPERVISED : SHMRING_CLAIM_GET_HELD,
                                  memory_order_release);
            span->pos = pos;
            span->n = n;
            shmring__hook(SHMRING_HOOK_GET_CLAIMED);
            return (int)n;
        }
    }
}

int shmring_queue_get_claim(shmring_participant_t *me, uint32_t max_n, int flags, shmring_span_t *span)
{
    return get_claim(me, max_n, flags, span, 0);
}

void shmring_queue_get_release(shmring_participant_t *me, const shmring_span_t *span)
{
    shmring_t *r = me->ring;
    /* C3: pairs with P1. */
    if (span->n > 1)
        shmring__store_states(r, span->pos, 0, span->n / 2, r->capacity, SHMRING_SEQ_FREE);
    shmring__hook(SHMRING_HOOK_GET_RELEASING);
    shmring__store_states(r, span->pos, span->n / 2, span->n, r->capacity, SHMRING_SEQ_FREE);
    withdraw(me->entry);
    shmring__wake(r, &r->seg->not_full);
}

int shmring_queue_put_deadline(shmring_participant_t *me, const void *data, size_t len, uint64_t deadline_ns)
{
    shmring_t *r = me->ring;
    if (len > r->slot_size)
        return SHMRING_ETOOBIG;
    shmring_span_t span;
    /* flags 0, a constant: the inlined claim of every single put stays as
     * short as without deadlines (with a non-constant flag: 0.93-0.95x on
     * 64-byte put_bytes/get_bytes); a deadline here costs a second store */
    int n = put_claim(me, 1, 0, &span);
    if (n <= 0)
        return n;
    memcpy(shmring__slot_payload(r, span.pos), data, len);
    shmring__slot_set_len(r, span.pos, (uint32_t)len);
    if (deadline_ns)
        shmring_queue_set_expiry(r, span.pos, 1, deadline_ns);
    shmring_queue_put_commit(me, &span);
    return 1;
}

int shmring_queue_put(shmring_participant_t *me, const void *data, size_t len)
{
    return shmring_queue_put_deadline(me, data, len, 0);
}

int shmring_queue_task_done(shmring_participant_t *me, uint64_t n)
{
    int reached = 0;
    int64_t rc = shmring__queue_add_done(me->ring->seg, n, 1, &reached);
    if (rc < 0)
        return (int)rc;
    if (reached)
        shmring__queue_wake_joiners(me->ring);
    return SHMRING_OK;
}

uint64_t shmring_queue_unfinished(const shmring_t *r)
{
    /* T2: pairs with T1. Load tasks_done first: tasks_done <= write_pos at every
     * instant, so done >= put below means both were equal in between. */
    uint64_t done = atomic_load_explicit(&r->seg->join.tasks_done, memory_order_acquire);
    /* relaxed: write_pos publishes nothing join() needs */
    uint64_t put = shmring_pos(atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed));
    return put > done ? put - done : 0;
}

void shmring_queue_stats(const shmring_t *r, shmring_stats_t *out)
{
    struct shmring_segment *seg = r->seg;
    /* A snapshot for display and qsize(), documented as approximate. read_pos
     * first, with acquire (C2), so that write_pos loaded after it is at least
     * read_pos and write_pos - read_pos cannot wrap; likewise tasks_done (T2). */
    uint64_t rp = atomic_load_explicit(&seg->cons.read_pos, memory_order_acquire);
    out->tasks_done = atomic_load_explicit(&seg->join.tasks_done, memory_order_acquire);
    uint64_t wp = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
    out->read_pos = shmring_pos(rp);
    out->write_pos = shmring_pos(wp);
    out->shut = rp & SHMRING_DISCARDING ? SHMRING_SHUT_IMMEDIATE
                : (rp & SHMRING_DRAINING) || (wp & SHMRING_SHUT) ? SHMRING_SHUT_DRAIN : 0;
    out->readers_waiting = shmring__sleepers(r, &seg->not_empty);
    out->writers_waiting = shmring__sleepers(r, &seg->not_full);
    /* relaxed: counters for display */
    out->lost = atomic_load_explicit(&seg->stats.lost, memory_order_relaxed);
    out->recoveries = atomic_load_explicit(&seg->stats.recoveries, memory_order_relaxed);
    out->discarded = atomic_load_explicit(&seg->stats.discarded, memory_order_relaxed);
    out->expired = atomic_load_explicit(&seg->stats.expired, memory_order_relaxed);
}

/* ---- shut-down ---- */

/* Discard what an immediate shutdown left: claim the committed messages from
 * read_pos on as any consumer does (announced, held, holes skipped), count
 * them discarded and done for join(), release them. It stops at the first
 * position not committed: a claim in flight when the queue shut, whose commit
 * the next discard takes (join()'s waits discard), or that recovery makes a
 * hole if its producer died. Killed before its count (D5), a discarder is a
 * dead consumer whose claim recovery counts as lost. */
static void discard(shmring_participant_t *me)
{
    shmring_t *r = me->ring;
    shmring_span_t span;
    uint64_t total = 0;
    /* D2 (no claim after it: what is left is final), and always a store of
     * ours: D6's joiner made it before its sleeper bit */
    atomic_fetch_or_explicit(&r->seg->prod.write_pos, SHMRING_SHUT, memory_order_release);
    while (get_claim(me, (uint32_t)r->maxsize, 0, &span, SHMRING_DISCARDING) > 0) {
        /* D5: release, as P5; nothing else writes our entry while we live */
        atomic_store_explicit(&me->entry->claim_role, SHMRING_CLAIM_GET_COUNTED, memory_order_release);
        shmring__queue_count_done(r->seg, &r->seg->stats.discarded, span.n);
        shmring_queue_get_release(me, &span);
        total += span.n;
    }
    if (total)
        shmring__queue_wake_joiners(r);
}

int shmring_queue_shutdown(shmring_participant_t *me, int immediate)
{
    shmring_t *r = me->ring;
    struct shmring_segment *seg = r->seg;
    if (r->kind != SHMRING_KIND_QUEUE)
        return SHMRING_EINVAL;
    /* D1, then D2: getters learn it from read_pos, producers from write_pos */
    atomic_fetch_or_explicit(&seg->cons.read_pos, SHMRING_DRAINING | (immediate ? SHMRING_DISCARDING : 0),
                             memory_order_release);
    shmring__seal(seg);
    shmring_wake_all(r); /* every waiter looks again: producers refuse, getters drain or refuse */
    if (immediate)
        discard(me);
    return SHMRING_OK;
}

/* ---- waiting ---- */

/* Is the slot for position pos free to be written (read and released a lap ago)? */
static int slot_free(const shmring_t *r, uint64_t pos)
{
    /* relaxed: a hint for waiters; the claim re-reads it with acquire (P1) */
    uint32_t seq = shmring__seq_load(r, pos, memory_order_relaxed);
    return shmring__seq_diff(r, seq, shmring__state(r, pos, SHMRING_SEQ_FREE)) >= 0;
}

/* Could the operation we wait for succeed now (or refuse, shut down)? relaxed
 * loads: a hint only, the operation itself re-reads with the right orders; F1
 * orders these loads after our waiter registration. Only a shut-down queue's
 * readers look further (drained: D3, D4), and at write_pos: a reader that
 * waits on a queue that is not shut down never loads the producers' line. */
static int ready(const shmring_t *r, int what)
{
    struct shmring_segment *seg = r->seg;
    if (what == SHMRING_WAIT_READABLE) {
        uint64_t pos = atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed);
        /* shut down: at once (DISCARDING), or once drained (a get says so now) */
        if (__builtin_expect(pos & SHMRING_COUNTER_FLAGS, 0) && ((pos & SHMRING_DISCARDING) || drained(seg)))
            return 1;
        pos = shmring_pos(pos);
        uint32_t seq = shmring__seq_load(r, pos, memory_order_relaxed);
        return shmring__seq_diff(r, seq, shmring__state(r, pos, SHMRING_SEQ_COMMITTED)) >= 0;
    }
    if (what == SHMRING_WAIT_WRITABLE) {
        uint64_t pos = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
        uint64_t rd = atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed);
        if ((pos & SHMRING_SHUT) || (rd & SHMRING_COUNTER_FLAGS))
            return 1; /* a put says shut down now */
        int64_t used = (int64_t)(pos - rd);
        if (used >= 0 && (uint64_t)used >= r->maxsize)
            return 0;
        return slot_free(r, pos);
    }
    return shmring_queue_unfinished(r) == 0;
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
    if (pos & SHMRING_SHUT)
        return 1; /* a put says shut down now */
    uint64_t last = pos + room - 1;
    if (last >= r->maxsize) {
        uint64_t gate = last - r->maxsize;
        uint32_t seq = shmring__seq_load(r, gate, memory_order_relaxed);
        if (shmring__seq_diff(r, seq, shmring__state(r, gate + r->capacity, SHMRING_SEQ_FREE)) < 0)
            return 0;
    }
    return slot_free(r, pos);
}

/* The re-check before sleeping (wait.c). A joiner after an immediate shutdown
 * (me->wait_join) sleeps on not_empty: it waits for its tasks to be done, or
 * for something at read_pos that a discard takes (the commit of a claim made
 * before the shutdown, or the hole recovery made of it). D6; relaxed, a hint
 * as ready()'s. */
static int ready_at(const shmring_participant_t *me, int what)
{
    const shmring_t *r = me->ring;
    if (!me->wait_join)
        return ready(r, what);
    if (shmring_queue_unfinished(r) == 0)
        return 1;
    uint64_t pos = shmring_pos(atomic_load_explicit(&r->seg->cons.read_pos, memory_order_relaxed));
    uint32_t seq = shmring__seq_load(r, pos, memory_order_relaxed);
    return shmring__seq_diff(r, seq, shmring__state(r, pos, SHMRING_SEQ_COMMITTED)) >= 0;
}

int shmring_queue_wait(shmring_participant_t *me, int what, uint64_t timeout_ns, uint32_t spin)
{
    shmring_t *r = me->ring;
    if (what != SHMRING_WAIT_READABLE && what != SHMRING_WAIT_WRITABLE)
        what = SHMRING_WAIT_JOINED;
    uint64_t room = what == SHMRING_WAIT_WRITABLE ? spin_room(r) : 0;
    int sleep_on = what;
    /* relaxed: a hint; the discard's claims decide */
    if (what == SHMRING_WAIT_JOINED &&
        (atomic_load_explicit(&me->ring->seg->cons.read_pos, memory_order_relaxed) & SHMRING_DISCARDING)) {
        discard(me); /* commits of claims in flight when the queue shut at once */
        /* D6: such a commit wakes not_empty, never joined: sleep there (a
         * waker of joiners wakes it too once shut: shmring__queue_wake_joiners) */
        sleep_on = SHMRING_WAIT_READABLE;
    }
    for (uint32_t i = 0; i < spin; i++) {
        if (room ? has_room(r, room) : ready(r, what))
            return 1;
        shmring__cpu_relax();
    }
    if (timeout_ns == 0)
        return ready(r, what);
    me->wait_join = sleep_on != what;
    int rc = shmring__sleep(me, sleep_on, timeout_ns); /* re-checks ready_at() after F1 (wait.c) */
    me->wait_join = 0;
    return rc;
}

/* ---- the queue as a ring kind (kind.h) ---- */

/* The queue's areas: the generic layout, with its own area (the expiry line and
 * a deadline entry per slot, layout.h) and none of a topic's parameters. */
static int layout(const struct shmring_header *h, struct shmring_layout *out)
{
    if (h->flags & (SHMRING_FLAG_MULTICAST | SHMRING_FLAG_OVERWRITE))
        return shmring__fail(SHMRING_ERESERVED, "flags 0x%x: a topic's, in a queue", h->flags);
    if (h->kind_args[0] != 0 || h->kind_args[1] != 0)
        return shmring__fail(SHMRING_ERESERVED, "reserved header bytes (a topic's parameters) %u, %u in a queue, not 0",
                             h->kind_args[0], h->kind_args[1]);
    struct shmring_layout bare;
    int rc = shmring__layout_compute(h->slot_size, h->maxsize, h->max_participants, h->flags, 0, &bare);
    if (rc)
        return rc;
    return shmring__layout_compute(h->slot_size, h->maxsize, h->max_participants, h->flags,
                                   SHMRING_LINE + bare.capacity * sizeof(struct shmring_expiry), out);
}

/* Attach: the counters of a ring that passed every header check. */
static int validate(struct shmring_segment *seg, const struct shmring_header *h)
{
    /* Counters: read_pos <= write_pos <= read_pos + maxsize, tasks_done and lost
     * <= write_pos. A busy ring moves while we look, so only a stable snapshot
     * (write_pos unchanged around the other loads) is judged. */
    for (int attempt = 0; attempt < 8; attempt++) {
        /* V1 (acquire, as C2 / T2): a live ring then shows read_pos, tasks_done <= write_pos */
        /* the shut-down flags are what they are, in any combination (a shutdown
         * may be under way, or killed between its stores): positions alone,
         * below SHMRING_POS_LIMIT, and write_pos's only flag is SHMRING_SHUT */
        uint64_t r = shmring_pos(atomic_load_explicit(&seg->cons.read_pos, memory_order_acquire));
        uint64_t done = atomic_load_explicit(&seg->join.tasks_done, memory_order_acquire);
        uint64_t word = atomic_load_explicit(&seg->prod.write_pos, memory_order_acquire), w1 = shmring_pos(word);
        /* relaxed: a statistic, at most what was ever put */
        uint64_t lost = atomic_load_explicit(&seg->stats.lost, memory_order_relaxed);
        uint64_t w2 = shmring_pos(atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed));
        if (w1 != w2)
            continue;
        if ((word & SHMRING_DRAINING) || w1 >= SHMRING_POS_LIMIT)
            return shmring__fail(SHMRING_EPOSITIONS,
                                 "counters inconsistent: write_pos 0x%llx (positions stay below 2^61, "
                                 "and bit 63 is write_pos's only flag)",
                                 (unsigned long long)word);
        if (r > w1 || w1 - r > h->maxsize || done > w1 || lost > w1)
            return shmring__fail(SHMRING_EPOSITIONS,
                                 "counters inconsistent: read_pos %llu, write_pos %llu, tasks_done %llu, lost %llu, maxsize %llu",
                                 (unsigned long long)r, (unsigned long long)w1, (unsigned long long)done,
                                 (unsigned long long)lost, (unsigned long long)h->maxsize);
        break;
    }
    return SHMRING_OK;
}

const struct shmring_kind shmring__queue_kind = {
    .kind = SHMRING_KIND_QUEUE,
    .flags = 0,
    .layout = layout,
    .validate = validate,
    .n_waitqs = 3,
    .waitq_offsets = {[SHMRING_WAIT_READABLE] = offsetof(struct shmring_segment, not_empty),
                      [SHMRING_WAIT_WRITABLE] = offsetof(struct shmring_segment, not_full),
                      [SHMRING_WAIT_JOINED] = offsetof(struct shmring_segment, join.joined)},
    .ready = ready,
    .ready_at = ready_at,
    .first_pass = shmring__queue_first_pass,
    .settle = shmring__queue_settle,
};
