/*
 * shmring.h - the public C API of shmring: a bounded multi-producer
 * multi-consumer ring of fixed-size messages in POSIX shared memory.
 *
 * No Python here: this layer is usable (and tested) from plain C.
 *
 * Objects
 *   shmring_t              one process's mapping of a ring (create / attach / close)
 *   shmring_participant_t  one thread of one process registered in the ring's
 *                          participant table; every ring operation goes through one.
 *                          A participant is used by one thread at a time.
 *
 * Results
 *   Functions return SHMRING_OK (0) or a positive count on success and a
 *   negative SHMRING_E* code on failure; shmring_strerror() names it. Where
 *   the code is SHMRING_ESYS, errno holds the system error.
 *
 * Operations never block: put/get claims return 0 when the ring is full /
 * empty, and the caller waits with shmring_queue_wait() in bounded slices (so that
 * a binding can honour deadlines and signals between slices).
 */
#ifndef SHMRING_H
#define SHMRING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Result codes. */
enum {
    SHMRING_OK = 0,
    SHMRING_ESYS = -1,          /* system call failed, see errno */
    SHMRING_EINVAL = -2,        /* bad argument */
    SHMRING_ENAME = -3,         /* invalid segment name */
    SHMRING_ENOTFOUND = -4,     /* no segment of that name */
    SHMRING_EEXIST = -5,        /* a segment of that name already exists */
    SHMRING_EPERM = -6,         /* no permission to open the segment */
    SHMRING_ETOOBIG = -7,       /* message larger than the slot size */
    SHMRING_ENOMEM = -8,        /* out of (local or shared) memory */
    SHMRING_EFULLTABLE = -9,    /* participant table is full */
    SHMRING_ECORRUPT = -10,     /* a slot holds an impossible length (a cursor past the end) */
    SHMRING_EJOIN = -11,        /* task_done() called more times than put */
    SHMRING_EINTR = -12,        /* a wait was interrupted by a signal */
    SHMRING_ESHUTDOWN = -13,    /* shut down: no more puts / publishes; a getter or subscriber has drained it
                                 * (or, a queue shut down at once, gets no more) */
    SHMRING_EFULLSUBS = -14,    /* the topic's subscriber table is full */
    SHMRING_ERECORD = -15,      /* a records topic's message is not exactly one record */
    /* attach-time validation failures, one per thing that can be wrong */
    SHMRING_ETRUNCATED = -20,   /* segment smaller than its header says */
    SHMRING_ENOTREADY = -21,    /* segment exists but was never initialised */
    SHMRING_EMAGIC = -22,       /* not a shmring segment */
    SHMRING_EVERSION = -23,     /* made by an incompatible layout version */
    SHMRING_EKIND = -24,        /* a different kind of ring (e.g. topic) */
    SHMRING_EHEADER = -25,      /* header size field wrong */
    SHMRING_ESLOTSIZE = -26,    /* slot size out of range */
    SHMRING_EMAXSIZE = -27,     /* maxsize out of range */
    SHMRING_ECAPACITY = -28,    /* capacity inconsistent with maxsize */
    SHMRING_EPARTTABLE = -29,   /* participant table size out of range */
    SHMRING_EOFFSETS = -30,     /* area offsets inconsistent with the parameters */
    SHMRING_EMAPSIZE = -31,     /* recorded mapped size differs from the layout */
    SHMRING_EPOSITIONS = -32,   /* position counters inconsistent */
    SHMRING_ERESERVED = -33,    /* flags or reserved header bytes not zero */
    SHMRING_ECREATOR = -34,     /* creator pid or creation time implausible */
    SHMRING_ESCHEMA = -35,      /* schema missing, unterminated, or on a byte ring */
    SHMRING_EFILETYPE = -36,    /* not a regular file (a FIFO, a directory...) */
    SHMRING_EUNTRUSTED = -37,   /* world-writable and owned by another user */
    SHMRING_ELOCKFILE = -38,    /* no fresh name for the ring's lock file */
};

