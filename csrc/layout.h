/*
 * layout.h - the shared-memory layout of a ring: a contract between every
 * process (and every shmring version with the same SHMRING_LAYOUT_VERSION).
 * Offsets are pinned by static_asserts below and read back by
 * tests/test_layout.py with `struct`, so a change here is a deliberate act:
 * bump SHMRING_LAYOUT_VERSION.
 *
 *   offset 0     header               written once by the creator, then read-only
 *   128          producer line        write_pos
 *   256          consumer line        read_pos
 *   384          not_empty wait queue futex word + sleeper bits (readers sleep here)
 *   640          not_full wait queue  futex word + sleeper bits (writers sleep here)
 *   896          join area            tasks_done + joined wait queue
 *   1152         stats line           counters for crash recovery (lost, recovered), discarded
 *   1280         schema               what a record is (records rings), NUL-terminated
 *   2304         participants         max_participants x 128 bytes
 *   kind_offset  the kind's own area  a topic's: its subscriber table and keys (topic.h); a queue's:
 *                                     its expiry line, then capacity x 8 bytes of message deadlines
 *   meta_offset  slot meta            capacity x 8 bytes (seq 32 + len 32) in byte rings,
 *                                     capacity x 4 bytes (seq 32) in records rings, or
 *                                     capacity x 2 bytes (seq 16) from 65536 slots on
 *   payload_off  payload              capacity x slot_size, slot i at i * slot_size
 *
 * Every area starts on a 128-byte boundary (two 64-byte lines, or one Apple
 * M-series line) so that lines written by producers, consumers and waiters are
 * never shared. Payload slots are contiguous so a run of messages is one memcpy,
 * and slot words are dense (16 or 32 per line for records) because a batch
 * touches one word per message: they, not the payload, bound batch throughput.
 */
#ifndef SHMRING_LAYOUT_H
#define SHMRING_LAYOUT_H

#include <assert.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SHMRING_MAGIC UINT64_C(0x31474e49524d4853) /* "SHMRING1", little-endian */
#define SHMRING_LAYOUT_VERSION 12u
#define SHMRING_LINE 128u
#define SHMRING_SCHEMA_MAX 1024u

/* Header flags. RECORDS: every message is exactly slot_size bytes and `schema`
 * says what a record is (a queue then has no length words). MULTICAST: a topic
 * (every topic has it: its slot words stay 8 bytes, seq 32 + length 32, in
 * records topics too); OVERWRITE: a topic whose publishers never wait (policy
 * "overwrite"), else they wait for the slowest live subscriber ("block"). A
 * queue refuses the topic's flags. */
enum { SHMRING_FLAG_RECORDS = 1u, SHMRING_FLAG_MULTICAST = 2u, SHMRING_FLAG_OVERWRITE = 4u };
#define SHMRING_FLAGS_KNOWN (SHMRING_FLAG_RECORDS | SHMRING_FLAG_MULTICAST | SHMRING_FLAG_OVERWRITE)

/* Only lock-free atomics work across processes (a lock inside libatomic is
 * process-local). */
static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
static_assert(ATOMIC_SHORT_LOCK_FREE == 2, "16-bit atomics must be lock-free");

struct shmring_header {
    _Atomic uint64_t magic;     /* stored last by the creator (release) */
    uint32_t layout_version;
    uint32_t kind;
    uint32_t flags;             /* SHMRING_FLAG_* */
    uint32_t header_size;       /* sizeof(struct shmring_segment) */
    uint64_t slot_size;
    uint64_t capacity;          /* power of two >= max(maxsize, 4) */
    uint64_t maxsize;
    uint64_t mapped_size;
    uint64_t participants_offset;
    uint32_t max_participants;
    uint32_t participant_size;
    uint64_t meta_offset;
    uint64_t payload_offset;
    int64_t creator_pid;
    uint64_t created_unix_ns;
    uint64_t lock_ino;          /* inode of the lock file (liveness.c); 0: none */
    uint64_t lock_token;        /* its name: NAME~ and this in 16 hex digits */
    uint32_t kind_args[2];      /* the kind's parameters: a topic's max_subscribers and
                                 * max_topic_len (topic.h); 0 in a queue */
};

