/*
 * members.c - this process's participants in a ring: joining (taking a free
 * entry, or the entry of a process that died holding nothing, or running
 * recovery to free one), leaving, and the handle's list of them (so that close
 * can leave them all). The entries themselves are participants.c's.
 *
 * Atomic pairs in this file (partners in participants.c):
 *   J2 (join: release stores of the identity fields, after J1 in
 *      shmring__entry_take) pairs with the acquire loads of entry_snapshot.
 *   J3 (join: release store ACTIVE) pairs with acquire loads of `state` by
 *      table readers.
 *   A joiner's acquire load of a dead entry's claim_n pairs with P2 / withdraw
 *   (queue.c): see the comment at the load.
 */
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

/* Take entry i whose state word is `expected` and make it ours; its new state
 * word if we got it (never 0: ACTIVE), else 0. */
static uint32_t join_entry(shmring_t *r, uint32_t i, uint32_t expected, pid_t pid, uint64_t start_time,
                           uint64_t pid_ns)
{
    struct shmring_participant_entry *e = &r->parts[i];
    uint32_t taken = shmring__entry_take(r, i, expected);
    if (taken == 0)
        return 0;
    shmring__hook(SHMRING_HOOK_JOINING);
    uint32_t liveness = SHMRING_PART_STATUS(taken) == SHMRING_PART_JOINING_LOCKED ? SHMRING_LIVENESS_LOCK
                                                                                 : SHMRING_LIVENESS_PID;
    uint32_t active = SHMRING_PART_STATE(SHMRING_PART_ACTIVE, SHMRING_PART_GEN(taken));
    /* J2 */
    atomic_store_explicit(&e->pid, (int32_t)pid, memory_order_release);
    atomic_store_explicit(&e->start_time, start_time, memory_order_release);
    atomic_store_explicit(&e->pid_ns, pid_ns, memory_order_release);
    atomic_store_explicit(&e->liveness, liveness, memory_order_release);
    /* relaxed: published by J3 */
    atomic_store_explicit(&e->claim_n, 0, memory_order_relaxed);
    atomic_store_explicit(&e->claim_role, SHMRING_CLAIM_NONE, memory_order_relaxed);
    atomic_store_explicit(&e->supervisor, 0, memory_order_relaxed); /* names nobody until shmring_queue_supervise */
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
    if (shmring__process_info(pid, &start_time, &zombie) != SHMRING_OK)
        start_time = 0; /* liveness then falls back to the pid alone */
    uint64_t pid_ns = shmring__namespaces();
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
                 * and then erased. acquire: pairs with P2 / withdraw (queue.c).
                 * The CAS in take_entry fails if the entry changed hands. */
                if ((status != SHMRING_PART_ACTIVE && status != SHMRING_PART_JOINING_LOCKED) ||
                    shmring__entry_alive(r, i, &v) ||
                    atomic_load_explicit(&r->parts[i].claim_n, memory_order_acquire) != 0)
                    continue;
            }
            if ((state = join_entry(r, i, v.state, pid, start_time, pid_ns)) != 0)
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
    /* relaxed: any value is a valid lower bound of read_pos; a position, without
     * a shut-down queue's flags (layout.h) */
    me->cached_read_pos = shmring_pos(atomic_load_explicit(&r->seg->cons.read_pos, memory_order_relaxed));
    pthread_mutex_lock(&r->members_lock);
    me->next = r->members;
    if (r->members)
        r->members->prev = me;
    r->members = me;
    pthread_mutex_unlock(&r->members_lock);
    *out = me;
    return SHMRING_OK;
}

uint32_t shmring_participant_index(const shmring_participant_t *me)
{
    return me->index;
}

uint64_t shmring_participant_token(const shmring_participant_t *me)
{
    return ((uint64_t)(me->index + 1) << 32) | me->state; /* + 1: never 0, "none" */
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
        atomic_load_explicit(&me->entry->state, memory_order_relaxed) == me->state)
        shmring__entry_free(r, me->index, me->state);
    free(me);
}