/* Ring kinds recorded in the header. */
enum { SHMRING_KIND_QUEUE = 1, SHMRING_KIND_TOPIC = 2 };
/* A topic's policy: BLOCK, publishers wait for the slowest live subscriber
 * (lossless); OVERWRITE, publishers never wait and a lapped subscriber counts
 * what it missed. */
enum { SHMRING_POLICY_BLOCK = 0, SHMRING_POLICY_OVERWRITE = 1 };

/* What shmring_queue_wait() waits for. */
enum { SHMRING_WAIT_READABLE = 0, SHMRING_WAIT_WRITABLE = 1, SHMRING_WAIT_JOINED = 2 };

/* Longest segment name accepted, without the leading '/' (macOS allows 31 with it). */
#define SHMRING_NAME_MAX 30
/* Largest message (slot payload) in bytes; lengths are stored in 32 bits. */
#define SHMRING_SLOT_SIZE_MAX (UINT32_C(1) << 30)
/* Largest maxsize (messages): capacities stay within 2^30, claims within 32 bits. */
#define SHMRING_MAXSIZE_MAX (UINT64_C(1) << 30)
/* Participant table size by default (at most SHMRING_PARTICIPANTS_MAX, 1024). */
#define SHMRING_PARTICIPANTS_DEFAULT 256

typedef struct shmring shmring_t;
typedef struct shmring_participant shmring_participant_t;

typedef struct shmring_params {
    uint64_t slot_size;         /* max payload bytes per message (records: exact), >= 1 */
    uint64_t maxsize;           /* max messages held at once, >= 1 */
    uint32_t kind;              /* SHMRING_KIND_* */
    uint32_t max_participants;  /* 0: SHMRING_PARTICIPANTS_DEFAULT */
    uint32_t mode;              /* file mode of the segment, e.g. 0600 */
    uint32_t records;           /* 1: fixed-size records, described by schema */
    const char *schema;         /* records: what a record is (NUL-terminated, < 1024) */
    /* topics (SHMRING_KIND_TOPIC); 0 in a queue: */
    uint32_t max_subscribers;   /* subscriber table size, 1..1024 (SHMRING_SUBSCRIBERS_MAX) */
    uint32_t max_topic_len;     /* bytes of key stored beside each message, 0..1024 */
    uint32_t policy;            /* SHMRING_POLICY_* */
} shmring_params_t;

/* A run of consecutive ring positions claimed in one step. */
typedef struct shmring_span {
    uint64_t pos;               /* first position */
    uint32_t n;                 /* number of positions */
} shmring_span_t;

/* Fill level and counters, read without locking (approximate while busy). */
/* shmring_stats_t.shut: how the queue was shut down (shmring_queue_shutdown). */
enum { SHMRING_SHUT_NO = 0, SHMRING_SHUT_DRAIN = 1, SHMRING_SHUT_IMMEDIATE = 2 };

typedef struct shmring_stats {
    uint64_t write_pos;         /* messages claimed by producers so far */
    uint64_t read_pos;          /* messages claimed by consumers (and discarders) so far */
    uint64_t tasks_done;        /* task_done() calls (and lost and discarded messages) so far */
    uint64_t lost;              /* messages lost to participants that died */
    uint64_t recoveries;        /* dead participants whose claims were recovered */
    uint64_t discarded;         /* messages discarded by an immediate shutdown */
    uint64_t expired;           /* messages dropped at dequeue: their deadline had passed */
    uint32_t readers_waiting;   /* participants asleep waiting for messages */
    uint32_t writers_waiting;   /* participants asleep waiting for space */
    uint32_t shut;              /* SHMRING_SHUT_* */
} shmring_stats_t;

const char *shmring_strerror(int rc);
/* What the last failed shmring_create / _attach / _unlink / _remove of the
 * calling thread found wrong, naming the value and the limit (e.g. "maxsize 0
 * in the header is out of range 1..1073741824"): set for every SHMRING_EINVAL
 * and every validation failure, "" when there is none (each of those calls
 * clears it first). Thread-local, valid until this thread's next such call. */