/* Participant table bound; one sleeper bit per participant in each wait queue. */
#define SHMRING_PARTICIPANTS_MAX 1024u
#define SHMRING_SLEEPER_WORDS (SHMRING_PARTICIPANTS_MAX / 64u)
/* The lock file's bytes: byte i is locked by the owner of participant entry i;
 * byte SHMRING_LOCK_CREATING by the creator until the segment is published. */
#define SHMRING_LOCK_CREATING SHMRING_PARTICIPANTS_MAX

/* A place to sleep: the futex word is bumped by whoever makes progress and by
 * each sleeper before it sleeps (wait.c, W3), and the sleeper bits let that
 * party skip the wake system call when nobody sleeps.
 * A bit per participant (not a count) so that the bits of a process killed in
 * its sleep can be cleared exactly by whoever recovers its entry. */
struct shmring_waitq {
    _Atomic uint32_t futex;
    uint32_t reserved;
    _Atomic uint64_t sleepers[SHMRING_SLEEPER_WORDS];
};

/* The top bits of the position counters are flags, never positions (positions
 * grow by at most 2^30 a claim and stay below SHMRING_POS_LIMIT, 2^61: attach
 * refuses more, and a write_pos with bit 62 set):
 *   write_pos  bit 63, SHMRING_SHUT (queue and topic): shut down, no claim
 *              succeeds after it (a claim is a CAS on the same word)
 *   read_pos   a topic's: its subscriber table's generation, bit 63 SHMRING_SHUT
 *              set first by a topic's shutdown (topic.c, D1); a queue's:
 *              bit 62, SHMRING_DRAINING: shut down, getters take what is left
 *              and then refuse; bit 63, SHMRING_DISCARDING (with DRAINING):
 *              shut down with immediate, no get claim succeeds after it, and
 *              only discarders (queue.c, discard) claim what is left
 * A queue's shutdown flags read_pos first, then write_pos; whoever finds
 * read_pos flagged and write_pos not (a shutdown under way, or killed between
 * the two) sets SHMRING_SHUT itself (internal.h, shmring__seal); a topic's
 * shutdown flags its generation, then write_pos, sealed alike (topic.c).
 * Claims keep the flags (a CAS from the flagged word to the word plus n).
 * Layout version 7 made them so: a version 6 reader would take a flag for a
 * position. Version 11 flagged a topic's generation first: its subscribers
 * look for a shutdown there, and would never see a version 10 shutdown (of
 * write_pos alone). */
#define SHMRING_SHUT (UINT64_C(1) << 63)
#define SHMRING_DRAINING (UINT64_C(1) << 62)
#define SHMRING_DISCARDING (UINT64_C(1) << 63)
#define SHMRING_COUNTER_FLAGS (UINT64_C(3) << 62)

/* Positions of a valid segment stay below 2^61 (attach refuses a counter at or
 * above it, and a write_pos with bit 62 set: a queue's validate, a topic's):
 * a margin of a lap of 2^61 below the flags, 73 years at 10^9 messages/s. */
#define SHMRING_POS_LIMIT (UINT64_C(1) << 61)

/* The position a counter holds, without its flags. */
static inline uint64_t shmring_pos(uint64_t counter)
{
    return counter & ~SHMRING_COUNTER_FLAGS;
}

struct shmring_segment {
    struct shmring_header hdr;
    _Alignas(SHMRING_LINE) struct {
        _Atomic uint64_t write_pos;     /* next position a producer claims; SHMRING_SHUT */
    } prod;
    _Alignas(SHMRING_LINE) struct {
        _Atomic uint64_t read_pos;      /* next position a consumer claims; SHMRING_DISCARDING */
    } cons;
    _Alignas(SHMRING_LINE) struct shmring_waitq not_empty;
    _Alignas(SHMRING_LINE) struct shmring_waitq not_full;
    _Alignas(SHMRING_LINE) struct {
        _Atomic uint64_t tasks_done;    /* join(): done when tasks_done == shmring_pos(write_pos) */
        struct shmring_waitq joined;
    } join;
    _Alignas(SHMRING_LINE) struct {
        _Atomic uint64_t lost;          /* messages lost to dead participants */
        _Atomic uint64_t recoveries;    /* dead participants whose claims were recovered */
        _Atomic uint64_t detached;      /* a topic's subscribers detached for gating too long */
        _Atomic uint64_t discarded;     /* a queue's messages discarded by an immediate shutdown */
        _Atomic uint64_t expired;       /* a queue's messages dropped at dequeue, their deadline passed */
    } stats;
    _Alignas(SHMRING_LINE) char schema[SHMRING_SCHEMA_MAX];
};

