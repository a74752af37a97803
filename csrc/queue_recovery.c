/*
 * queue_recovery.c - the queue's rules for giving back what participants held
 * when their process died (recovery.c finds the dead and calls them).
 *
 * Every participant announces the positions it is about to claim (queue.c, P2),
 * marks a successful read claim as held (P5), and withdraws the announcement
 * once it committed or released. When the process behind an entry is dead
 * (participants.c) and its announcement is still there:
 *
 *   PUT       each position p < write_pos whose slot is still free for p (claimed,
 *             never committed) becomes a hole that consumers skip; one
 *             lost message per hole made
 *   GET_HELD  the claim succeeded: all n messages were the dead consumer's and
 *             none reached its caller (a get returns only after releasing), so
 *             all n are lost, counted once by whoever moves the role to
 *             GET_COUNTED; every slot still unreleased (committed, or a hole it
 *             was skipping) is released (free for the next lap)
 *   GET       died between announcing and marking the claim held: a slot still
 *             committed below read_pos is released, one lost message per release,
 *             unless a live participant announces p (the dead one's CAS may have
 *             lost to it: then it is looked at again next time and the dead entry
 *             is kept until nothing of it is pending)
 *
 *   GET_ADOPTED  as GET_HELD: the supervisor that adopted the claim died before
 *             it finished (shmring_queue_adopt, below)
 *   GET_SUPERVISED  as GET_HELD once the supervisor the entry names
 *             (shmring_queue_supervise) has left or died; while it lives, left
 *             alone (pending): it adopts the claim, and a recoverer first (a
 *             producer blocked behind it, a join() waiting) counted the
 *             messages lost that the supervisor then also redelivered, which
 *             made join() early
 *
 * Dead GET_HELD entries go first: a dead consumer whose claim CAS lost to one of
 * them then finds those messages released already, so nothing is counted twice
 * (a GET_SUPERVISED one left pending: its positions make such a GET wait).
 *
 * Adoption: a supervisor that knows its consumer died (a WorkerPool, which
 * reaped it) takes the entry as a recoverer does (R4), then its held claim
 * (A1), copies the messages where it keeps them and releases the slots itself,
 * counting nothing lost. Its lock on the entry keeps recoverers out while it
 * works; one killed midway leaves an entry whose death shows (an entry it
 * could not lock it gives back untouched), with a claim recovery counts lost.
 *
 * Each change is a CAS from the exact state seen and each count is made by the
 * winner of a CAS, right after it, so recoverers running at once in several
 * processes are harmless and a recoverer killed midway loses at most the count
 * of the one change it just won. Finally the entry is freed for reuse.
 *
 * Atomic pairs:
 *   R1  acquire loads of write_pos / read_pos -> P3 / C2 (queue.c): the announcements
 *       of all claims up to there are visible. Loaded afresh for each position,
 *       just before deciding on it (load_counters).
 *   R2  acquire loads of the announcement (recovery.c, shmring__announcement) -> P2 /
 *       P5 / withdraw (queue.c): we see the claim, or, if it moved on, the commit or
 *       release before that (so our CAS on the slot then fails)
 *   R3  acq_rel CAS on seq -> C1 / P1 (queue.c): whoever takes the slot next sees
 *       the state we wrote, and we saw the state the dead owner left
 *   R4  (recovery.c) taking the entry as if joining (J1) and freeing it (L0, L1:
 *       participants.c), once settle says nothing of it is pending
 *   A1  relaxed CAS of claim_role GET_HELD (or GET_SUPERVISED) -> GET_ADOPTED
 *       (shmring_queue_adopt) against R2's -> GET_COUNTED: exactly one of adopter and
 *       recoverers owns the messages; a recoverer whose CAS lost to A1 leaves
 *       the slots alone (the adopter reads them before releasing them)
 *   R5  increments of tasks_done, capped at write_pos: T1's CAS (queue.c's
 *       table; shmring__queue_add_done, below) -> T2: join() sees them (also
 *       the discards of an immediate shutdown: shmring__queue_count_done)
 *   D6  (queue.c's table) shmring__queue_wake_joiners: after F2 of its wake of
 *       joined, a relaxed load of write_pos; shut, it wakes not_empty too, where
 *       a joiner sleeps after an immediate shutdown
 *   S7  relaxed store of the supervisor word (shmring_queue_supervise), before
 *       any SUPERVISED claim: published with it by P2 / P5 (release) to R2;
 *       a recoverer reads it after R2, then the supervisor's entry (its state,
 *       relaxed, then liveness.c's tests) as covered_by_live does
 *   covered_by_live (recovery.c): acquire load of an entry's state -> J3 / L1
 *       (members.c, participants.c): who owns the entry now, before its announcement
 *   stuck: relaxed loads, a hint whether recovery is worth its system calls;
 *       shmring_queue_unstick: relaxed process-local timing (recovery.c, unstick_after)
 */