const char *shmring_error_detail(void);

/* ---- segment lifetime (segment.c) ---- */

/* name: "/something", at most SHMRING_NAME_MAX characters of A-Z a-z 0-9 . _ -
 * after the slash, not "." or "..". params->mode: permission bits (0600: yours
 * alone), applied exactly whatever the umask (except on macOS). */
int shmring_create(const char *name, const shmring_params_t *params, shmring_t **out);
/* Attach flags. READONLY: to inspect (ls / stat): opened for reading, a copy of
 * the header, counters and participant table (Linux; a read-only mapping on
 * macOS), so a peer truncating the file cannot fault us; such a handle cannot
 * join, and calls that would write (wake_all, recover, count_lost) do nothing. TRUST_WRITABLE: accept a segment that every user may
 * write although another user owns it; by default that is SHMRING_EUNTRUSTED,
 * since whoever can write a segment controls what its readers decode. */
enum { SHMRING_ATTACH_READONLY = 1, SHMRING_ATTACH_TRUST_WRITABLE = 2 };
/* Validates everything in the header against the real mapping before use. */
int shmring_attach(const char *name, uint32_t kind, int flags, shmring_t **out);
/* Leaves this process's participants and unmaps. Never unlinks. */
void shmring_close(shmring_t *ring);
/* Remove segment `name` and its lock file (the one its header names). */
int shmring_unlink(const char *name);
/* Remove this ring's names: its segment's, if that name still names the segment
 * this handle maps (SHMRING_ENOTFOUND if not: someone removed it, and the name
 * may be another ring's now), and its lock file. */
int shmring_remove(shmring_t *ring);
/* 1 if segment `name` was never published because its creator died making it:
 * no magic, before and after finding no lock at all on the lock file it names
 * (neither the creator's CREATING nor a participant's). 0 if published, being
 * made, or that cannot be told; <0 on error. Goes by name, as unlinking does:
 * a remove and a create of that name by others in between are not seen. */
int shmring_create_died(const char *name);
/* "/NAME~TOKEN", the file whose locks tell which participants live, or NULL
 * where there is none (no OFD locks). Valid until shmring_close. */
const char *shmring_lock_file(const shmring_t *ring);
/* schema points into the handle (valid until shmring_close). */
void shmring_params(const shmring_t *ring, shmring_params_t *out);
/* Slots in the ring (maxsize rounded up to a power of two, at least 4): slot i
 * of the payload area starts at shmring_slot_payload(ring, 0) + i * slot_size. */
uint64_t shmring_capacity(const shmring_t *ring);

/* ---- participants (members.c; the table: participants.c; after_fork: liveness.c) ---- */

/* Take an entry for the calling thread (SHMRING_EPERM on a READONLY handle). On
 * Linux it holds a lock on the entry for as long as it is joined: the kernel
 * drops it when the process dies, which is how others know (liveness.c). */
int shmring_participant_join(shmring_t *ring, shmring_participant_t **out);
void shmring_participant_leave(shmring_participant_t *me);
/* The index of me's entry in the table: what a supervisor names to adopt the
 * claim of a consumer that died (shmring_queue_adopt). */
uint32_t shmring_participant_index(const shmring_participant_t *me);
/* Who me is for as long as it stays joined: its index and its entry's state
 * word, as one nonzero value (a supervisor's, for shmring_queue_supervise). */
uint64_t shmring_participant_token(const shmring_participant_t *me);
/* In a child after fork(), before it uses the ring: stop sharing the parent's
 * open file description, whose liveness locks would otherwise keep the parent
 * looking alive as long as the child runs (and reset the handle's mutex). The
 * child's own participants join afresh; the parent's handles leave nothing. */
void shmring_after_fork(shmring_t *ring);

/* ---- the queue's protocol (queue.c) and slots (slots.c) ---- */

/* Claim flags: CONTIGUOUS stops a claim at the end of the payload area, so that
 * the claimed slots are one block of memory (for zero-copy views). */