/* Participant state word: status in the low 8 bits, a generation above it that
 * join increments, so that whoever inspects a dead entry can tell if it was
 * reused in the meantime. */
/* JOINING_LOCKED: joining, and already holding the entry's lock (LOCK liveness),
 * so a joiner killed before it is ACTIVE is known dead once its lock is gone.
 * Plain JOINING (a joiner without the lock, or a recoverer freeing the entry) is
 * counted alive. */
enum { SHMRING_PART_FREE = 0, SHMRING_PART_JOINING = 1, SHMRING_PART_ACTIVE = 2, SHMRING_PART_JOINING_LOCKED = 3 };
#define SHMRING_PART_STATUS(s) ((s) & 0xffu)
#define SHMRING_PART_GEN(s) ((s) >> 8)
#define SHMRING_PART_STATE(status, gen) (((uint32_t)(gen) << 8) | (status))
/* What a participant's announced claim is for. GET becomes GET_HELD once the
 * claim CAS succeeded (so recovery knows every announced message was the dead
 * consumer's, even those it had already released), and GET_COUNTED once a
 * recoverer has counted them as lost, or GET_ADOPTED once a supervisor took
 * the dead consumer's claim over (shmring_queue_adopt). GET_SUPERVISED is
 * GET_HELD of a consumer that named a supervisor (the entry's supervisor
 * word): recoverers leave it alone while that supervisor lives, for it to
 * adopt (layout version 12). */
enum {
    SHMRING_CLAIM_NONE = 0,
    SHMRING_CLAIM_PUT = 1,
    SHMRING_CLAIM_GET = 2,
    SHMRING_CLAIM_GET_HELD = 3,
    SHMRING_CLAIM_GET_COUNTED = 4,
    SHMRING_CLAIM_GET_ADOPTED = 5,
    SHMRING_CLAIM_GET_SUPERVISED = 6,
};

/* How the death of an entry's process is established (liveness.c).
 * LOCK: the owner of entry i holds a write lock on byte i of the ring's lock file
 * through an open file description of its own (Linux OFD lock); the kernel drops
 * it when the process dies, in whatever pid namespace, under emulation too.
 * PID: the fallback where such locks do not exist (macOS) or could not be taken:
 * pid + start time + namespace identity, and only evidence of death counts. */
enum { SHMRING_LIVENESS_PID = 1, SHMRING_LIVENESS_LOCK = 2 };

/* One thread of one process. Its owner is the only writer of the claim fields
 * (but for claim_role, which recoverers and an adopter move by CAS once it is dead):
 * before trying to claim positions [claim_pos, claim_pos + claim_n) it announces
 * them here, and withdraws them (claim_n = 0) once committed or released, so that
 * crash recovery can tell a slot held by a dead process from one held by a live
 * one (a claimed position is always covered by its owner's announcement).
 * liveness says how to tell whether the owner lives; pid + start_time (+ pid
 * namespace) identify its process for the PID fallback and for display. */
struct shmring_participant_entry {
    _Atomic uint32_t state;
    _Atomic int32_t pid;
    _Atomic uint64_t start_time;
    _Atomic uint64_t pid_ns;        /* Linux pid + time namespace identity; 0 elsewhere */
    _Atomic uint64_t claim_pos;
    _Atomic uint32_t claim_n;
    _Atomic uint32_t claim_role;
    _Atomic uint32_t liveness;      /* SHMRING_LIVENESS_* */
    uint32_t reserved0;
    _Atomic uint64_t supervisor;    /* GET_SUPERVISED claims: who adopts them (shmring_participant_token) */
    uint8_t reserved[SHMRING_LINE - 56];
};

