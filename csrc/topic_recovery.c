/*
 * topic_recovery.c - what a topic does about participants that died or stall:
 * the settle rule for a dead participant (recovery.c finds the dead and calls
 * it), the timing of a stuck wait (recovery after recover_after; detaching a
 * live subscriber that held publishers for the slow timeout), and what an
 * operator looks at (stats, the subscriber table).
 *
 * A live publisher that gave a claim up may leave positions it could not make
 * holes yet (topic.c, give_up), announced by nobody: whoever is stuck behind
 * one makes it a hole once it can (settle_orphan, from shmring_topic_unstick),
 * together with the positions of its slot's earlier laps left so before it
 * (settle_chain: claims given up on consecutive laps of one slot).
 *
 * A dead participant may leave:
 *   a publish claim  positions it claimed (announced PUT, below write_pos) and
 *                    never committed: each becomes a hole (after the given-up
 *                    earlier laps of its slot it waits for, settle_chain),
 *                    counted once by the winner of the CAS that made it,
 *                    unless a live participant
 *                    announces the position (the dead one's CAS may have lost
 *                    to it: then it is looked at again, and the entry kept)
 *   subscriptions    entries of the subscriber table it owns (owner index and
 *                    owner state word in their state word): freed, so that they
 *                    gate publishers no longer. An entry whose owner's
 *                    participant entry was reused without recovery gates nobody
 *                    either (topic.h, shmring__sub_owned) and is taken by the
 *                    next subscriber that needs one.
 *
 * Atomic pairs:
 *   R1  acquire load of write_pos -> P1 (topic.c): every claim below it is
 *       covered by a visible announcement
 *   R2  the announcement, acquire (recovery.c) -> P2
 *   R3  acq_rel CAS of a slot word to hole -> S5 (subscribers skip it) and P5
 *       (the next lap's publisher writes after it)
 *   R6  acq_rel CAS of a subscriber's state word (a dead owner's entry freed, a
 *       slow one detached) -> the acquire loads of scans (P4) and of the
 *       subscriber itself (topic.c, entry_ours); then G1 (topic.h)
 *   R7  settle_orphan: acquire load of write_pos (as R1), then the entries'
 *       states and announcements (R2, recovery.c) -> a give-up's withdrawal
 *       (topic.c P2, after its P8): a position no live claim covers is one a
 *       publisher gave up, and the gate scan of make_hole (P4) sees every
 *       subscriber that publisher saw; settle_chain makes the same reads
 *       (after R7's or R1's load of write_pos) for the earlier laps it goes
 *       down to (chain_bottom), and its relaxed loads of slot words are hints:
 *       make_hole's CAS (R3) decides
 *   stuck checks, the slow timeout and stats: relaxed loads (hints and display),
 *   and relaxed process-local timing (internal.h)
 */
#include "topic.h"

/* Has position p not been committed (claimed, or its slot still last lap's)?
 * relaxed: decides only whether to look again later. */
static int unfinished(const shmring_t *r, uint64_t p)
{
    uint32_t w = shmring__seq_load(r, p, memory_order_relaxed);
    return shmring__seq_diff(r, w, shmring__state(r, p, SHMRING_SEQ_FREE)) <= 0;
}

/* R3: make claimed position p a hole, from whichever state its publisher left
 * it in (marked for p, or never marked: still last lap's). 1 if we did. Also
 * a live publisher's rule for the positions of a claim it gives up (topic.c). */
int shmring__topic_make_hole(const shmring_t *r, uint64_t p)
{
    uint32_t hole = shmring__state(r, p, SHMRING_SEQ_HOLE);
    if (shmring__seq_cas(r, p, shmring__state(r, p, SHMRING_SEQ_FREE), hole))
        return 1;
    if (p < r->capacity)
        return 0;
    /* Never marked: the slot still holds p - capacity. Under block a live
     * subscriber may not have read it yet: only once the gate lets a publisher
     * write p (as publish_begin would) does it become a hole; until then the
     * caller looks again later. P4's acquire loads (topic.h), as a scan. */
    uint32_t who;
    if (!(r->flags & SHMRING_FLAG_OVERWRITE) && !shmring__gate_allows(r, shmring__topic_gate(r, &who), p + 1))
        return 0;
    return shmring__seq_cas(r, p, shmring__state(r, p - r->capacity, SHMRING_SEQ_COMMITTED), hole) ||
           shmring__seq_cas(r, p, shmring__state(r, p - r->capacity, SHMRING_SEQ_HOLE), hole);
}