/* EXPIRED: a get claim that hands out messages whose deadline passed too (the
 * caller marks them, shmring_queue_expiry); without it they are dropped at
 * dequeue, counted in stats.expired and done for join(). */
/* EXPIRY_SET: a put claim whose caller gives every claimed slot its deadline
 * (shmring_queue_set_expiry of the whole span) before the commit; without it
 * the claim clears the deadlines its slots held on an earlier lap (once any
 * message of the queue had one), so that a put that sets none leaves none. */
/* SUPERVISED: a get claim that recoverers leave to the supervisor named by
 * shmring_queue_supervise while it lives (its adoption, not a count of lost). */
enum { SHMRING_CLAIM_CONTIGUOUS = 1, SHMRING_CLAIM_EXPIRED = 2, SHMRING_CLAIM_EXPIRY_SET = 4, SHMRING_CLAIM_SUPERVISED = 8 };

/* Claim up to max_n consecutive free slots for writing; returns the number
 * claimed (0: full), SHMRING_ESHUTDOWN (shmring_queue_shutdown). Fill them with shmring_slot_payload/shmring_slot_set_len,
 * then publish them all with shmring_queue_put_commit. */
int shmring_queue_put_claim(shmring_participant_t *me, uint32_t max_n, int flags, shmring_span_t *span);
void shmring_queue_put_commit(shmring_participant_t *me, const shmring_span_t *span);
/* Publish the first `keep` slots of a claim and turn the rest into holes that
 * consumers skip (an aborted or partly used reservation). */
void shmring_queue_put_commit_partial(shmring_participant_t *me, const shmring_span_t *span, uint32_t keep);
/* Claim up to max_n consecutive committed messages; returns the number claimed
 * (0: empty), SHMRING_ESHUTDOWN (shut down and drained, or shut down at once). Read them, then hand the slots back with shmring_queue_get_release. */
int shmring_queue_get_claim(shmring_participant_t *me, uint32_t max_n, int flags, shmring_span_t *span);
void shmring_queue_get_release(shmring_participant_t *me, const shmring_span_t *span);

/* Message deadlines (CLOCK_MONOTONIC ns, as shmring_now_ns; 0 is none). set:
 * between a put claim and its commit, for the n positions from pos (a put
 * without one writes nothing). expiry: 1 and *deadline_ns if the claimed message at pos
 * carries one, else 0. */
void shmring_queue_set_expiry(const shmring_t *ring, uint64_t pos, uint32_t n, uint64_t deadline_ns);
int shmring_queue_expiry(const shmring_t *ring, uint64_t pos, uint64_t *deadline_ns);
/* Count n messages a caller took (SHMRING_CLAIM_EXPIRED) and dropped as
 * expired in stats.expired (they are its to mark done for join()). */
void shmring_queue_count_expired(shmring_t *ring, uint64_t n);

/* Copy the slots of a claimed span to (into_ring = 0) or from buf: at most two
 * memcpy calls (the span may wrap round the end of the payload area). */
void shmring_copy_span(const shmring_t *ring, const shmring_span_t *span, void *buf, int into_ring);

unsigned char *shmring_slot_payload(const shmring_t *ring, uint64_t pos);
void shmring_slot_set_len(const shmring_t *ring, uint64_t pos, uint32_t len);
/* Length of a claimed message, or SHMRING_ECORRUPT if it exceeds the slot size. */
int64_t shmring_slot_len(const shmring_t *ring, uint64_t pos);

/* One message in (claim + copy + commit), the common case of a put in one
 * call: 1 done, 0 full, SHMRING_ETOOBIG. */
int shmring_queue_put(shmring_participant_t *me, const void *data, size_t len);
/* The same, the message with a deadline (deadline_ns as shmring_queue_set_expiry; 0: none). */
int shmring_queue_put_deadline(shmring_participant_t *me, const void *data, size_t len, uint64_t deadline_ns);

