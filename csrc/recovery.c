/*
 * recovery.c - giving back what participants held when their process died:
 * find the dead (liveness.c), hand each one's announced claim to the ring
 * kind's settle rule (kind.h; the queue's are in queue_recovery.c), then free
 * the entries whose claims are settled (participants.c).
 *
 * Atomic pairs in this file:
 *   R4  taking the entry as if joining (J1) and freeing it (L0, L1: participants.c)
 *   R2  shmring__announcement: acquire loads of an entry's announcement -> the
 *       kind's release stores of it (queue.c P2 / P5 / withdraw, topic.c P2 /
 *       withdraw): we see the claim, or, if it moved on, what came before that
 *   covered_by_live: acquire load of an entry's state -> J3 / L1 (members.c,
 *       participants.c): who owns the entry now, before its announcement (R2)
 *   unstick_after: relaxed process-local timing (internal.h, stuck_since)
 *   The entries' snapshots pair as participants.c says (J2, J3); the kind's
 *   settle rules name their own pairs (queue_recovery.c: R1, R2, R3, R5, A1).
 */
#include <stdlib.h>

#include "kind.h"

void shmring__announcement(const struct shmring_participant_entry *e, struct shmring__announcement *a)
{
    /* R2 */
    a->n = atomic_load_explicit(&e->claim_n, memory_order_acquire);
    a->role = atomic_load_explicit(&e->claim_role, memory_order_acquire);
    a->pos = atomic_load_explicit(&e->claim_pos, memory_order_acquire);
}

int shmring__live_claim(const shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead, uint32_t j,
                        uint32_t role, struct shmring__announcement *a)
{
    const struct shmring_participant_entry *e = &r->parts[j];
    /* acquire: pairs with J3/L1, who owns the entry now */
    uint32_t state = atomic_load_explicit(&e->state, memory_order_acquire);
    if ((dead[j] && state == seen[j].state) || SHMRING_PART_STATUS(state) == SHMRING_PART_FREE)
        return 0; /* still the dead owner, or nobody */
    shmring__announcement(e, a);
    uint32_t their_role = a->role == SHMRING_CLAIM_PUT ? SHMRING_CLAIM_PUT : SHMRING_CLAIM_GET;
    return a->n != 0 && their_role == role;
}

int shmring__covered_by_live(const shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead,
                             uint32_t role, uint64_t p)
{
    struct shmring__announcement a;
    for (uint32_t j = 0; j < r->max_participants; j++)
        if (shmring__live_claim(r, seen, dead, j, role, &a) && p - a.pos < a.n)
            return 1;
    return 0;
}

int shmring__unstick_after(shmring_t *r, int what, int stuck, uint64_t pos, uint64_t now, uint64_t *recheck_ns)
{
    int side = what; /* SHMRING_WAIT_READABLE, _WRITABLE or _JOINED: 0, 1, 2 */
    /* relaxed throughout: process-local timing shared by the handle's threads,
     * where a race at worst runs recovery twice (internal.h, stuck_since) */
    *recheck_ns = 0;
    if ((unsigned)what > SHMRING_WAIT_JOINED)
        return 0;
    if (!stuck) {
        atomic_store_explicit(&r->stuck_since[side], 0, memory_order_relaxed);
        return 0;
    }
    if (now == 0)
        now = shmring_now_ns();
    uint64_t after = atomic_load_explicit(&r->recover_after_ns, memory_order_relaxed);
    uint64_t since = atomic_load_explicit(&r->stuck_since[side], memory_order_relaxed);
    if (since == 0 || atomic_load_explicit(&r->stuck_pos[side], memory_order_relaxed) != pos) {
        atomic_store_explicit(&r->stuck_pos[side], pos, memory_order_relaxed);
        since = now; /* stuck from now on, here */
        atomic_store_explicit(&r->stuck_since[side], since, memory_order_relaxed);
    } else if (now >= since && now - since >= after) { /* since may be another thread's later now */
        atomic_store_explicit(&r->stuck_since[side], now, memory_order_relaxed);
        shmring_recover(r);
        return 1;
    }
    *recheck_ns = since + after >= since ? since + after : UINT64_MAX; /* saturated */
    return 0;
}