/* Where the walk down from p ends, found without walking lap by lap (a
 * write_pos scribbled far ahead made that up to 2^29 steps, each a scan of the
 * participant table: libFuzzer's timeout): the lap the slot's word holds (its
 * lap field is the low bits of that lap: the latest such lap at or before p's),
 * or the next if that one is committed or a hole, raised above the highest lap
 * a live claim covers (one scan: a claim of at most maxsize <= capacity
 * positions covers at most one lap of a slot). */
static uint64_t chain_bottom(const shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead,
                             uint64_t p)
{
    uint32_t w = shmring__seq_load(r, p, memory_order_relaxed);
    uint64_t lap = p >> r->cap_shift, lap_mask = r->seq_mask >> SHMRING_SEQ_CODE_BITS;
    uint64_t back = (lap - (w >> SHMRING_SEQ_CODE_BITS)) & lap_mask; /* laps from the word's to p's */
    uint64_t x = back > lap ? (p & r->mask) : p - (back << r->cap_shift);
    if (x < p && !unfinished(r, x))
        x += r->capacity;
    struct shmring__announcement a;
    for (uint32_t j = 0; j < r->max_participants; j++) {
        if (!shmring__live_claim(r, seen, dead, j, SHMRING_CLAIM_PUT, &a))
            continue;
        uint64_t q = a.pos + ((p - a.pos) & r->mask); /* its one position in p's slot, if any */
        if (q - a.pos < a.n && q >= x && q < p)
            x = q + r->capacity;
    }
    return x;
}

/* Laps one settle walks up at most: a chain longer than this (given-up laps
 * of one slot) is settled over as many calls, from its bottom up. */
#define SHMRING_CHAIN_HOLES_MAX 4096u

/* R3 along a chain: make unfinished position p a hole (its caller has found
 * that no live claim covers it), and first the positions of its slot's earlier
 * laps that it depends on. make_hole(p) moves a slot on only from free(p),
 * committed(p - capacity) or hole(p - capacity); when claims on two or more
 * consecutive laps of a slot were given up while an older lap was still being
 * written (give_up, topic.c), or a dead claim lies above such a one, p - capacity
 * is itself unfinished and announced by nobody, and only its own waiter could
 * settle it: gone, if it gave up. So go down from p while x - capacity is
 * unfinished and no live claim covers it (x - capacity < p < end: claimed, and
 * announced before its claim, R7 / R1; chain_bottom), then up to p making each x a hole by
 * the rule (under block: once the gate lets x be written), stopping at the
 * first that cannot be one yet; one that a concurrent settler made a hole
 * first is passed over. A position seen uncovered stays so (announcements only
 * precede claims, and these are below the end). How many CASes we won: each
 * hole is counted once, by its winner; at most SHMRING_CHAIN_HOLES_MAX a call. */
static uint64_t settle_chain(const shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead,
                             uint64_t p)
{
    uint64_t made = 0;
    if (!unfinished(r, p))
        return 0; /* committed (a dead publisher's before it died), or its slot a later lap's already */
    uint64_t x = chain_bottom(r, seen, dead, p);
    for (uint32_t steps = 0; steps < SHMRING_CHAIN_HOLES_MAX; steps++, x += r->capacity) {
        if (shmring__topic_make_hole(r, x))
            made++;
        else if (unfinished(r, x))
            break; /* its slot's older lap is still being written, or unread (block): later */
        if (x == p)
            break;
    }
    return made;
}

