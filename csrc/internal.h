/*
 * internal.h - process-local state shared by the csrc/ translation units.
 * Nothing here is in shared memory (that is layout.h).
 */
#ifndef SHMRING_INTERNAL_H
#define SHMRING_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "layout.h"
#include "shmring.h"

/* "/NAME~" + 16 hex digits + NUL: a lock file's name (a segment's never holds '~') */
#define SHMRING_LOCK_NAME_SIZE (1 + SHMRING_NAME_MAX + 1 + 16 + 1)
/* Wait queues a kind may have (kind.h). */
#define SHMRING_WAITQS_MAX 4

struct shmring_kind;

struct shmring {
    struct shmring_segment *seg;
    size_t mapped_size;
    /* Copies of the validated header: the shared header is never trusted again
     * after attach, so a peer scribbling on it cannot steer our indexing. */
    uint64_t slot_size, capacity, mask, maxsize;
    uint32_t kind, flags, max_participants;
    uint32_t meta_shift;            /* log2 of the slot meta stride: 1 or 2 records, 3 bytes */
    uint32_t seq_bytes, seq_mask;   /* slot word width (2 or 4 bytes) and its value mask */
    uint32_t cap_shift;             /* log2(capacity): position >> cap_shift is its lap */
    uint32_t kind_args[2];          /* the header's (a topic's max_subscribers, max_topic_len) */
    unsigned char *kind_area;       /* the kind's own area (a topic's subscribers and keys), or NULL */
    struct shmring_participant_entry *parts;
    unsigned char *meta;
    unsigned char *payload;
    /* Off the lines the hot path reads (above): */
    const struct shmring_kind *ops; /* the ring kind's operations (kind.h, kinds.c) */
    /* The kind's wait queues in this mapping, by SHMRING_WAIT_* (kind.h). */
    struct shmring_waitq *waitqs[SHMRING_WAITQS_MAX];
    uint32_t n_waitqs;
    char schema[SHMRING_SCHEMA_MAX];
    char name[SHMRING_NAME_MAX + 2];
    dev_t seg_dev;                  /* the segment file we mapped, to unlink only it */
    ino_t seg_ino;
    int readonly;                   /* attached with SHMRING_ATTACH_READONLY: look, never join */
    /* Liveness (liveness.c). probe_fd, a descriptor of the ring's lock file (-1
     * without one), asks the kernel whether an entry's lock is held; lock_fd, an
     * open file description of this process's own, holds the locks of its
     * participants. A forked child shares its parent's descriptions, so it must
     * not keep lock_fd (shmring_after_fork): opened in lock_process (a count of
     * forks, shmring__process), -1 until needed. */
    int probe_fd, lock_fd;
    char lock_name[SHMRING_LOCK_NAME_SIZE]; /* "" without a lock file */
    uint64_t lock_ino;
    unsigned long lock_process;
    uint64_t locked[SHMRING_SLEEPER_WORDS]; /* entries whose lock lock_fd holds (members_lock) */
    /* When a wake call found no sleeper behind a sleeper bit, recovery may next
     * look for dead sleepers (recovery.c, reap_sleepers); relaxed, process-local. */
    _Atomic uint64_t reap_after_ns;
    /* This handle's last wake of each of waitqs (wait.c, N3): relaxed, process-local. */
    _Atomic uint64_t woke[SHMRING_WAITQS_MAX];
    /* Recovery timing (shmring_queue_unstick): how long a waiter may see what it
     * waits for held by an unfinished claim at one position before recovery
     * runs, and per side (readers [0], writers [1], join() [2]) where and since when
     * (0: not stuck) this handle saw it. Process-local and shared by the
     * handle's threads: relaxed throughout, since two threads that both find
     * recovery due only run it twice, which is harmless (as is one that reads a
     * new stuck_pos with the stuck_since of the episode before: an early scan;
     * liveness, not the timing, decides what is recovered). */
    _Atomic uint64_t recover_after_ns;
    _Atomic uint64_t stuck_pos[3], stuck_since[3]; /* indexed by SHMRING_WAIT_* */
    /* A topic's publishers (policy block): detach a live subscriber that has held
     * them at one gate position for slow_after_ns (0: never), timed from
     * gated_since at gated_pos. Relaxed, process-local, as the recovery timing. */
    _Atomic uint64_t slow_after_ns, gated_pos, gated_since;
    /* This process's participants, so that close can leave them all. */
    pthread_mutex_t members_lock;
    shmring_participant_t *members;
};

