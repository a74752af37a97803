/*
 * participants.c - the table of threads (of processes) using a ring.
 *
 * Each thread that operates on a ring holds one entry; the entry records the
 * claim the thread is making, which crash recovery needs to tell dead holders
 * from live ones, and how its death can be established (LOCK or PID liveness,
 * liveness.c). Joining takes the entry's lock first, then the entry. This
 * file holds the table's entries (taking, freeing, reading them); joining and
 * leaving, which may run recovery to free entries, are members.c's.
 *
 * Atomic pairs in this file:
 *   J1 (take: acq_rel CAS of state to JOINING[_LOCKED]) pairs with L1 (free:
 *      release CAS to FREE): the previous owner is done with the entry before
 *      reuse. A recoverer takes and frees a dead entry the same way.
 *   J2 (join, members.c: release stores of the identity fields, after J1) pairs with the
 *      acquire loads of those fields by readers that re-check `state` after them
 *      (seqlock style, entry_snapshot): a reader that saw a new field also sees
 *      the state J1 wrote, so it knows the fields changed hands.
 *   J3 (join, members.c: release store ACTIVE) pairs with acquire loads of `state` by
 *      table readers: they see the identity fields of the new owner, and the
 *      lock was taken before it (a system call that returned before J3).
 *   L0 (free: release store claim_n = 0, before the lock is dropped) pairs
 *      with recovery's acquire load of claim_n (queue_recovery.c R2): a prober that
 *      finds the lock free, by a system call after ours, sees the withdrawal.
 *   shmring_info's count of entries: relaxed loads, a count for display.
 */
#include "internal.h"

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

uint32_t shmring__entry_take(shmring_t *r, uint32_t i, uint32_t expected)
{
    uint32_t gen = SHMRING_PART_GEN(expected) + 1;
    /* The lock first, then the entry: whoever is killed in between leaves an
     * entry whose death shows (JOINING_LOCKED, lock gone), never one stuck JOINING. */
    pthread_mutex_lock(&r->members_lock);
    int locked = shmring__lock_entry(r, i);
    uint32_t taken = SHMRING_PART_STATE(locked ? SHMRING_PART_JOINING_LOCKED : SHMRING_PART_JOINING, gen);
    /* J1: pairs with L1. */
    if (locked < 0 || !atomic_compare_exchange_strong_explicit(&r->parts[i].state, &expected, taken,
                                                                 memory_order_acq_rel, memory_order_relaxed)) {
        if (locked > 0)
            shmring__unlock_entry(r, i);
        taken = 0;
    }
    pthread_mutex_unlock(&r->members_lock);
    return taken;
}

void shmring__entry_free(shmring_t *r, uint32_t i, uint32_t state)
{
    struct shmring_participant_entry *e = &r->parts[i];
    /* L0: a prober that finds our lock free below sees nothing announced */
    atomic_store_explicit(&e->claim_n, 0, memory_order_release);
    shmring__clear_sleeper(r, i);
    pthread_mutex_lock(&r->members_lock);
    shmring__unlock_entry(r, i);
    pthread_mutex_unlock(&r->members_lock);
    /* L1: pairs with J1 of the next owner. Keeps the generation. A CAS, as a
     * recoverer or joiner that found our lock free may own the entry now. */
    atomic_compare_exchange_strong_explicit(&e->state, &state,
                                            SHMRING_PART_STATE(SHMRING_PART_FREE, SHMRING_PART_GEN(state)),
                                            memory_order_release, memory_order_relaxed);
}

/* Entries whose process is alive (or changing hands); makes system calls. */
static uint32_t count_alive(const shmring_t *r)
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

uint32_t shmring_participants_alive(const shmring_t *r)
{
    return count_alive(r);
}

void shmring_info(const shmring_t *r, shmring_info_t *out)
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
    out->participants_alive = count_alive(r);
}