/* Shut the queue down, for every process attached and every later one (as
 * Python 3.13's queue.Queue.shutdown): from now on every put claim returns
 * SHMRING_ESHUTDOWN; a claim made before finishes its commit normally. Get
 * claims take what is committed (and what claims in flight commit) and return
 * SHMRING_ESHUTDOWN once every position put was claimed by a consumer.
 * immediate: get claims return SHMRING_ESHUTDOWN at once, and what is left is
 * discarded: claimed and released by this call (and by later join() waits,
 * shmring_queue_wait JOINED, for claims in flight now), counted in
 * stats.discarded and done for join(). Wakes every waiter. Idempotent;
 * immediate after a plain shutdown discards then. A participant, because
 * discarding claims as a consumer does (a discarder killed midway is recovered
 * as a dead consumer: its claim counts as lost). SHMRING_EINVAL: not a queue. */
int shmring_queue_shutdown(shmring_participant_t *me, int immediate);

/* task_done()/join() accounting: tasks_done may not overtake write_pos
 * (SHMRING_EJOIN once it would; discards, lost messages and holes stop there too). */
int shmring_queue_task_done(shmring_participant_t *me, uint64_t n);
/* n messages a caller claimed and released but could not hand out (it was
 * interrupted, or out of memory): count them lost, and done for join(). */
void shmring_queue_count_lost(shmring_t *ring, uint64_t n);
uint64_t shmring_queue_unfinished(const shmring_t *ring);

/* Adoption (queue_recovery.c): a supervisor takes over the read claim that
 * its consumer held when it died, so that the messages go where the
 * supervisor keeps them and recovery does not count them lost. entry: the
 * dead participant's index (shmring_participant_index, told while it lived);
 * pid: its process as the supervisor knows it (the entry must name it). 1:
 * *out holds the claim; its slots stay readable (shmring_slot_*) until
 * shmring_queue_adopt_release hands them back (counting nothing lost). 0:
 * nothing to adopt (the entry is alive, another process's, holds no claim
 * that succeeded, or a recoverer was first and counted it lost).
 * SHMRING_EINVAL: entry out of range, a read-only handle, or not a queue. */
typedef struct shmring_adoption {
    shmring_span_t span;        /* the adopted claim */
    uint32_t entry, state;      /* the entry, ours until the release */
} shmring_adoption_t;
int shmring_queue_adopt(shmring_t *ring, uint32_t entry, int32_t pid, shmring_adoption_t *out);
void shmring_queue_adopt_release(shmring_t *ring, const shmring_adoption_t *adoption);
/* Name the supervisor (a token of its participant, shmring_participant_token,
 * told by it) that adopts me's SHMRING_CLAIM_SUPERVISED claims if me dies
 * holding one: until it leaves or dies, recovery leaves such a claim to it
 * (it must adopt every dead consumer's claim, or leave). SHMRING_EINVAL: a
 * token that names no entry of this ring. */
int shmring_queue_supervise(shmring_participant_t *me, uint64_t supervisor);

void shmring_queue_stats(const shmring_t *ring, shmring_stats_t *out);


/* ---- topics: publish / subscribe (topic.c; recovery rules: topic_recovery.c) ----
 *
 * A multicast ring: publishers claim consecutive positions with one CAS, fill
 * them (a key of up to max_topic_len bytes beside each payload) and commit;
 * every subscriber reads every position with a cursor of its own (an entry of
 * the topic's subscriber table) and copies out only the messages whose key
 * starts with one of its prefixes (none: every message). maxsize is the
 * topic's capacity: what it retains, and (BLOCK) how far publishers may run
 * ahead of the slowest live subscriber. */

typedef struct shmring_topic_sub shmring_topic_sub_t;

/* Claim up to max_n positions (at most maxsize) to publish: the number claimed,
 * 0 when there is no room (BLOCK: the slowest live subscriber is maxsize
 * behind; wait with shmring_topic_wait(..., SHMRING_WAIT_WRITABLE ...) and
 * claim again), SHMRING_ESHUTDOWN. Then shmring_topic_publish_begin. */