/* Recover dead entry i and free it unless some of its claim is still pending.
 * 1 if it held a claim and this call freed it. */
static int recover_entry(shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead, uint32_t i)
{
    int pending;
    int held = r->ops->settle(r, seen, dead, i, &pending);
    if (pending)
        return 0; /* keep the entry: its announcement is still needed */
    /* R4: take the entry as a joiner would (with its lock: killed before the
     * entry is free, we leave it JOINING_LOCKED, whose death shows), so that
     * nobody else can while we clear its sleeper bits, then free it. */
    uint32_t taken = shmring__entry_take(r, i, seen[i].state);
    if (taken == 0)
        return 0; /* another recoverer, or a joiner, got there first */
    shmring__entry_free(r, i, taken);
    if (!held)
        return 0;
    /* relaxed: a statistic */
    atomic_fetch_add_explicit(&r->seg->stats.recoveries, 1, memory_order_relaxed);
    return 1;
}

int shmring_recover(shmring_t *r)
{
    if (r->readonly)
        return 0; /* a handle that only looks changes nothing */
    /* On the heap: 34 KiB for a full table, and this also runs inside a put or
     * get (reap_sleepers below), on whatever stack the caller's thread has. */
    uint32_t n = r->max_participants;
    struct shmring__entry_view *seen = calloc(n, sizeof *seen + 2);
    if (seen == NULL)
        return 0; /* tried again at the next stuck wait */
    uint8_t *dead = (uint8_t *)(seen + n), *held = dead + n;
    int found = 0;
    for (uint32_t i = 0; i < r->max_participants; i++) {
        if (!shmring__entry_snapshot(&r->parts[i], &seen[i]))
            continue; /* changing hands right now: alive */
        uint32_t status = SHMRING_PART_STATUS(seen[i].state);
        if ((status == SHMRING_PART_ACTIVE || status == SHMRING_PART_JOINING_LOCKED) &&
            !shmring__entry_alive(r, i, &seen[i])) { /* a joiner killed joining holds no claim */
            dead[i] = 1;
            held[i] = (uint8_t)r->ops->first_pass(&r->parts[i]);
            found = 1;
        }
    }
    int recovered = 0;
    if (!found)
        goto done;
    /* The kind's first pass first (the queue's: dead consumers that held their
     * claim, queue_recovery.c), then the rest. */
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < r->max_participants; i++)
            if (dead[i] && held[i] == (pass == 0))
                recovered += recover_entry(r, seen, dead, i);
    /* Claims were given back (the queue: holes can be skipped, slots reused,
     * join() may be done): wake whoever waits. A wake that finds nobody behind
     * a sleeper bit asks for no further recovery: this one just ran. */
    for (uint32_t k = 0; k < r->n_waitqs; k++)
        (void)shmring__notify(r, r->waitqs[k]);
done:
    free(seen);
    return recovered;
}

/* A sleeper bit with nobody asleep behind it is a waiter between setting it
 * and sleeping, or one killed in its sleep, whose bit would make every later
 * notify a system call. The second is for recovery, which frees the dead
 * entry and clears its bits; asked at most every SHMRING_REAP_NS per handle. */
#define SHMRING_REAP_NS 100000000u

void shmring__reap_sleepers(shmring_t *r)
{
    uint64_t now = shmring_now_ns();
    /* relaxed: a process-local rate limit; a race only recovers twice */
    if (now < atomic_load_explicit(&r->reap_after_ns, memory_order_relaxed))
        return;
    atomic_store_explicit(&r->reap_after_ns, now + SHMRING_REAP_NS, memory_order_relaxed);
    shmring_recover(r);
}

void shmring_set_recover_after(shmring_t *r, uint64_t ns)
{
    /* relaxed: process-local configuration (internal.h, recover_after_ns) */
    atomic_store_explicit(&r->recover_after_ns, ns ? ns : SHMRING_RECOVER_AFTER_DEFAULT_NS, memory_order_relaxed);
}
