/*
 * queue.h - what the queue's two files, its protocol (queue.c) and its
 * recovery rules (queue_recovery.c), share. Nothing outside them includes it.
 */
#ifndef SHMRING_QUEUE_H
#define SHMRING_QUEUE_H

#include "kind.h"

/* The queue's recovery rules (kind.h, settle and first_pass). */
int shmring__queue_settle(shmring_t *r, const struct shmring__entry_view *seen, const uint8_t *dead, uint32_t i,
                          int *pending);
int shmring__queue_first_pass(const struct shmring_participant_entry *e);
/* n messages that will never get a task_done() (lost to the dead, or discarded
 * by an immediate shutdown): add them to *counter (a statistic of seg's stats
 * line) and to tasks_done (R5, queue_recovery.c). */
void shmring__queue_count_done(struct shmring_segment *seg, _Atomic uint64_t *counter, uint64_t n);

#endif /* SHMRING_QUEUE_H */