int shmring_topic_publish_claim(shmring_participant_t *me, uint32_t max_n, shmring_span_t *span);
/* 1 once the claimed slots may be written (they are then marked as being
 * written), 0 not yet: a subscriber subscribed meanwhile and must read first,
 * or a publisher a lap behind still writes one of these slots (wait, then ask
 * again). Then shmring_topic_fill each position, and commit. */
int shmring_topic_publish_begin(shmring_participant_t *me, const shmring_span_t *span);
/* Fill claimed position pos: key (key_len <= max_topic_len) and payload (len <=
 * slot size), unchecked (check before claiming). */
void shmring_topic_fill(const shmring_t *ring, uint64_t pos, const void *key, uint32_t key_len, const void *data,
                        uint32_t len);
/* Records topics: fill the span with span->n records of slot_size bytes from
 * buf, each under the same key. */
void shmring_topic_fill_records(const shmring_t *ring, const shmring_span_t *span, const void *buf, const void *key,
                                uint32_t key_len);
/* Publish the first `keep` positions of the claim; the rest become holes
 * that subscribers skip (counted in holes). */
void shmring_topic_publish_commit(shmring_participant_t *me, const shmring_span_t *span, uint32_t keep);
/* One message in one call: 1 published, 0 no room (nothing claimed),
 * SHMRING_TOPIC_PENDING (claimed, but begin said not yet: *span holds the
 * claim; wait, begin, fill, commit), SHMRING_ETOOBIG, SHMRING_ESHUTDOWN. */
#define SHMRING_TOPIC_PENDING 2
int shmring_topic_publish(shmring_participant_t *me, const void *key, uint32_t key_len, const void *data, uint32_t len,
                          shmring_span_t *span);

/* Where a new subscriber starts: LATEST, after everything published before
 * shmring_topic_subscribe returns; OLDEST, the oldest message the topic
 * retains (the last maxsize positions); AT, `position` (a value of
 * shmring_topic_position), or the oldest retained if that is gone (the gap
 * counts as lagged). */
enum { SHMRING_START_LATEST = 0, SHMRING_START_OLDEST = 1, SHMRING_START_AT = 2 };
/* Take an entry of the subscriber table for a subscriber owned by `owner` (its
 * process's liveness is the subscriber's). SHMRING_EFULLSUBS, SHMRING_EINVAL
 * (not a topic; AT beyond the end, with the detail), SHMRING_ENOMEM. */
int shmring_topic_subscribe(shmring_participant_t *owner, int start, uint64_t position, shmring_topic_sub_t **out);
/* Free the entry (in the process that subscribed, while the ring is open) and
 * the subscriber. */
void shmring_topic_unsubscribe(shmring_topic_sub_t *sub);
/* Free the subscriber's memory alone (its ring closed, or another process's). */
void shmring_topic_sub_free(shmring_topic_sub_t *sub);
/* Add (add = 1) or remove (0) a key prefix; SHMRING_ENOMEM, SHMRING_EINVAL
 * (longer than max_topic_len: it could match nothing). Adding one it has, or
 * removing one it has not, does nothing. A subscriber receives everything only
 * until its first prefix is added: with every prefix removed it receives nothing. Applies to every message not yet
 * received. */
int shmring_topic_filter(shmring_topic_sub_t *sub, const void *prefix, uint32_t len, int add);
/* The next message for sub: 1 with its key (room for max_topic_len bytes) and
 * payload (room for the slot size) copied out, their lengths and its position;
 * 0 none yet (wait READABLE); SHMRING_ESHUTDOWN, shut down and drained;
 * SHMRING_ECORRUPT, a slot with an impossible length (skipped). A subscriber
 * that was lapped (OVERWRITE) or detached (BLOCK) continues further on and
 * counts what it missed (shmring_topic_lagged). */
int shmring_topic_recv(shmring_topic_sub_t *sub, void *key, uint32_t *key_len, void *data, uint32_t *len,
                       uint64_t *pos);
/* Records topics: up to max_n matching records into buf (max_n x slot size
 * bytes): how many (0 none yet), or SHMRING_ESHUTDOWN when none and drained. */
