/*
 * kind.h - what a ring kind plugs into the generic floor (segment.c, wait.c,
 * recovery.c). A kind is a pair of files, its protocol (queue.c) and its
 * recovery rules (queue_recovery.c), and one table of the operations below,
 * registered in kinds.c. The generic files call a kind only through its table:
 * adding a kind adds files and one line in kinds.c, and touches no other kind.
 *
 * The shared-memory parts every kind has: the common header, the participant
 * table with each entry's announcement (claim_role / claim_pos / claim_n: what
 * the entry is about to hold, withdrawn with claim_n = 0), the stats line and
 * the slot arrays (layout.h, slots.h). The kind owns its counters and wait
 * queues, what an announcement means, its parameters in the header
 * (kind_args) and an area of its own between the participant table and the
 * slot words (layout: kind_offset; r->kind_area).
 */
#ifndef SHMRING_KIND_H
#define SHMRING_KIND_H

#include "internal.h"

struct shmring_kind {
    uint32_t kind;  /* SHMRING_KIND_* recorded in the header */
    uint32_t flags; /* header flags every ring of the kind has (a topic: SHMRING_FLAG_MULTICAST) */
    /* Sizes and offsets of the areas after the fixed part, from the header's
     * parameters (slot_size, maxsize, max_participants, flags, kind_args: what
     * create proposes, or what attach read), for create and attach; a SHMRING_E*
     * code names the parameter out of range. */
    int (*layout)(const struct shmring_header *h, struct shmring_layout *out);
    /* Attach, after every header field checked out: is the kind's shared state
     * (its counters) consistent with the header copy h? SHMRING_OK or a code. */
    int (*validate)(struct shmring_segment *seg, const struct shmring_header *h);
    /* The kind's wait queues in the fixed part, by what a waiter waits for
     * (SHMRING_WAIT_*): a waiter for `what` sleeps on waitq_offsets[what]. */
    uint32_t n_waitqs;
    size_t waitq_offsets[SHMRING_WAITQS_MAX];
    /* Could a wait for `what` end now? A hint from relaxed loads, asked by a
     * waiter after it announced itself asleep (wait.c, F1). NULL where
     * ready_at is given. */
    int (*ready)(const shmring_t *r, int what);
    /* Where readiness is the waiter's own (a topic's subscriber waits at its own
     * cursor, me->wait_pos; a publisher for its own claim, me->wait_claimed),
     * this replaces ready for the re-check; else NULL. */
    int (*ready_at)(const shmring_participant_t *me, int what);
    /* Recovery (recovery.c) settles the claims of dead entries in two passes:
     * first those for which first_pass says 1, then the others. settle gives
     * back what dead entry i announced: 1 if it announced a claim (this call or
     * another recoverer settled it); *pending = 1 if some of it cannot be
     * settled yet (the entry is then kept, to be looked at again). seen: the
     * snapshot of every entry taken when the dead were found; dead: which. */
    int (*first_pass)(const struct shmring_participant_entry *e);
    int (*settle)(shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead, uint32_t i,
                  int *pending);
};

/* The kind recorded as `kind` in a header, or NULL for none we know (kinds.c). */
const struct shmring_kind *shmring__kind(uint32_t kind);

/* The kinds (each defined beside its protocol). */
extern const struct shmring_kind shmring__queue_kind;
extern const struct shmring_kind shmring__topic_kind;

/* What every kind's recovery rules share (recovery.c). */
struct shmring__announcement {
    uint32_t role, n;
    uint64_t pos;
};
/* Entry e's announcement, with acquire loads (pairs with the kind's release
 * stores of it: queue.c P2, topic.c P2). */
void shmring__announcement(const struct shmring_participant_entry *e, struct shmring__announcement *a);
/* Is position p (claimed in `role`: a GET role stands for all of GET, GET_HELD
 * and GET_COUNTED) announced by a participant not found dead (seen, dead: the
 * recovery's snapshot)? */
int shmring__covered_by_live(const shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead,
                             uint32_t role, uint64_t p);
/* Does entry j hold a claim in `role` (as covered_by_live) and is it not found
 * dead? Its announcement in *a then. */
int shmring__live_claim(const shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead, uint32_t j,
                        uint32_t role, struct shmring__announcement *a);
/* Recovery timing of a waiter for `what` (SHMRING_WAIT_*: its side): it is
 * stuck (1) at pos or not (0). Runs shmring_recover and returns 1 once it has
 * been stuck at pos for the handle's recover_after (across calls); else 0, with
 * *recheck_ns when to look again (0: not stuck). now: shmring_now_ns() or 0. */
int shmring__unstick_after(shmring_t *r, int what, int stuck, uint64_t pos, uint64_t now, uint64_t *recheck_ns);

#endif /* SHMRING_KIND_H */