#include "queue.h"

/* T1 / T2 (queue.c's table): tasks_done never passes write_pos. Here, beside
 * the other additions to tasks_done, so that queue.c calls this file and not
 * the other way round. */
int64_t shmring__queue_add_done(struct shmring_segment *seg, uint64_t n, int exact, int *reached)
{
    /* T2: the write_pos loaded below is at least this. */
    uint64_t done = atomic_load_explicit(&seg->join.tasks_done, memory_order_acquire), put, add;
    do {
        /* relaxed: an upper bound for tasks_done (T2 orders it after done) */
        put = shmring_pos(atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed));
        uint64_t room = put > done ? put - done : 0;
        if (exact && (room == 0 || n > room))
            return SHMRING_EJOIN;
        add = n < room ? n : room;
        if (add == 0)
            break;
        /* T1: pairs with T2; on failure, acquire as T2. */
    } while (!atomic_compare_exchange_weak_explicit(&seg->join.tasks_done, &done, done + add,
                                                    memory_order_release, memory_order_acquire));
    *reached = add != 0 && done + add == put;
    return (int64_t)add;
}

void shmring__queue_wake_joiners(shmring_t *r)
{
    shmring__wake(r, &r->seg->join.joined);
    /* D6: relaxed, after F2 of the wake above (wait.c) */
    if (atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed) & SHMRING_SHUT)
        shmring__wake(r, &r->seg->not_empty);
}

void shmring__queue_count_done(struct shmring_segment *seg, _Atomic uint64_t *counter, uint64_t n)
{
    int reached;
    /* relaxed: a statistic */
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
    /* R5: these messages will never get a task_done() */
    shmring__queue_add_done(seg, n, 0, &reached);
}

/* Count n messages that will never reach a caller as lost (and done for join). */
static void count_lost(struct shmring_segment *seg, uint64_t n)
{
    shmring__queue_count_done(seg, &seg->stats.lost, n);
}

/* A read claim that succeeded (every announced message the dead consumer's),
 * in any of its states. */
static int held_role(uint32_t role)
{
    return role == SHMRING_CLAIM_GET_HELD || role == SHMRING_CLAIM_GET_COUNTED || role == SHMRING_CLAIM_GET_ADOPTED ||
           role == SHMRING_CLAIM_GET_SUPERVISED;
}

/* Does the supervisor that dead entry e named (S7) still hold its entry, and
 * live? relaxed: the state as covered_by_live reads one, and liveness.c
 * decides from evidence of death alone. */
static int supervisor_lives(const shmring_t *r, const struct shmring_participant_entry *e)
{
    uint64_t token = atomic_load_explicit(&e->supervisor, memory_order_relaxed);
    uint32_t k = (uint32_t)(token >> 32) - 1, state = (uint32_t)token;
    struct shmring__entry_view v;
    if (k >= r->max_participants || !shmring__entry_snapshot(&r->parts[k], &v))
        return k < r->max_participants; /* out of range: none; changing hands: alive, looked at next time */
    return v.state == state && SHMRING_PART_STATUS(state) == SHMRING_PART_ACTIVE && shmring__entry_alive(r, k, &v);
}

/* Is p in a held claim of a dead consumer that is still unsettled (its entry
 * unchanged: left pending by the first pass, a supervised claim; or settled
 * by nobody yet)? The first pass settles held claims before dead GET claims
 * that may have lost their CAS to them; one it left must make such a GET
 * claim wait as a live owner would, whatever becomes of it meanwhile (its
 * supervisor dies, it is handed back, an adopter takes it): else the GET
 * claim releases its slots and counts them, and the held claim is counted or
 * adopted too. Checked before covered_by_live, which an adopter taking the
 * entry passes unseen. The wait ends: the entry is freed once settled. */
static int held_by_a_dead(const shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead, uint64_t p)
{
    struct shmring__announcement a;
    for (uint32_t j = 0; j < r->max_participants; j++) {
        const struct shmring_participant_entry *e = &r->parts[j];
        /* relaxed: as settle's own look at its entry (changed hands: not the dead claim) */
        if (!dead[j] || atomic_load_explicit(&e->state, memory_order_relaxed) != seen[j].state)
            continue;
        shmring__announcement(e, &a); /* R2 */
        if (held_role(a.role) && a.n != 0 && p - a.pos < a.n)
            return 1;
    }
    return 0;
}