int shmring_topic_recv_records(shmring_topic_sub_t *sub, void *buf, uint32_t max_n);
uint64_t shmring_topic_position(const shmring_topic_sub_t *sub);
/* Messages sub missed in all; shmring_topic_take_lag: those since it was last asked. */
uint64_t shmring_topic_lagged(const shmring_topic_sub_t *sub);
uint64_t shmring_topic_take_lag(shmring_topic_sub_t *sub);
/* Wait one slice: READABLE, for sub's next message (sub required); WRITABLE,
 * for room to claim from the current end (sub NULL) or for a pending claim's
 * begin (span: the claim, else NULL). As shmring_queue_wait. Shut down, a
 * WRITABLE wait without a claim ends at once (the claim then fails); one for a
 * pending claim, made before the shut-down, still waits until it may write. */
int shmring_topic_wait(shmring_participant_t *me, shmring_topic_sub_t *sub, const shmring_span_t *span, int what,
                       uint64_t timeout_ns, uint32_t spin);
/* Call when a recv (READABLE, sub) or a claim or begin (WRITABLE, span as for
 * the wait) found nothing, and between waits: 1 if recovery (after
 * recover_after at one position) or a detach (a live subscriber that held
 * publishers at one position for the slow timeout) ran: try again now; else 0
 * and *recheck_ns (as shmring_queue_unstick). */
int shmring_topic_unstick(shmring_participant_t *me, shmring_topic_sub_t *sub, const shmring_span_t *span, int what,
                          uint64_t now_ns, uint64_t *recheck_ns);
/* BLOCK: detach a live subscriber that held this handle's publishers at one
 * position for ns nanoseconds (0: never, the default). Process-local. */
void shmring_topic_set_slow_timeout(shmring_t *ring, uint64_t ns);
/* No claim succeeds from now on; a claim made before is still written (its
 * publisher waits for its slots as before); subscribers end once they have
 * read what was claimed before. Wakes every waiter. */
void shmring_topic_shutdown(shmring_t *ring);

typedef struct shmring_topic_stats {
    uint64_t published;         /* positions claimed so far (messages and holes) */
    uint64_t holes;             /* positions never committed (dead or abandoned claims) */
    uint64_t recoveries;        /* dead participants whose claims were recovered */
    uint64_t detached;          /* subscribers detached for gating too long */
    uint32_t subscribers;       /* entries in use */
    uint32_t shut;              /* 1 once shut down */
    uint32_t readers_waiting, writers_waiting;
} shmring_topic_stats_t;
void shmring_topic_stats(const shmring_t *ring, shmring_topic_stats_t *out);
typedef struct shmring_topic_sub_info {
    uint64_t position, lagged, received;
    int32_t pid;                /* of its owner */
    uint32_t detached;          /* 1: detached (BLOCK), resumes at its next call */
    uint32_t alive;             /* its owner's process lives (system calls) */
} shmring_topic_sub_info_t;
/* Subscriber entry i (0..max_subscribers-1): 1 and *out if in use, 0 if free
 * or left by an owner that is gone, SHMRING_EINVAL if i is out of range. */
int shmring_topic_subscriber(const shmring_t *ring, uint32_t i, shmring_topic_sub_info_t *out);

/* ---- crash recovery (recovery.c; the queue's rules: queue_recovery.c; the table: participants.c) ---- */

/* Give back what participants whose process died still hold: slots they claimed
 * and never committed become holes that consumers skip, messages they claimed
 * and never released are dropped (counted as lost) and their slots freed; their
 * table entries are freed. Makes system calls (liveness checks): call it from
 * waits that have lasted a while. Returns the number of dead participants whose
 * claims were recovered. */
int shmring_recover(shmring_t *ring);
/* How long a waiter may find what it waits for held by an unfinished claim at
 * the same position (an unfinished claim holds it) before shmring_queue_unstick runs
 * recovery: ns nanoseconds, 0 for the default, SHMRING_RECOVER_AFTER_DEFAULT_NS. */