struct shmring_participant {
    shmring_t *ring;
    struct shmring_participant_entry *entry;
    uint32_t index;                 /* of entry in the table, and of our sleeper bit */
    unsigned long process;          /* shmring__process() of who joined; a forked child is not it */
    uint32_t state;                 /* the entry's state word while it is ours (ACTIVE + generation) */
    /* Producer-side copy of cons.read_pos. read_pos only grows, so a stale copy
     * is a lower bound and can only make the maxsize check stricter. */
    uint64_t cached_read_pos;
    /* A topic's publisher: the slowest live subscriber's cursor when it last
     * looked (UINT64_MAX: none), whose entry that was, and 1 + the subscriber
     * table's generation then (0: never looked). wait_pos: where a waiter waits (a subscriber's cursor,
     * or the end of a publisher's claim), for the kind's ready_at (kind.h). */
    uint64_t cached_gate, cached_gen, wait_pos;
    uint32_t cached_who;            /* the subscriber entry whose cursor cached_gate is */
    uint32_t wait_claimed;          /* 1: the waiter holds a claim it must still write (a topic's pending claim) */
    uint32_t wait_join;             /* 1: a queue's joiner that sleeps on not_empty (queue.c, ready_at) */
    shmring_participant_t *prev, *next;
};

/* Layout arithmetic shared by create, attach and a kind's table (layout.c). */
struct shmring_layout {
    uint64_t capacity, participants_offset, kind_offset, meta_offset, payload_offset, mapped_size;
};
/* kind_bytes: the kind's own area, between the participant table and the slot
 * words (at kind_offset; 0 for none). */
int shmring__layout_compute(uint64_t slot_size, uint64_t maxsize, uint32_t max_participants,
                            uint32_t flags, uint64_t kind_bytes, struct shmring_layout *out);
/* rc, with the detail "<what> <v><where> is out of range lo..hi", unless v is in it
 * (then SHMRING_OK). */
int shmring__check_range(int rc, const char *what, uint64_t v, uint64_t lo, uint64_t hi, const char *where);

/* Waiting (wait.c). */
static inline uint32_t shmring__sleeper_words(const shmring_t *r)
{
    return (r->max_participants + 63) / 64;
}
/* Wake whoever sleeps on q if anybody does; called after progress: with nobody
 * asleep a fence and a look at the bits, no system call. 1 if a sleeper bit was
 * set but the OS woke nobody: maybe a sleeper that died asleep, and the caller
 * then asks for recovery (shmring__reap_sleepers); else 0. Out of line, on
 * purpose: inlined into the commit and release (as it was for a while), the
 * one-message rows of `shmring bench` ran at 0.62-0.74x between two processes
 * on cores that share a cache (bench/RESULTS.md, "the inlined notifier"). */
int shmring__notify(shmring_t *r, struct shmring_waitq *q);
/* Announce me asleep on the kind's queue for `what`, re-check the kind's
 * readiness (ops->ready) and sleep at most timeout_ns unless ready: 1 ready or
 * woken, 0 timed out, SHMRING_EINTR. */
int shmring__sleep(shmring_participant_t *me, int what, uint64_t timeout_ns);
/* Clear participant i's sleeper bit in every wait queue. */
void shmring__clear_sleeper(const shmring_t *r, uint32_t i);
/* Sleeper bits set on q (a snapshot for display). */
uint32_t shmring__sleepers(const shmring_t *r, const struct shmring_waitq *q);
/* CLOCK_MONOTONIC as of the last timer tick where the system has that clock
 * (a vDSO read of a few ns, a tick's resolution, never ahead of the precise
 * clock), else the precise one; 0 when the system gives no time (a kernel or
 * sandbox refusing the clock). Process-local: no shared line is touched. */
uint64_t shmring__coarse_now_ns(void);

static inline void shmring__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Recovery (recovery.c). */
/* shmring__notify found a sleeper bit with nobody asleep behind it: run
 * recovery for dead sleepers, at most every so often per handle. */
void shmring__reap_sleepers(shmring_t *r);

/* After progress a kind makes: wake whoever sleeps on q, and if a sleeper bit
 * had nobody behind it, let recovery look for dead sleepers. */
static inline void shmring__wake(shmring_t *r, struct shmring_waitq *q)
{
    if (shmring__notify(r, q))
        shmring__reap_sleepers(r);
}

/* A consistent copy of an entry's identity (participants.c). */
struct shmring__entry_view {
    uint32_t state, liveness;
    int32_t pid;
    uint64_t start_time, pid_ns;
};
/* 1 if the copy is consistent (the entry did not change hands while read). */
int shmring__entry_snapshot(const struct shmring_participant_entry *e, struct shmring__entry_view *v);
/* Take entry i, whose state word was `expected`, as a joiner or a recoverer
 * does: its lock first where it can be had, then the state to JOINING_LOCKED
 * (JOINING without the lock). The state word now, or 0 if the entry changed
 * hands or another description holds its lock. */
uint32_t shmring__entry_take(shmring_t *r, uint32_t i, uint32_t expected);
/* Give back entry i, ours as `state`: withdraw its announcement, clear its
 * sleeper bits, drop our lock, then FREE it (unless it changed hands). */