/* Free the subscriber entries participant i owned as `state`: 1 if any. */
static int free_subscriptions(shmring_t *r, uint32_t i, uint32_t state)
{
    struct shmring_subscriber_entry *subs = shmring__subs(r);
    int freed = 0;
    for (uint32_t k = 0; k < r->kind_args[0]; k++) {
        /* acquire: as R6 */
        uint64_t w = atomic_load_explicit(&subs[k].state, memory_order_acquire);
        if (SHMRING_SUB_STATUS(w) == SHMRING_SUB_FREE || SHMRING_SUB_OWNER(w) != i ||
            SHMRING_SUB_OWNER_STATE(w) != state)
            continue;
        /* R6 */
        freed |= atomic_compare_exchange_strong_explicit(&subs[k].state, &w,
                                                         SHMRING_SUB_WORD(SHMRING_SUB_FREE, SHMRING_SUB_GEN(w), 0, 0),
                                                         memory_order_acq_rel, memory_order_relaxed);
    }
    if (freed)
        shmring__subs_changed(r);
    return freed;
}

int shmring__topic_settle(shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead, uint32_t i,
                          int *pending)
{
    struct shmring_participant_entry *e = &r->parts[i];
    struct shmring__announcement a;
    shmring__announcement(e, &a);
    *pending = 0;
    /* relaxed: if the entry changed hands while we read, the announcement may be
     * the new, live owner's: leave it. */
    if (atomic_load_explicit(&e->state, memory_order_relaxed) != seen[i].state) {
        *pending = 1;
        return 0;
    }
    int held = free_subscriptions(r, i, seen[i].state);
    if (a.n == 0 || a.n > r->maxsize || a.role != SHMRING_CLAIM_PUT)
        return held; /* nothing claimed, or garbage: no claim is larger than maxsize */
    /* R1 */
    uint64_t end = shmring_pos(atomic_load_explicit(&r->seg->prod.write_pos, memory_order_acquire));
    for (uint32_t k = 0; k < a.n; k++) {
        uint64_t p = a.pos + k;
        if ((int64_t)(end - p) <= 0)
            continue; /* never claimed: the owner died before its CAS */
        if (shmring__covered_by_live(r, seen, dead, SHMRING_CLAIM_PUT, p)) {
            if (unfinished(r, p))
                *pending = 1;
            continue;
        }
        uint64_t made = settle_chain(r, seen, dead, p);
        if (made)
            /* relaxed: a statistic */
            atomic_fetch_add_explicit(&r->seg->stats.lost, made, memory_order_relaxed);
        if (unfinished(r, p))
            *pending = 1; /* its slot's last lap is still being written: later */
    }
    return 1;
}

/* A position claimed (below the end), not committed, and covered by no
 * announcement: a claim its live publisher gave up (topic.c, give_up) while
 * the slot could not be made a hole yet (its previous lap still being written,
 * or not yet read by a subscriber). A claimed position of a live or dead
 * publisher is always announced until its commit (P2 before P1), so nobody
 * else will write it: make it a hole by the rule above, with the given-up
 * earlier laps of its slot it waits for (settle_chain), count them, and wake
 * whoever waits behind them. 1 if we made any. */
static const uint8_t nobody_dead[SHMRING_PARTICIPANTS_MAX];

static int settle_orphan(shmring_t *r, uint64_t p)
{
    /* R7 */
    uint64_t end = shmring_pos(atomic_load_explicit(&r->seg->prod.write_pos, memory_order_acquire));
    if (p >= end || !unfinished(r, p) || shmring__covered_by_live(r, NULL, nobody_dead, SHMRING_CLAIM_PUT, p))
        return 0;
    uint64_t made = settle_chain(r, NULL, nobody_dead, p);
    if (!made)
        return 0;
    /* relaxed: a statistic */
    atomic_fetch_add_explicit(&r->seg->stats.lost, made, memory_order_relaxed);
    shmring__wake(r, &r->seg->not_empty);
    shmring__wake(r, &r->seg->not_full);
    return 1;
}