/* An adopter that cannot take a supervised claim over hands it to recovery
 * (a CAS: a recoverer's R2 on the same word is either before or after). */
static void unsupervise(struct shmring_participant_entry *e, uint32_t role)
{
    if (role == SHMRING_CLAIM_GET_SUPERVISED)
        atomic_compare_exchange_strong_explicit(&e->claim_role, &role, SHMRING_CLAIM_GET_HELD, memory_order_relaxed,
                                                memory_order_relaxed);
}

void shmring_queue_count_lost(shmring_t *r, uint64_t n)
{
    if (r->readonly)
        return;
    count_lost(r->seg, n);
    shmring__queue_wake_joiners(r); /* join() may be done now */
}

/* R1: the counters now, read before deciding on one position. */
static void load_counters(const shmring_t *r, uint64_t *write_pos, uint64_t *read_pos)
{
    /* positions: a shut-down queue's flags (layout.h) change nothing here */
    *write_pos = shmring_pos(atomic_load_explicit(&r->seg->prod.write_pos, memory_order_acquire));
    *read_pos = shmring_pos(atomic_load_explicit(&r->seg->cons.read_pos, memory_order_acquire));
}

/* Can nobody hold position p in this role any more? A slot a dead producer
 * never committed keeps consumers from passing it, and one a dead consumer
 * never released keeps producers from taking it a lap later. An announcement
 * left by a participant that died after its commit or release may be looked at
 * laps later, when the slot words have come round to the same values
 * (layout.h): the counters, not the word, say whether p is still held. */
static int settled(const shmring_t *r, int put, uint64_t p, uint64_t write_pos, uint64_t read_pos)
{
    return put ? (int64_t)(read_pos - p) > 0 : (int64_t)(write_pos - (p + r->capacity)) > 0;
}

/* R3: move the slot word of position p from `from` to `to` (as shmring__state
 * makes them); 1 if we did. Only for positions not settled() by counters loaded
 * just before (load_counters): the width of the words covers a recoverer that
 * stalls in between (layout.h). */
static int move_slot(const shmring_t *r, uint64_t p, uint32_t from, uint32_t to)
{
    return shmring__seq_cas(r, p, from, to);
}

/* Hand back the slots of a read claim [pos, pos + n) that are still unreleased
 * (committed, or a hole it was skipping) for the next lap. */
static void release_held(const shmring_t *r, uint64_t pos, uint32_t n)
{
    uint64_t write_pos, read_pos;
    for (uint32_t k = 0; k < n; k++) {
        uint64_t p = pos + k;
        load_counters(r, &write_pos, &read_pos);
        if (settled(r, 0, p, write_pos, read_pos))
            continue;
        uint32_t released = shmring__state(r, p + r->capacity, SHMRING_SEQ_FREE);
        if (!move_slot(r, p, shmring__state(r, p, SHMRING_SEQ_COMMITTED), released))
            move_slot(r, p, shmring__state(r, p, SHMRING_SEQ_HOLE), released); /* a hole it was skipping */
    }
}

/* Give back what dead entry i announced. Returns 1 if it announced a claim
 * (which this call or another recoverer settled); sets *pending if a position
 * could not be settled yet. */