void shmring__entry_free(shmring_t *r, uint32_t i, uint32_t state);

/* Liveness (liveness.c). */
/* 0 only on evidence that the owner of entry i (as seen in v) is dead: its lock
 * is free (LOCK), or (PID) its pid is gone, a zombie, or now another process's.
 * 1 if it runs or cannot be judged. */
int shmring__entry_alive(const shmring_t *r, uint32_t i, const struct shmring__entry_view *v);
/* Lock entry i's byte through our description, before taking the entry (called
 * with members_lock held): 1 if locked; 0 if not (no OFD locks here, no lock
 * file, or a read lock on it: the PID fallback then); -1 if the entry is not
 * ours to take: another description holds its write lock (a joiner racing us),
 * or ours does (another thread of this handle has just taken it, and unlocking
 * after a failed CAS would drop that thread's lock). */
int shmring__lock_entry(shmring_t *r, uint32_t i);
/* Drop our lock on entry i, if we hold it (members_lock held). */
void shmring__unlock_entry(shmring_t *r, uint32_t i);
/* The lock file of segment `name` (a "/..." name): made by the creator before
 * the segment is published, under a fresh random name, with read and write for
 * its owner and for exactly those the segment mode lets write, its CREATING
 * byte locked by the descriptor returned. SHMRING_OK with
 * its descriptor, inode and token (kept in the header), or -1, 0 and 0 where
 * there are no OFD locks; else a SHMRING_E* code. */
int shmring__lock_file_create(const char *name, mode_t segment_mode, int *fd, uint64_t *ino, uint64_t *token);
void shmring__lock_file_name(char out[SHMRING_LOCK_NAME_SIZE], const char *name, uint64_t token);
/* A descriptor of the lock file lock_name if it is the one the header names
 * (inode ino, on segment's file system, of segment's owner), or -1 if there is
 * none we may open. */
int shmring__lock_file_open(const char *lock_name, uint64_t ino, const struct stat *segment, int readonly);
/* The creator drops the CREATING lock it took with the file, once the segment
 * is published. 1 if some description holds a lock on fd's file, CREATING or
 * an entry's (or that cannot be told). */
void shmring__lock_file_published(int fd);
int shmring__lock_file_held(int fd);
/* Unlink lock_name if it is still the file of inode ino. */
void shmring__lock_file_remove(const char *lock_name, uint64_t ino);
/* Errors (errors.c). shmring__fail sets this thread's detail (what is wrong,
 * naming the value and the limit, e.g. "maxsize 0 is out of range 1..1073741824")
 * and returns rc; the public create / attach / unlink / remove calls clear it
 * first (shmring__clear_detail). */
#define SHMRING_DETAIL_MAX 200
int shmring__fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void shmring__clear_detail(void);
/* A SHMRING_E* code for the errno of a failed open (errors.c). */
int shmring__open_error(int err);
/* Our descriptors of a ring never leak into programs this process execs (liveness.c). */
void shmring__close_on_exec(int fd);
/* Who we are, for PID liveness: the OS's start time of a pid (SHMRING_OK, or
 * an error when the OS would not say) and our pid/time namespaces' identity. */
int shmring__process_info(pid_t pid, uint64_t *start_time, int *zombie);
uint64_t shmring__namespaces(void);
/* Which process this is, as a count of the forks it descends through: what a
 * participant and a lock description remember, since pids can repeat. */
unsigned long shmring__process(void);
/* Make sure write_pos says shut down once the kind's other flagged counter
 * does (a queue's read_pos, a topic's generation: D2 in queue.c's and
 * topic.c's tables): by the shutdown itself, or by whoever finds that flag
 * first (a shutdown under way, or killed between its two stores). Returns the
 * end, final from now on. Only after that flag was seen with acquire (D3) or
 * set (D1). */
static inline uint64_t shmring__seal(struct shmring_segment *seg)
{
    /* relaxed: a look, and D1 happens before it in every caller; the RMW below
     * reads the latest value whatever this saw */
    uint64_t w = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
    if (!(w & SHMRING_SHUT))
        w = atomic_fetch_or_explicit(&seg->prod.write_pos, SHMRING_SHUT, memory_order_release); /* D2 */
    return shmring_pos(w);
}

/* Test hook point reached: stall there if a test asked for it (hooks.c).
 * relaxed: test configuration, set before the operations it affects. */
extern _Atomic int shmring__hook_point __attribute__((visibility("hidden")));
void shmring__hook_stall(void);
static inline void shmring__hook(int point)
{
    if (__builtin_expect(atomic_load_explicit(&shmring__hook_point, memory_order_relaxed) == point, 0))
        shmring__hook_stall();
}

#include "slots.h"

#endif /* SHMRING_INTERNAL_H */