#define SHMRING_RECOVER_AFTER_DEFAULT_NS UINT64_C(100000000)
void shmring_set_recover_after(shmring_t *ring, uint64_t ns);
/* Call when a claim for `what` (READABLE / WRITABLE) found nothing, and between
 * wait slices (JOINED: between join()'s slices). If what the caller waits for has been held by an unfinished
 * claim at the same position for the handle's recover_after (looks of every
 * thread of this handle count, across calls, polling ones too), runs
 * shmring_recover and returns 1: claim again now. Else 0, with *recheck_ns the
 * shmring_now_ns() time at which to look again (0: not stuck, nothing to time).
 * now_ns: the caller's shmring_now_ns(), or 0 to have it read here. */
int shmring_queue_unstick(shmring_t *ring, int what, uint64_t now_ns, uint64_t *recheck_ns);
/* Participants (threads) whose process is alive; makes system calls. */
uint32_t shmring_participants_alive(const shmring_t *ring);

/* What an operator looks at (shmring ls / stat): identity and table. */
typedef struct shmring_info {
    int64_t creator_pid;
    uint64_t created_unix_ns;
    uint64_t mapped_size;
    uint32_t participants;       /* registered entries, alive or not */
    uint32_t participants_alive; /* of those, whose process runs (system calls) */
} shmring_info_t;
void shmring_info(const shmring_t *ring, shmring_info_t *out);

/* ---- waiting (shmring_queue_wait: queue.c, sleeping on wait.c's queues) ---- */

/* Wait until the ring may have become readable / writable / joined, for at most
 * timeout_ns (one slice). Spins up to `spin` rounds before sleeping on a word in
 * the segment. Returns 1 if the condition looked true, 0 if the slice ended,
 * SHMRING_EINTR if a signal arrived. Spurious returns are allowed: the caller
 * retries its operation. Shut down (shmring_queue_shutdown), READABLE and
 * WRITABLE look true (the claim says SHMRING_ESHUTDOWN); JOINED first discards
 * what claims in flight committed since a shutdown with immediate, then sleeps
 * where such a commit wakes it (not_empty: stats count it a reader waiting). */
int shmring_queue_wait(shmring_participant_t *me, int what, uint64_t timeout_ns, uint32_t spin);
/* Wake every waiter of this ring in every process (used by close). */
void shmring_wake_all(shmring_t *ring);

uint64_t shmring_now_ns(void);
/* Has a CLOCK_MONOTONIC deadline (ns) passed? The clock is read at the first
 * check that needs it and kept for the checks after it: start each batch of
 * checks with a zeroed shmring_clock_t. Cheaper than shmring_now_ns() for a
 * deadline well ahead (wait.c says how far, and the limit of that). */
typedef struct {
    uint64_t coarse_ns, precise_ns; /* 0: not read yet */
} shmring_clock_t;
int shmring_deadline_passed(shmring_clock_t *clock, uint64_t deadline_ns);

/* ---- test hooks (hooks.c) ---- */

/* Points inside operations where a test can make this process stall, so that
 * it can be killed there: after a put claim, halfway through a (batch) commit,
 * after a get claim, halfway through a release, while joining. */
enum {
    SHMRING_HOOK_NONE = 0,
    SHMRING_HOOK_PUT_CLAIMED = 1,
    SHMRING_HOOK_PUT_COMMITTING = 2,
    SHMRING_HOOK_GET_CLAIMED = 3,
    SHMRING_HOOK_GET_RELEASING = 4,
    SHMRING_HOOK_JOINING = 5,       /* an entry taken, not yet ACTIVE */
    SHMRING_HOOK_CREATING = 6,      /* a segment and its lock file made, not yet published */
};
/* Test-only: stall ns nanoseconds each time the process passes `point`
 * (SHMRING_HOOK_NONE turns it off). Costs one relaxed load per operation. */
void shmring_debug_set_hook(int point, uint64_t ns);

#ifdef __cplusplus
}
#endif
#endif /* SHMRING_H */