/* Per-slot metadata, in its own dense array beside the contiguous payload area:
 * a sequence word, followed in byte rings by a 32-bit payload length (written
 * before the sequence word publishes it). The word of the slot that holds
 * position p says, as (lap of p) << 2 | code, with lap = p / capacity:
 *   lap | 0          free: the producer that claims p may fill it
 *   lap | 1          committed (readable)
 *   lap | 2          abandoned by a dead producer: a hole consumers skip
 *   (lap + 1) | 0    read and released: free for position p + capacity
 * truncated to the word's width and compared as a signed difference in it.
 * Every word of a run (consecutive positions up to the end of the ring) holds
 * the same value, so a batch compares and stores one repeated pattern.
 *
 * The width trades bytes per message against how far a stale reader may lag.
 * A claim decides on words it read while write_pos / read_pos still held the
 * position it then CASes, so what it reads is at most a lap old and any width
 * works; before refusing (full, empty) it checks that the counter has not
 * moved. Crash recovery CASes a word from a state it expects, for a position
 * the counters it loaded just before say may still be held (queue_recovery.c,
 * settled): a recoverer stalled 2^(width - 2) laps between the two could
 * mistake a later lap for it. That margin, capacity << (width - 2) messages,
 * is kept at 2^30 or more.
 * Records rings of SHMRING_SEQ16_MIN_CAPACITY slots and more therefore use
 * 16-bit words (half the bytes of slot words a batch moves between cores), the
 * others 32-bit words. Byte rings keep 32 bits beside their length word. */
#define SHMRING_SEQ_CODE_BITS 2u
enum { SHMRING_SEQ_FREE = 0, SHMRING_SEQ_COMMITTED = 1, SHMRING_SEQ_HOLE = 2 };
#define SHMRING_SEQ16_MIN_CAPACITY (UINT64_C(1) << 16)
#define SHMRING_LEN_OFFSET 4u

/* log2 of the bytes of slot meta per slot: 3 in byte rings and topics (seq +
 * len), else the word. */
static inline uint32_t shmring_meta_shift(uint32_t flags, uint64_t capacity)
{
    if (!(flags & SHMRING_FLAG_RECORDS) || (flags & SHMRING_FLAG_MULTICAST))
        return 3;
    return capacity >= SHMRING_SEQ16_MIN_CAPACITY ? 1 : 2;
}

/* ---- A queue's own area (queue.c: message deadlines) ----
 * One line, then a deadline per slot. `expiring` is 0 until some producer first
 * puts a message with a deadline, then 1 for good: until then no producer and
 * no consumer touches the deadlines (one relaxed load of a line nobody writes).
 * Once it is 1, every put claim clears its slots' deadlines (0: none) before a
 * put with a deadline writes them, so a deadline of an earlier lap never
 * applies to a later message. Layout version 8 added the area and
 * stats.expired. */
struct shmring_queue_area {
    _Atomic uint32_t expiring;
    uint8_t reserved[SHMRING_LINE - 4];
};
struct shmring_expiry {
    _Atomic uint64_t deadline_ns;   /* CLOCK_MONOTONIC ns, dropped at dequeue once passed; 0: none */
};
static_assert(sizeof(struct shmring_queue_area) == SHMRING_LINE, "one line");
static_assert(sizeof(struct shmring_expiry) == 8, "8 bytes a slot");

/* ---- A topic (SHMRING_KIND_TOPIC, topic.c) ----
 * The fixed part's lines mean, in a topic:
 *   prod.write_pos   the next position a publisher claims; bit 63 (SHMRING_SHUT)
 *                    once the topic is shut down: no claim after it
 *   cons.read_pos    the subscriber table's generation, bumped after every change
 *                    of it (subscribe, unsubscribe, detach, recovery), so that a
 *                    publisher knows when the slowest subscriber it cached is stale;
 *                    bit 63 (SHMRING_SHUT) set by a shutdown before write_pos's,
 *                    where subscribers look for it (no line of the publishers')
 *   not_empty        subscribers sleep here; not_full: publishers (policy block)
 *   stats.lost       holes: positions claimed and never written, by publishers that died
 *                    before committing or that gave their claim up (a timeout, Ctrl-C)
 *   join             unused
 * and its own area, at the kind offset after the participant table:
 *   subscribers      kind_args[0] (max_subscribers) x 128 bytes
 *   keys             capacity x key stride: a 32-bit length, then up to
 *                    kind_args[1] (max_topic_len) bytes of the key, per slot
 * Slot words are the byte ring's (seq 32 + length 32) in every topic. */