/* The dead need no order among themselves in a topic. */
int shmring__topic_first_pass(const struct shmring_participant_entry *e)
{
    (void)e;
    return 0;
}

/* ---- stuck waits: recovery and the slow timeout ---- */

void shmring_topic_set_slow_timeout(shmring_t *r, uint64_t ns)
{
    /* relaxed: process-local configuration */
    atomic_store_explicit(&r->slow_after_ns, ns, memory_order_relaxed);
}

/* Detach every live subscriber that keeps a publisher from writing up to
 * `last` (it has not moved for the slow timeout): its next call counts the gap
 * and continues at the oldest position retained. How many. */
static uint32_t detach_slow(shmring_t *r, uint64_t last)
{
    struct shmring_subscriber_entry *subs = shmring__subs(r);
    uint32_t n = 0;
    for (uint32_t k = 0; k < r->kind_args[0]; k++) {
        /* acquire: as P4 */
        uint64_t w = atomic_load_explicit(&subs[k].state, memory_order_acquire);
        if (SHMRING_SUB_STATUS(w) != SHMRING_SUB_ACTIVE || !shmring__sub_owned(r, w) ||
            shmring__gate_allows(r, atomic_load_explicit(&subs[k].cursor, memory_order_acquire), last + 1))
            continue;
        uint64_t detached = (w & ~UINT64_C(0xff)) | SHMRING_SUB_DETACHED;
        /* R6 */
        if (atomic_compare_exchange_strong_explicit(&subs[k].state, &w, detached, memory_order_acq_rel,
                                                    memory_order_relaxed))
            n++;
    }
    if (n) {
        /* relaxed: a statistic */
        atomic_fetch_add_explicit(&r->seg->stats.detached, n, memory_order_relaxed);
        shmring__subs_changed(r);
        shmring__wake(r, &r->seg->not_full); /* other publishers it held */
    }
    return n;
}

/* Publishers held at the gate: time the slowest subscriber's stall (relaxed,
 * process-local, as the recovery timing) and detach it after the slow
 * timeout. 1 if it detached; *when: when to look again (0: no timeout). */
static int time_slow(shmring_t *r, uint64_t gate, uint64_t last, uint64_t now, uint64_t *when)
{
    uint64_t after = atomic_load_explicit(&r->slow_after_ns, memory_order_relaxed);
    *when = 0;
    if (after == 0)
        return 0;
    uint64_t since = atomic_load_explicit(&r->gated_since, memory_order_relaxed);
    if (since == 0 || atomic_load_explicit(&r->gated_pos, memory_order_relaxed) != gate) {
        atomic_store_explicit(&r->gated_pos, gate, memory_order_relaxed);
        atomic_store_explicit(&r->gated_since, now, memory_order_relaxed);
        since = now;
    } else if (now >= since && now - since >= after) {
        atomic_store_explicit(&r->gated_since, 0, memory_order_relaxed);
        return detach_slow(r, last) > 0;
    }
    *when = since + after >= since ? since + after : UINT64_MAX;
    return 0;
}

