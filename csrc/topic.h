/*
 * topic.h - what the topic's two files, its protocol (topic.c) and its
 * recovery rules and timing (topic_recovery.c), share: where its areas lie,
 * the subscriber table's liveness rule, the scan for the slowest subscriber.
 * Nothing outside them includes it. Atomic orders are named at each access;
 * the pairs are in topic.c's table (G1, P4).
 */
#ifndef SHMRING_TOPIC_H
#define SHMRING_TOPIC_H

#include "kind.h"

/* The subscriber table of a topic (the start of its own area). */
static inline struct shmring_subscriber_entry *shmring__subs(const shmring_t *r)
{
    return (struct shmring_subscriber_entry *)r->kind_area;
}

/* The key slot of the slot holding pos: a 32-bit length, then the bytes. */
static inline unsigned char *shmring__key(const shmring_t *r, uint64_t pos)
{
    return r->kind_area + (uint64_t)r->kind_args[0] * SHMRING_LINE +
           (pos & r->mask) * shmring_key_stride(r->kind_args[1]);
}

/* Is the owner of a subscriber entry whose state word is w still the
 * participant that subscribed? relaxed: whose the participant entry is now; an
 * entry left or recovered holds another state word (its generation moved on),
 * and one that is taken again only after that. */
static inline int shmring__sub_owned(const shmring_t *r, uint64_t w)
{
    uint32_t owner = SHMRING_SUB_OWNER(w);
    return owner < r->max_participants &&
           atomic_load_explicit(&r->parts[owner].state, memory_order_relaxed) == SHMRING_SUB_OWNER_STATE(w);
}

/* G1: the subscriber table changed (an entry subscribed, left, was detached or
 * recovered): bump its generation. seq_cst: the Dekker pair with a publisher's
 * claim (topic.c, P1 / P3); release: a publisher that loads the new generation
 * (acquire) and then scans sees the entries as they were made. */
static inline void shmring__subs_changed(shmring_t *r)
{
    atomic_fetch_add_explicit(&r->seg->cons.read_pos, 1, memory_order_seq_cst);
}

/* The cursor of the slowest live, attached subscriber (UINT64_MAX: none gates
 * publishers), and its index in *who. P4: acquire loads of each state word and
 * cursor, pairs with S4 (a subscriber's release store of its cursor once it is
 * done with the positions below): a publisher that overwrites a slot below the
 * gate does so after every reader of it finished. */
static inline uint64_t shmring__topic_gate(const shmring_t *r, uint32_t *who)
{
    struct shmring_subscriber_entry *subs = shmring__subs(r);
    uint64_t gate = UINT64_MAX;
    for (uint32_t i = 0; i < r->kind_args[0]; i++) {
        uint64_t w = atomic_load_explicit(&subs[i].state, memory_order_acquire);
        if (SHMRING_SUB_STATUS(w) != SHMRING_SUB_ACTIVE || !shmring__sub_owned(r, w))
            continue;
        uint64_t c = atomic_load_explicit(&subs[i].cursor, memory_order_acquire);
        if (c < gate) {
            gate = c;
            *who = i;
        }
    }
    return gate;
}

/* Would the slowest subscriber (gate) let a publisher write up to position
 * end (exclusive)? */
static inline int shmring__gate_allows(const shmring_t *r, uint64_t gate, uint64_t end)
{
    return gate == UINT64_MAX || (int64_t)(end - gate) <= (int64_t)r->maxsize;
}

/* Can the slot holding p be written for p now: its previous lap (p - capacity)
 * committed or a hole, or it is marked for p already? acquire (P5): pairs with
 * the previous lap's commit (P7) or recovery's CAS (R3): that writer is done. */
static inline int shmring__slot_writable(const shmring_t *r, uint64_t p)
{
    uint32_t w = shmring__seq_load(r, p, memory_order_acquire);
    if (w == shmring__state(r, p, SHMRING_SEQ_FREE))
        return 1; /* lap 0 (all zero), or marked by us already */
    if (p < r->capacity)
        return 0;
    return w == shmring__state(r, p - r->capacity, SHMRING_SEQ_COMMITTED) ||
           w == shmring__state(r, p - r->capacity, SHMRING_SEQ_HOLE);
}

/* The topic's recovery rules (kind.h, settle and first_pass). */
int shmring__topic_settle(shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead, uint32_t i,
                          int *pending);
int shmring__topic_first_pass(const struct shmring_participant_entry *e);
/* Make claimed position p a hole if its slot allows (topic_recovery.c). */
int shmring__topic_make_hole(const shmring_t *r, uint64_t p);

/* A subscriber (process-local). */
struct shmring_topic_prefix {
    uint32_t len;
    unsigned char *bytes;
};

struct shmring_topic_sub {
    shmring_t *ring;
    struct shmring_subscriber_entry *entry;
    uint32_t index;                 /* of entry in the subscriber table */
    uint32_t owner, owner_state;    /* the participant that subscribed (its index, its state word) */
    uint64_t word;                  /* entry's state word while it is ours and attached (ACTIVE) */
    uint64_t cursor;                /* our copy: we are the only writer of entry->cursor */
    uint64_t end;                   /* the end as we last read it: positions at or past it are not looked at */
    uint64_t end_checked_at;        /* coarse monotonic ns when a call last read the end again (topic.c) */
    uint64_t published;             /* the cursor as last stored in the entry (at most publish_every behind) */
    uint64_t publish_every;
    uint64_t lagged, unreported, received;
    int corrupt;                    /* a batch met a bad slot after what it returned: the next call says so */
    uint64_t corrupt_pos;           /* its position */
    unsigned long process;          /* shmring__process() of who subscribed */
    uint32_t n_prefixes, cap_prefixes;
    int everything;                 /* subscribed with no prefix, none added since: every key matches */
    struct shmring_topic_prefix *prefixes;
    unsigned char *key;             /* scratch for a key being matched: max_topic_len bytes */
};

#endif /* SHMRING_TOPIC_H */
