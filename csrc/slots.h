/*
 * slots.h - the slot arrays of a ring (included by internal.h): slot words and
 * their runs, lengths and payload. What is on the hot path is static inline
 * here, so that a kind's claims and commits inline it (a single message checks
 * and stores its word without a call); runs of more than one slot go to
 * slots.c (scalar loops, and the x86-64 vector path).
 */
#ifndef SHMRING_SLOTS_H
#define SHMRING_SLOTS_H

/* Slot words (states in layout.h). A word is 16 or 32 bits wide (r->seq_bytes);
 * these helpers hide which, so that the protocol reads the same for both. The
 * memory order is always a constant after inlining. */
static inline void *shmring__seq(const shmring_t *r, uint64_t pos)
{
    return r->meta + ((pos & r->mask) << r->meta_shift);
}

/* The word a slot holds when its position p is in state `code`
 * (SHMRING_SEQ_FREE, _COMMITTED or _HOLE): p's lap, then the code. */
static inline uint32_t shmring__state(const shmring_t *r, uint64_t p, uint32_t code)
{
    return (uint32_t)(((p >> r->cap_shift) << SHMRING_SEQ_CODE_BITS) | code) & r->seq_mask;
}

/* word - state as a signed distance in the word's width: negative if the
 * slot is "before" that state (an earlier lap, or an earlier state of it). */
static inline int32_t shmring__seq_diff(const shmring_t *r, uint32_t word, uint32_t state)
{
    uint32_t d = (word - state) & r->seq_mask;
    return d > (r->seq_mask >> 1) ? (int32_t)(d - r->seq_mask - 1) : (int32_t)d;
}

/* The slot word at w (a pointer into the meta array), in the ring's width. */
static inline __attribute__((always_inline)) uint32_t
shmring__word_load(const shmring_t *r, const void *w, memory_order order)
{
    return r->seq_bytes == 2 ? atomic_load_explicit((_Atomic uint16_t *)w, order)
                             : atomic_load_explicit((_Atomic uint32_t *)w, order);
}

static inline __attribute__((always_inline)) void
shmring__word_store(const shmring_t *r, void *w, uint32_t state, memory_order order)
{
    if (r->seq_bytes == 2)
        atomic_store_explicit((_Atomic uint16_t *)w, (uint16_t)state, order);
    else
        atomic_store_explicit((_Atomic uint32_t *)w, state, order);
}

static inline __attribute__((always_inline)) uint32_t
shmring__seq_load(const shmring_t *r, uint64_t pos, memory_order order)
{
    return shmring__word_load(r, shmring__seq(r, pos), order);
}

static inline __attribute__((always_inline)) void
shmring__seq_store(const shmring_t *r, uint64_t pos, uint32_t state, memory_order order)
{
    shmring__word_store(r, shmring__seq(r, pos), state, order);
}

/* acq_rel CAS of the slot word from `from` to `to`; 1 if it was `from`. */
static inline int shmring__seq_cas(const shmring_t *r, uint64_t pos, uint32_t from, uint32_t to)
{
    void *w = shmring__seq(r, pos);
    if (r->seq_bytes == 2) {
        uint16_t expected = (uint16_t)from;
        return atomic_compare_exchange_strong_explicit((_Atomic uint16_t *)w, &expected, (uint16_t)to,
                                                       memory_order_acq_rel, memory_order_relaxed);
    }
    return atomic_compare_exchange_strong_explicit((_Atomic uint32_t *)w, &from, to, memory_order_acq_rel,
                                                   memory_order_relaxed);
}

/* The length word of the slot holding pos: byte rings only. */
static inline uint32_t *shmring__len(const shmring_t *r, uint64_t pos)
{
    return (uint32_t *)(r->meta + ((pos & r->mask) << r->meta_shift) + SHMRING_LEN_OFFSET);
}

/* Whether runs of packed slot words take the x86-64 vector path (slots.c says
 * when and why); tests report which path they ran. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__SANITIZE_THREAD__) && \
    !defined(SHMRING_SCALAR_WORDS)
#define SHMRING_PACKED_VECTORS 1
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#undef SHMRING_PACKED_VECTORS
#endif
#endif
#endif

/* Ask for the line at p with intent to write (the kinds' producers prefetch
 * the slots a few positions ahead: queue.c, topic.c). */
static inline void shmring__prefetch_for_write(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
    /* PREFETCHW; a no-op (NOP encoding) on the few x86 CPUs without it */
    __asm__ __volatile__("prefetchw %0" ::"m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

/* The payload of the slot holding pos (slot i at i * slot_size). */
static inline unsigned char *shmring__slot_payload(const shmring_t *r, uint64_t pos)
{
    return r->payload + (pos & r->mask) * r->slot_size;
}

/* Set the length of the message in the slot holding pos (byte rings; records
 * are always slot_size long). */
static inline void shmring__slot_set_len(const shmring_t *r, uint64_t pos, uint32_t len)
{
    if (!(r->flags & SHMRING_FLAG_RECORDS))
        *shmring__len(r, pos) = len;
}

/* How many positions from pos fit before the end of the payload area. */
static inline uint64_t shmring__to_wrap(const shmring_t *r, uint64_t pos)
{
    return r->capacity - (pos & r->mask);
}

/* The first run of up to n positions from pos: it stops at the end of the payload area. */
static inline uint32_t shmring__run_at(const shmring_t *r, uint64_t pos, uint32_t n)
{
    return shmring__to_wrap(r, pos) < n ? (uint32_t)shmring__to_wrap(r, pos) : n;
}

/* Slot words are walked run by run (a run ends at the end of the ring): every
 * word of a run is expected to hold, or is given, the same value (layout.h).
 * Batches touch one word per message: these loops, not the payload memcpy,
 * bound batch throughput. */

/* How many slots from pos, up to max, are in state `code` for their position;
 * *last is the first word that was not (when fewer than max). acquire: P1
 * (free) / C1 (committed) of the kind's protocol (queue.c). Runs of any length
 * (slots.c); shmring__count_states below is what callers use. */
uint32_t shmring__count_runs(const shmring_t *r, uint64_t pos, uint32_t max, uint32_t code, uint32_t *last);

static inline uint32_t shmring__count_states(const shmring_t *r, uint64_t pos, uint32_t max, uint32_t code,
                                             uint32_t *last)
{
    if (max == 1) { /* a single message: its word alone, inlined */
        *last = shmring__seq_load(r, pos, memory_order_acquire);
        return *last == shmring__state(r, pos, code);
    }
    return shmring__count_runs(r, pos, max, code, last);
}

/* Put the slots of [pos + from, pos + to) in state `code` for their position
 * plus `ahead` (0, or capacity for the next lap), release: P4 commits, holes,
 * C3 releases. Runs of any length (slots.c); shmring__store_states below is
 * what callers use. */
void shmring__store_runs(const shmring_t *r, uint64_t pos, uint32_t from, uint32_t to, uint64_t ahead, uint32_t code);

static inline void shmring__store_states(const shmring_t *r, uint64_t pos, uint32_t from, uint32_t to,
                                         uint64_t ahead, uint32_t code)
{
    if (to - from == 1) /* a single message: its word alone, inlined */
        shmring__seq_store(r, pos + from, shmring__state(r, pos + from + ahead, code), memory_order_release);
    else
        shmring__store_runs(r, pos, from, to, ahead, code);
}

#endif /* SHMRING_SLOTS_H */