int shmring__queue_settle(shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead, uint32_t i,
                          int *pending)
{
    uint64_t write_pos, read_pos;
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
    if (a.n == 0 || a.n > r->maxsize)
        return 0; /* nothing held, or garbage: no claim is larger than maxsize */

    if (a.role == SHMRING_CLAIM_GET_SUPERVISED && supervisor_lives(r, e)) {
        *pending = 1; /* its supervisor adopts it (or leaves, and then we settle it) */
        return 0;
    }
    if (held_role(a.role)) {
        uint32_t role = a.role;
        /* R2 (acq_rel): one recoverer counts the claim (of a dead consumer, or
         * of a dead adopter); against A1: an adopter that took it since we looked owns it */
        while (role != SHMRING_CLAIM_GET_COUNTED) {
            if (atomic_compare_exchange_strong_explicit(&e->claim_role, &role, SHMRING_CLAIM_GET_COUNTED,
                                                        memory_order_acq_rel, memory_order_acquire)) {
                count_lost(r->seg, a.n);
                break;
            }
            if (role == SHMRING_CLAIM_GET_ADOPTED) {
                *pending = 1; /* the entry is the adopter's now */
                return 1;
            }
            /* Only a supervised claim handed back (unsupervise: GET_HELD) is
             * looked at again, once; any other change (counted by another
             * recoverer, the entry another owner's) is not ours to count. */
            if (a.role != SHMRING_CLAIM_GET_SUPERVISED || role != SHMRING_CLAIM_GET_HELD)
                break;
            a.role = SHMRING_CLAIM_GET_HELD;
        }
        release_held(r, a.pos, a.n);
        return 1;
    }
    if (a.role != SHMRING_CLAIM_PUT && a.role != SHMRING_CLAIM_GET)
        return 0; /* garbage */

    int put = a.role == SHMRING_CLAIM_PUT;
    for (uint32_t k = 0; k < a.n; k++) {
        uint64_t p = a.pos + k;
        load_counters(r, &write_pos, &read_pos);
        uint64_t counter = put ? write_pos : read_pos;
        /* the state if the dead owner held p, and what it becomes */
        uint32_t stuck = shmring__state(r, p, put ? SHMRING_SEQ_FREE : SHMRING_SEQ_COMMITTED);
        uint32_t hole = shmring__state(r, p, SHMRING_SEQ_HOLE);
        uint32_t released = shmring__state(r, p + r->capacity, SHMRING_SEQ_FREE);
        if ((int64_t)(counter - p) <= 0)
            continue; /* never claimed: the owner died before its CAS */
        if (settled(r, put, p, write_pos, read_pos))
            continue; /* committed or released, whoever held it */
        if ((!put && held_by_a_dead(r, seen, dead, p)) || shmring__covered_by_live(r, seen, dead, a.role, p)) {
            /* relaxed: only decides whether to look again later */
            uint32_t now = shmring__seq_load(r, p, memory_order_relaxed);
            if (now == stuck || now == hole)
                *pending = 1;
            continue;
        }
        if (move_slot(r, p, stuck, put ? hole : released))
            count_lost(r->seg, 1);
        else if (!put)
            move_slot(r, p, hole, released); /* a hole it was skipping */
    }
    return 1;
}

/* Does dead entry e announce a read claim it held (GET_HELD, GET_SUPERVISED,
 * GET_COUNTED by a recoverer, or GET_ADOPTED by an adopter that died)? acquire: as R2. Those go first: they count all of it lost and
 * release it, so that a dead consumer whose CAS for the same positions lost
 * to theirs then finds nothing to release, and nothing is counted twice. */
int shmring__queue_first_pass(const struct shmring_participant_entry *e)
{
    uint32_t role = atomic_load_explicit(&e->claim_role, memory_order_acquire);
    return atomic_load_explicit(&e->claim_n, memory_order_acquire) != 0 && held_role(role);
}

int shmring_queue_supervise(shmring_participant_t *me, uint64_t supervisor)
{
    shmring_t *r = me->ring;
    if (r->kind != SHMRING_KIND_QUEUE || (supervisor >> 32) == 0 || (supervisor >> 32) > r->max_participants)
        return shmring__fail(SHMRING_EINVAL, "supervisor token 0x%llx names no participant of this queue",
                             (unsigned long long)supervisor);
    /* S7 */
    atomic_store_explicit(&me->entry->supervisor, supervisor, memory_order_relaxed);
    return SHMRING_OK;
}

int shmring_queue_adopt(shmring_t *r, uint32_t i, int32_t pid, shmring_adoption_t *out)
{
    if (r->readonly || r->kind != SHMRING_KIND_QUEUE || i >= r->max_participants)
        return SHMRING_EINVAL;
    struct shmring_participant_entry *e = &r->parts[i];
    struct shmring__entry_view v;
    struct shmring__announcement a;
    if (!shmring__entry_snapshot(e, &v) || SHMRING_PART_STATUS(v.state) != SHMRING_PART_ACTIVE || v.pid != pid ||
        shmring__entry_alive(r, i, &v))
        return 0;
    /* R2. Only a claim that succeeded (P5): one killed between its claim CAS
     * and P5, a few instructions, is left to recovery (counted lost). */
    shmring__announcement(e, &a);
    if ((a.role != SHMRING_CLAIM_GET_HELD && a.role != SHMRING_CLAIM_GET_SUPERVISED) || a.n == 0 ||
        a.n > r->maxsize)
        return 0;
    /* R4: the entry is ours (a changed state: a recoverer or joiner was first) */
    uint32_t taken = shmring__entry_take(r, i, v.state);
    if (taken == 0)
        return 0;
    if (SHMRING_PART_STATUS(taken) != SHMRING_PART_JOINING_LOCKED) {
        /* Taken without its lock (no lock file, or only a read lock on it): an
         * adopter killed holding it would leave an entry counted alive and its
         * slots held for ever. Give it back to the dead owner as it was
         * (release: as L1; nobody else writes the state of an entry JOINING)
         * and leave the claim to recovery. */
        atomic_store_explicit(&e->state, v.state, memory_order_release);
        unsupervise(e, a.role);
        return 0;
    }
    uint32_t held = a.role;
    /* A1: against R2's CAS, for its atomicity alone (exactly one side wins):
     * relaxed, as the slots we read were published to us by R2's acquire of
     * the announcement (-> P5, after the dead consumer's C1) */
    if (!atomic_compare_exchange_strong_explicit(&e->claim_role, &held, SHMRING_CLAIM_GET_ADOPTED,
                                                 memory_order_relaxed, memory_order_relaxed)) {
        shmring__entry_free(r, i, taken); /* a recoverer counted them, and releases them */
        return 0;
    }
    out->span.pos = a.pos;
    out->span.n = a.n;
    out->entry = i;
    out->state = taken;
    return 1;
}

