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
/* tasks_done += n, never past write_pos (T1, T2: queue.c): exact (task_done),
 * all of n or SHMRING_EJOIN; else as much as fits (messages that will never
 * get a task_done(), some of which may have had an early one). Returns how
 * many it added; *reached: 1 if that made tasks_done write_pos. */
int64_t shmring__queue_add_done(struct shmring_segment *seg, uint64_t n, int exact, int *reached);
/* Wake join()'s waiters: on joined, and once shut down also on not_empty,
 * where a joiner sleeps after an immediate shutdown (D6, queue.c). */
void shmring__queue_wake_joiners(shmring_t *r);
/* n messages that will never get a task_done() (lost to the dead, or discarded
 * by an immediate shutdown): add them to *counter (a statistic of seg's stats
 * line) and to tasks_done (shmring__queue_add_done). */
void shmring__queue_count_done(struct shmring_segment *seg, _Atomic uint64_t *counter, uint64_t n);

#endif /* SHMRING_QUEUE_H */