int shmring_topic_unstick(shmring_participant_t *me, shmring_topic_sub_t *sub, const shmring_span_t *span, int what,
                          uint64_t now, uint64_t *recheck_ns)
{
    shmring_t *r = me->ring;
    *recheck_ns = 0;
    if (r->kind_area == NULL || r->meta == NULL)
        return 0;
    if (now == 0)
        now = shmring_now_ns();
    /* relaxed throughout: hints whether recovery is worth its system calls */
    uint64_t end = shmring_pos(atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed));
    if (what == SHMRING_WAIT_READABLE) {
        if (sub == NULL)
            return 0;
        uint64_t c = sub->cursor;
        /* claimed by a publisher, not committed: given up (at once), or its
         * publisher may have died (after recover_after) */
        int stuck = c < end && unfinished(r, c);
        if (stuck && settle_orphan(r, c))
            return 1;
        return shmring__unstick_after(r, what, stuck, c, now, recheck_ns);
    }
    if (what != SHMRING_WAIT_WRITABLE)
        return 0;
    /* the first position this publisher waits to write, and its last */
    uint64_t first = span ? span->pos : end, last = span ? span->pos + span->n - 1 : end;
    uint64_t stuck_at = first;
    int lap = 0;
    for (uint64_t p = first; span && p <= last; p++)
        if (!shmring__slot_writable(r, p)) { /* last lap's publisher has not committed */
            lap = 1;
            stuck_at = p;
            break;
        }
    uint32_t who;
    uint64_t gate = r->flags & SHMRING_FLAG_OVERWRITE ? UINT64_MAX : shmring__topic_gate(r, &who), when = 0;
    int gated = !shmring__gate_allows(r, gate, last + 1);
    /* the slot's previous lap, or the slowest subscriber's position, given up */
    if ((lap && stuck_at >= r->capacity && settle_orphan(r, stuck_at - r->capacity)) ||
        (gated && gate < end && settle_orphan(r, gate)))
        return 1;
    if (gated) {
        if (time_slow(r, gate, last, now, &when))
            return 1;
        stuck_at = gate;
    } else {
        atomic_store_explicit(&r->gated_since, 0, memory_order_relaxed);
    }
    int ran = shmring__unstick_after(r, what, gated || lap, stuck_at, now, recheck_ns);
    if (!ran && when != 0 && (*recheck_ns == 0 || when < *recheck_ns))
        *recheck_ns = when;
    return ran;
}

/* ---- what an operator looks at ---- */

void shmring_topic_stats(const shmring_t *r, shmring_topic_stats_t *out)
{
    struct shmring_segment *seg = r->seg;
    /* relaxed throughout: a snapshot for display */
    uint64_t wp = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
    out->published = shmring_pos(wp);
    /* the generation's flag comes first (topic.c, D1): a shutdown under way, or killed before D2 */
    out->shut = ((wp | atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed)) & SHMRING_SHUT) != 0;
    out->holes = atomic_load_explicit(&seg->stats.lost, memory_order_relaxed);
    out->recoveries = atomic_load_explicit(&seg->stats.recoveries, memory_order_relaxed);
    out->detached = atomic_load_explicit(&seg->stats.detached, memory_order_relaxed);
    out->readers_waiting = shmring__sleepers(r, &seg->not_empty);
    out->writers_waiting = shmring__sleepers(r, &seg->not_full);
    out->subscribers = 0;
    for (uint32_t k = 0; r->kind_area != NULL && k < r->kind_args[0]; k++) {
        uint64_t w = atomic_load_explicit(&shmring__subs(r)[k].state, memory_order_relaxed);
        out->subscribers += SHMRING_SUB_STATUS(w) >= SHMRING_SUB_ACTIVE && shmring__sub_owned(r, w);
    }
}

int shmring_topic_subscriber(const shmring_t *r, uint32_t i, shmring_topic_sub_info_t *out)
{
    if (r->kind_area == NULL || i >= r->kind_args[0])
        return SHMRING_EINVAL;
    const struct shmring_subscriber_entry *e = &shmring__subs(r)[i];
    /* relaxed throughout: for display */
    uint64_t w = atomic_load_explicit(&e->state, memory_order_relaxed);
    if (SHMRING_SUB_STATUS(w) < SHMRING_SUB_ACTIVE || !shmring__sub_owned(r, w))
        return 0;
    out->position = atomic_load_explicit(&e->cursor, memory_order_relaxed);
    out->lagged = atomic_load_explicit(&e->lagged, memory_order_relaxed);
    out->received = atomic_load_explicit(&e->received, memory_order_relaxed);
    out->detached = SHMRING_SUB_STATUS(w) == SHMRING_SUB_DETACHED;
    struct shmring__entry_view v;
    uint32_t owner = SHMRING_SUB_OWNER(w);
    out->alive = 1; /* changing hands right now: someone is there */
    out->pid = 0;
    if (shmring__entry_snapshot(&r->parts[owner], &v)) {
        out->pid = v.pid;
        out->alive = shmring__entry_alive(r, owner, &v);
    }
    return 1;
}
