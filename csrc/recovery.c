/*
 * recovery.c - giving back what participants held when their process died.
 *
 * Every participant announces the positions it is about to claim (ring.c, P2)
 * and withdraws the announcement once it committed or released them. When the
 * process behind an entry is dead (participants.c) and its announcement is still
 * there, for each announced position p:
 *
 *   PUT, p < write_pos, seq == p      claimed, never committed: the slot becomes a
 *                                     hole (seq = p + 2) that consumers skip
 *   GET, p < read_pos,  seq == p + 1  claimed for reading, never released: the slot
 *                                     is released (seq = p + capacity); the message
 *                                     is lost
 *   GET, p < read_pos,  seq == p + 2  a hole it was skipping: released
 *
 * unless a live participant also announces p: a dead one's claim CAS may have
 * failed, the live one then holds p (a claimed position is always covered by
 * its claimer's announcement). Such a position is looked at again next time,
 * and the dead entry is kept until none is left. Lost messages count in
 * stats.lost and as done for join(). Each change is a CAS from the exact state
 * seen, so recoverers running at once are harmless and counters count CAS
 * winners. Finally the entry is freed for reuse.
 *
 * Atomic pairs:
 *   R1  acquire loads of write_pos / read_pos -> P3 / C2 (ring.c): the announcements
 *       of all claims up to there are visible
 *   R2  acquire load of claim_n -> P2 / withdraw (ring.c): we see the claim, or, if
 *       withdrawn, the commit or release before it (so our CAS on seq then fails)
 *   R3  acq_rel CAS on seq -> C1 / P1 (ring.c): whoever takes the slot next sees
 *       the state we wrote, and we saw the state the dead owner left
 *   R4  release CAS of the entry state to FREE -> J1 (participants.c) of the next owner
 *   R5  release increments of tasks_done -> T2 (ring.c): join() sees them
 */
#include "internal.h"

/* Is position p (of this role) announced by a participant we did not find dead? */
static int covered_by_live(const shmring_t *r, const struct shmring__entry_view *seen,
                           const uint8_t *dead, uint32_t role, uint64_t p)
{
    for (uint32_t j = 0; j < r->max_participants; j++) {
        const struct shmring_participant_entry *e = &r->parts[j];
        /* acquire: pairs with J3/L1, who owns the entry now */
        uint32_t state = atomic_load_explicit(&e->state, memory_order_acquire);
        if (dead[j] && state == seen[j].state)
            continue; /* still the dead owner */
        if (SHMRING_PART_STATUS(state) == SHMRING_PART_FREE)
            continue;
        /* R2 */
        uint32_t n = atomic_load_explicit(&e->claim_n, memory_order_acquire);
        if (n == 0)
            continue;
        /* relaxed: published by the release store of claim_n (P2) */
        uint32_t their_role = atomic_load_explicit(&e->claim_role, memory_order_relaxed);
        uint64_t pos = atomic_load_explicit(&e->claim_pos, memory_order_relaxed);
        if (their_role == role && p - pos < n)
            return 1;
    }
    return 0;
}

/* Give back what dead entry i announced; returns the messages lost. *pending is
 * set if a position could not be settled yet (a live participant announces it). */
