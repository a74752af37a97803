/*
 * internal.h - process-local state shared by the csrc/ translation units.
 * Nothing here is in shared memory (that is layout.h).
 */
#ifndef SHMRING_INTERNAL_H
#define SHMRING_INTERNAL_H

#include <pthread.h>
#include <sys/types.h>

#include "layout.h"
#include "shmring.h"

struct shmring {
    struct shmring_segment *seg;
    size_t mapped_size;
    /* Copies of the validated header: the shared header is never trusted again
     * after attach, so a peer scribbling on it cannot steer our indexing. */
    uint64_t slot_size, capacity, mask, maxsize;
    uint32_t kind, flags, max_participants;
    uint32_t meta_shift;            /* log2 of the slot word stride: 2 records, 3 bytes */
    struct shmring_participant_entry *parts;
    unsigned char *meta;
    unsigned char *payload;
    char schema[SHMRING_SCHEMA_MAX];
    char name[SHMRING_NAME_MAX + 2];
    /* This process's participants, so that close can leave them all. */
    pthread_mutex_t members_lock;
    shmring_participant_t *members;
};

struct shmring_participant {
    shmring_t *ring;
    struct shmring_participant_entry *entry;
    uint32_t index;                 /* of entry in the table, and of our sleeper bit */
    pid_t pid;                      /* the process that joined; a forked child is not it */
    /* Producer-side copy of cons.read_pos. read_pos only grows, so a stale copy
     * is a lower bound and can only make the maxsize check stricter. */
    uint64_t cached_read_pos;
    shmring_participant_t *prev, *next;
};

/* The sequence word of the slot holding pos (states in layout.h). */
static inline _Atomic uint32_t *shmring__seq(const shmring_t *r, uint64_t pos)
{
    return (_Atomic uint32_t *)(r->meta + ((pos & r->mask) << r->meta_shift));
}

/* The length word of the slot holding pos: byte rings only. */
static inline uint32_t *shmring__len(const shmring_t *r, uint64_t pos)
{
    return (uint32_t *)(r->meta + ((pos & r->mask) << r->meta_shift) + SHMRING_LEN_OFFSET);
}

/* A position (or state) as stored in a sequence word. */
static inline uint32_t shmring__s32(uint64_t v)
{
    return (uint32_t)v;
}

/* seq - v as a signed distance: negative if seq is "before" v. */
static inline int32_t shmring__seq_diff(uint32_t seq, uint64_t v)
{
    return (int32_t)(seq - (uint32_t)v);
}

/* Layout arithmetic shared by create and attach (segment.c). */
struct shmring_layout {
    uint64_t capacity, participants_offset, meta_offset, payload_offset, mapped_size;
};
int shmring__layout_compute(uint64_t slot_size, uint64_t maxsize, uint32_t max_participants,
                            uint32_t flags, struct shmring_layout *out);

/* Wake whoever sleeps on q if anybody does (wait.c); called after progress. */
void shmring__notify(const shmring_t *r, struct shmring_waitq *q);
/* Clear participant i's sleeper bit in every wait queue (wait.c). */
void shmring__clear_sleeper(const shmring_t *r, uint32_t i);

/* A consistent copy of an entry's identity (participants.c). */
struct shmring__entry_view {
    uint32_t state;
    int32_t pid;
    uint64_t start_time, pid_ns;
};
/* 1 if the copy is consistent (the entry did not change hands while read). */
int shmring__entry_snapshot(const struct shmring_participant_entry *e, struct shmring__entry_view *v);
/* 1 if that process runs (or cannot be judged), 0 if it exited, is a zombie,
 * or its pid now belongs to a process started at another time. */
int shmring__process_alive(pid_t pid, uint64_t start_time, uint64_t pid_ns);
uint32_t shmring__count_alive(const shmring_t *r);

#endif /* SHMRING_INTERNAL_H */