void shmring_queue_adopt_release(shmring_t *r, const shmring_adoption_t *ad)
{
    release_held(r, ad->span.pos, ad->span.n);
    shmring__entry_free(r, ad->entry, ad->state);
    /* relaxed: a statistic */
    atomic_fetch_add_explicit(&r->seg->stats.recoveries, 1, memory_order_relaxed);
    shmring__wake(r, &r->seg->not_full); /* room for producers, as a release makes */
}

/* 1 if what a caller waiting for `what` (READABLE / WRITABLE) waits on is held by
 * an unfinished claim - the next message was claimed by a producer and not
 * committed, or the next slot still holds a message a consumer claimed and did
 * not release - with that position in *pos: only then can a dead participant
 * be the cause, and recovery be worth its system calls. Cheap: three loads.
 * JOINED: 1 while tasks are unfinished, *pos 0 (join()'s blockers may be
 * anywhere, so it recovers every recover_after while it waits). */
static int stuck(const shmring_t *r, int what, uint64_t *pos)
{
    struct shmring_segment *seg = r->seg;
    if (r->readonly)
        return 0; /* it has no slots to look at (segment.c, snapshot) */
    /* relaxed throughout: a hint that decides whether recovery is worth running;
     * positions without the shut-down flags (layout.h) */
    if (what == SHMRING_WAIT_READABLE) {
        uint64_t rp = shmring_pos(atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed));
        uint32_t seq = shmring__seq_load(r, rp, memory_order_relaxed);
        uint64_t wp = shmring_pos(atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed));
        *pos = rp;
        /* claimed by a producer, not committed */
        return seq == shmring__state(r, rp, SHMRING_SEQ_FREE) && (int64_t)(wp - rp) > 0;
    }
    if (what == SHMRING_WAIT_WRITABLE) {
        uint64_t wp = shmring_pos(atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed));
        uint32_t seq = shmring__seq_load(r, wp, memory_order_relaxed);
        uint64_t rp = shmring_pos(atomic_load_explicit(&seg->cons.read_pos, memory_order_relaxed));
        uint64_t prev = wp - r->capacity; /* the position the slot held last lap */
        *pos = wp;
        /* claimed by a consumer (read_pos is past it), not released */
        return (seq == shmring__state(r, prev, SHMRING_SEQ_COMMITTED) ||
                seq == shmring__state(r, prev, SHMRING_SEQ_HOLE)) &&
               (int64_t)(rp - prev) > 0;
    }
    if (what == SHMRING_WAIT_JOINED) {
        uint64_t done = atomic_load_explicit(&seg->join.tasks_done, memory_order_relaxed);
        uint64_t wp = shmring_pos(atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed));
        /* join()'s blockers may be anywhere (a dead consumer's claim, a dead
         * producer's slot): one fixed position, so recovery runs every
         * recover_after for as long as tasks are unfinished */
        *pos = 0;
        return (int64_t)(wp - done) > 0;
    }
    return 0;
}

int shmring_queue_unstick(shmring_t *r, int what, uint64_t now, uint64_t *recheck_ns)
{
    uint64_t pos = 0;
    int is_stuck = (unsigned)what <= SHMRING_WAIT_JOINED && stuck(r, what, &pos);
    return shmring__unstick_after(r, what, is_stuck, pos, now, recheck_ns); /* recovery.c: the timing */
}