static uint64_t recover_claim(shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead,
                              uint32_t i, uint64_t write_pos, uint64_t read_pos, int *pending)
{
    struct shmring_participant_entry *e = &r->parts[i];
    /* R2 */
    uint32_t n = atomic_load_explicit(&e->claim_n, memory_order_acquire);
    /* relaxed: published by claim_n's release (P2); a dead owner writes no more */
    uint32_t role = atomic_load_explicit(&e->claim_role, memory_order_relaxed);
    uint64_t pos = atomic_load_explicit(&e->claim_pos, memory_order_relaxed);
    *pending = 0;
    /* relaxed: if the entry changed hands while we read, what we read may be the
     * new owner's; leave it (the new owner is alive). */
    if (atomic_load_explicit(&e->state, memory_order_relaxed) != seen[i].state) {
        *pending = 1;
        return 0;
    }
    if (n == 0 || n > r->maxsize)
        return 0; /* nothing held, or garbage: no claim is larger than maxsize */
    uint64_t lost = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint64_t p = pos + k;
        _Atomic uint64_t *seq = &shmring__meta(r, p)->seq;
        /* the state a slot is stuck in if the dead owner held p */
        uint64_t stuck = role == SHMRING_CLAIM_PUT ? p : p + 1;
        uint64_t counter = role == SHMRING_CLAIM_PUT ? write_pos : read_pos;
        if ((role != SHMRING_CLAIM_PUT && role != SHMRING_CLAIM_GET) || (int64_t)(counter - p) <= 0)
            continue; /* never claimed: the owner died before its CAS */
        if (covered_by_live(r, seen, dead, role, p)) {
            /* relaxed: only decides whether to look again later */
            uint64_t now = atomic_load_explicit(seq, memory_order_relaxed);
            if (now == stuck || now == p + 2)
                *pending = 1;
            continue;
        }
        uint64_t expected = stuck;
        /* R3: a PUT slot becomes a hole consumers skip, a GET slot goes back to producers. */
        if (atomic_compare_exchange_strong_explicit(seq, &expected,
                                                    role == SHMRING_CLAIM_PUT ? p + 2 : p + r->capacity,
                                                    memory_order_acq_rel, memory_order_relaxed))
            lost++;
        else if (role == SHMRING_CLAIM_GET && expected == p + 2)
            /* R3: a hole it was skipping (counted when it was made) */
            atomic_compare_exchange_strong_explicit(seq, &expected, p + r->capacity,
                                                    memory_order_acq_rel, memory_order_relaxed);
    }
    return lost;
}

int shmring_recover(shmring_t *r)
{
    struct shmring_segment *seg = r->seg;
    struct shmring__entry_view seen[SHMRING_PARTICIPANTS_MAX];
    uint8_t dead[SHMRING_PARTICIPANTS_MAX] = {0};
    int found = 0;
    for (uint32_t i = 0; i < r->max_participants; i++) {
        if (!shmring__entry_snapshot(&r->parts[i], &seen[i]))
            continue; /* changing hands right now: alive */
        if (SHMRING_PART_STATUS(seen[i].state) == SHMRING_PART_ACTIVE &&
            !shmring__process_alive(seen[i].pid, seen[i].start_time, seen[i].pid_ns)) {
            dead[i] = 1;
            found = 1;
        }
    }
    if (!found)
        return 0;
    /* R1 */
    uint64_t write_pos = atomic_load_explicit(&seg->prod.write_pos, memory_order_acquire);
    uint64_t read_pos = atomic_load_explicit(&seg->cons.read_pos, memory_order_acquire);
    int recovered = 0;
    uint64_t lost = 0;
    for (uint32_t i = 0; i < r->max_participants; i++) {
        if (!dead[i])
            continue;
        int pending;
        uint64_t lost_here = recover_claim(r, seen, dead, i, write_pos, read_pos, &pending);
        lost += lost_here;
        if (pending)
            continue; /* keep the entry: its announcement is still needed */
        shmring__clear_sleeper(r, i);
        uint32_t expected = seen[i].state;
        uint32_t free_state = SHMRING_PART_STATE(SHMRING_PART_FREE, SHMRING_PART_GEN(expected));
        /* R4: pairs with J1 of the next owner. */
        if (atomic_compare_exchange_strong_explicit(&r->parts[i].state, &expected, free_state,
                                                    memory_order_release, memory_order_relaxed) &&
            lost_here > 0)
            recovered++;
    }
    if (lost > 0) {
        /* relaxed: a statistic */
        atomic_fetch_add_explicit(&seg->stats.lost, lost, memory_order_relaxed);
        /* R5: lost messages will never get a task_done() */
        atomic_fetch_add_explicit(&seg->join.tasks_done, lost, memory_order_release);
    }
    if (recovered > 0)
        /* relaxed: a statistic */
        atomic_fetch_add_explicit(&seg->stats.recoveries, (uint64_t)recovered, memory_order_relaxed);
    /* Holes can be skipped, slots reused, join() may be done: wake whoever waits. */
    shmring__notify(r, &seg->not_empty);
    shmring__notify(r, &seg->not_full);
    shmring__notify(r, &seg->join.joined);
    return recovered;
}