#define SHMRING_SUBSCRIBERS_MAX 1024u
#define SHMRING_TOPIC_LEN_MAX 1024u

/* A subscriber entry's state word, changed as a whole by CAS: bits 0-7 the
 * status, 8-19 the entry's generation (bumped at every subscribe, so that a
 * CAS on a word seen earlier fails once the entry was reused), 20-31 the owner's
 * participant index and 32-63 that participant entry's state word when it
 * subscribed. An entry whose owner's participant entry holds another state word
 * now (left, or recovered and reused) is stale: it gates nobody and may be taken. */
enum { SHMRING_SUB_FREE = 0, SHMRING_SUB_CLAIMING = 1, SHMRING_SUB_ACTIVE = 2, SHMRING_SUB_DETACHED = 3 };
#define SHMRING_SUB_STATUS(w) ((uint32_t)((w) & 0xffu))
#define SHMRING_SUB_GEN(w) ((uint32_t)(((w) >> 8) & 0xfffu))
#define SHMRING_SUB_OWNER(w) ((uint32_t)(((w) >> 20) & 0xfffu))
#define SHMRING_SUB_OWNER_STATE(w) ((uint32_t)((w) >> 32))
#define SHMRING_SUB_WORD(status, gen, owner, owner_state)                                                      \
    (((uint64_t)(owner_state) << 32) | ((uint64_t)((owner) & 0xfffu) << 20) | ((uint64_t)((gen) & 0xfffu) << 8) | \
     (uint64_t)(status))

struct shmring_subscriber_entry {
    _Atomic uint64_t state;
    _Atomic uint64_t cursor;        /* the next position it reads: it is done with those below;
                                     * publishers (block) gate on it */
    _Atomic uint64_t lagged;        /* messages it missed (lapped, or detached), for display */
    _Atomic uint64_t received;      /* messages handed to it, for display */
    uint8_t reserved[SHMRING_LINE - 32];
};

/* A key slot: the length, then the bytes (the stride rounds 4 + max_topic_len up to 8). */
static inline uint64_t shmring_key_stride(uint32_t max_topic_len)
{
    return (4u + (uint64_t)max_topic_len + 7u) & ~UINT64_C(7);
}

static_assert(sizeof(struct shmring_header) == SHMRING_LINE, "header is one line");
static_assert(offsetof(struct shmring_header, slot_size) == 24, "layout contract");
static_assert(offsetof(struct shmring_header, mapped_size) == 48, "layout contract");
static_assert(offsetof(struct shmring_header, max_participants) == 64, "layout contract");
static_assert(offsetof(struct shmring_header, creator_pid) == 88, "layout contract");
static_assert(offsetof(struct shmring_header, lock_ino) == 104, "layout contract");
static_assert(offsetof(struct shmring_header, lock_token) == 112, "layout contract");
static_assert(offsetof(struct shmring_header, kind_args) == 120, "layout contract");
static_assert(offsetof(struct shmring_segment, prod.write_pos) == 128, "producer line");
static_assert(offsetof(struct shmring_segment, cons.read_pos) == 256, "consumer line");
static_assert(offsetof(struct shmring_segment, not_empty) == 384, "reader wait queue");
static_assert(offsetof(struct shmring_segment, not_full) == 640, "writer wait queue");
static_assert(offsetof(struct shmring_segment, join) == 896, "join area");
static_assert(offsetof(struct shmring_segment, stats) == 1152, "stats line");
static_assert(offsetof(struct shmring_segment, stats.discarded) == 1176, "stats line: discarded");
static_assert(offsetof(struct shmring_segment, stats.expired) == 1184, "stats line: expired");
static_assert(offsetof(struct shmring_segment, schema) == 1280, "schema");
static_assert(sizeof(struct shmring_segment) == 2304, "fixed part of the segment");
static_assert(sizeof(struct shmring_participant_entry) == SHMRING_LINE, "one line each");
static_assert(offsetof(struct shmring_participant_entry, liveness) == 40, "layout contract");
static_assert(sizeof(struct shmring_subscriber_entry) == SHMRING_LINE, "one line each");
static_assert(SHMRING_PARTICIPANTS_MAX <= 0x1000u, "an owner index fits a subscriber's state word");

#endif /* SHMRING_LAYOUT_H */
