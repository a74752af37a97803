/*
 * topic.c - the multicast topic (after the LMAX Disruptor's multi-producer
 * ring): publishers claim consecutive positions with one CAS on write_pos and
 * commit them through per-slot sequence words; each subscriber reads every
 * position with a cursor of its own, in the topic's subscriber table, and
 * copies out only the messages whose key matches one of its prefixes.
 *
 * Slot words are the queue's (layout.h): for position p, free(p) means claimed
 * and being written (or, in lap 0, never written), committed(p) readable,
 * hole(p) skipped. A publisher marks a slot free(p) before it writes it, and
 * only once the slot's previous lap (p - capacity) is committed or a hole (a
 * publisher a lap behind is still writing it otherwise). A subscriber reads a
 * committed slot seqlock-style: the word before, the key and payload, the word
 * again; a word that moved on means the slot was overwritten under it (it was
 * lapped), and it never hands out what it copied then.
 *
 * Policies. BLOCK: a publisher claims p only while p - gate < maxsize, where
 * gate is the slowest live, attached subscriber's cursor. Each publisher caches
 * the gate with the subscriber table's generation (cons.read_pos, bumped after
 * every change of the table) and scans the table again only when the cached
 * gate would stop it or the generation moved. A subscriber that joins bumps the
 * generation and then reads write_pos; a publisher reads the generation after
 * its claim's CAS: one of the two sees the other (Dekker: P1/P3 against S1/S2),
 * so either the publisher waits for the new subscriber before writing, or the
 * subscriber starts after the claim. OVERWRITE: publishers never look at
 * subscribers; a lapped subscriber jumps to maxsize - maxsize / 4 positions
 * behind the end and counts what it skipped.
 *
 * Atomic pairs (label: where, order -> partner, what it makes visible):
 *   P1  publish_claim  seq_cst CAS of write_pos: a claim; release also publishes
 *                      the announcement (P2) to recovery's acquire load (R1);
 *                      seq_cst for the Dekker pair with S1/S2
 *   P2  announce       release stores of the announcement -> recovery (R2,
 *                      recovery.c); withdrawn (release) after commit or a
 *                      give-up (P8) -> R2, R7 (topic_recovery.c)
 *   P3  publish_begin  seq_cst load of the table's generation after P1 -> G1
 *                      (topic.h): a subscriber that joined before it is seen
 *   G0  publish_claim  acquire load of the generation before scanning -> G1:
 *                      the scan sees the entries as of that generation; its
 *                      shut-down flag refuses the claim (-> D1, as D3)
 *   P4  gate scan      acquire loads of subscribers' state and cursor (topic.h)
 *                      -> S4: their reads of slots below are done; slowest_moved
 *                      looks at the cached slowest alone, acquire as P4;
 *                      room_for_a_run's loads are relaxed hints (the claim decides)
 *   P5  slot_writable  acquire load of the slot's previous lap -> P7 / R3: its
 *                      writer is done before we overwrite (topic.h)
 *   P6  publish_begin  relaxed stores of free(p) ("being written"), then a
 *                      release fence -> S6: a subscriber that read any byte we
 *                      write afterwards sees the mark in its re-check
 *   P7  publish_commit release stores of committed -> S5
 *   P8  give_up        seq_cst load of the generation before making a claim
 *                      given up holes (R3's CASes, topic_recovery.c) -> G1, as
 *                      P3; then the withdrawal (P2) -> R7 (topic_recovery.c)
 *   S1  attach_entry   G1 (topic.h), after the entry's fields (S3): seq_cst
 *   S2  attach_entry   seq_cst load of write_pos after S1 -> P1
 *   S3  attach_entry   acq_rel CAS taking the entry (-> P4, and another
 *                      subscriber's CAS); release store of ACTIVE, published to
 *                      scanners by G1
 *   S4  recv / attach  release store of the cursor after reading the slots
 *                      below it -> P4
 *   S5  recv           acquire load of the slot word before reading -> P7
 *   S6  recv           acquire fence after copying, then a relaxed re-load of
 *                      the word -> P6 (the seqlock's check)
 *   D1  shutdown       release fetch_or of SHMRING_SHUT into the generation
 *                      (cons.read_pos), first: subscribers look for it there, a
 *                      line publishers only read -> D3
 *   D2  seal           release fetch_or of SHMRING_SHUT into write_pos
 *                      (shmring__seal, internal.h), after D1: by the shutdown, or
 *                      by a subscriber that finds the generation flagged first
 *                      (a shutdown under way, or killed between the two). P1 is
 *                      a CAS on the same word: each claim is before it or
 *                      fails, so the end it leaves is final -> D3
 *   D3  nothing_at     acquire load of the generation when nothing is at the
 *                      cursor -> D1; flagged, the end is the sealed write_pos
 *                      (D1 happens before the seal's load): at it, drained
 *   T1  reach_end      acquire load of the slot word at the end last read,
 *                      before reading write_pos again (block) -> P7 / R3: a
 *                      word that says written follows its claim (P1), so the
 *                      end read then is past it. A caught-up subscriber waits
 *                      on the slot's line, never on write_pos, which every
 *                      claim takes back
 *   Copies: the key and payload bytes and their lengths are read while a
 *   publisher may overwrite them (a lapped subscriber): relaxed atomics for
 *   the lengths and memcpy for the bytes, the seqlock's usual race, decided by
 *   S6; under ThreadSanitizer, which models no fence, release / acquire
 *   atomics for every byte and length make the P6 / S6 pairs instead.
 *   F1/F2, N2/W2 (wait.c): no lost wake-up; ready_at's loads are relaxed hints
 *   ordered by F1.
 *   Recovery's side (R1-R3, R6, R7: a claim given up), the slow timeout and
 *   stats' liveness:
 *   topic_recovery.c.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "topic.h"

#if defined(__SANITIZE_THREAD__)
#define SHMRING_TOPIC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHMRING_TOPIC_TSAN 1
#endif
#endif

/* Copies into and out of slots that a lapped subscriber may read while a
 * publisher writes them, decided by the seqlock's second look (S6). Elsewhere
 * memcpy and relaxed lengths, ordered by the fences P6 / S6. ThreadSanitizer
 * models no fence (and GCC refuses one it would inline): there every byte and
 * length is a release store and an acquire load instead, the same pairs made
 * per access, which TSan checks. */
#ifdef SHMRING_TOPIC_TSAN
#define COPY_STORE memory_order_release
#define COPY_LOAD memory_order_acquire
#define SEQLOCK_FENCE(order) ((void)0)
#else
#define COPY_STORE memory_order_relaxed
#define COPY_LOAD memory_order_relaxed
#define SEQLOCK_FENCE(order) atomic_thread_fence(order)
#endif

/* Keys are short: up to this long they are copied a byte at a time, inline (a
 * call to memcpy cost more than the copy: a publish and a receive each copy one). */
#define SHMRING_SHORT_COPY 16u

static inline void short_copy(unsigned char *dst, const unsigned char *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dst[i] = src[i];
        __asm__ __volatile__("" ::: "memory"); /* keeps the compiler from making this loop a memcpy call */
    }
}

static void copy_in(unsigned char *slot, const void *src, size_t n)
{
#ifdef SHMRING_TOPIC_TSAN
    for (size_t i = 0; i < n; i++)
        atomic_store_explicit((_Atomic unsigned char *)&slot[i], ((const unsigned char *)src)[i], COPY_STORE);
#else
    if (n <= SHMRING_SHORT_COPY)
        short_copy(slot, src, n);
    else
        memcpy(slot, src, n);
#endif
}

/* A payload up to this long is copied out 64 bytes at a time in eight 8-byte
 * words (unrolled), not by memcpy: glibc's memcpy of a small block (its AVX-512
 * variant on this project's VM) took about half a subscriber's time (perf,
 * 1 -> 1 across processes) when its first load met a slot line the publisher's
 * core had written. Measured, 64-byte payloads in 1 KiB slots, a full ring,
 * per receive: the best run of 4096 from about 75 to 70 ns and the mean from
 * about 150 (120-185) to 90-100 ns. A loop of single words, or 16-byte vector
 * loads, measured no better than memcpy; the rest (a key, a tail) is memcpy's. */
#define SHMRING_WORD_COPY_MAX 256u

static void copy_out(void *dst, const unsigned char *slot, size_t n)
{
#ifdef SHMRING_TOPIC_TSAN
    for (size_t i = 0; i < n; i++)
        ((unsigned char *)dst)[i] = atomic_load_explicit((_Atomic unsigned char *)&slot[i], COPY_LOAD);
#else
    size_t i = 0;
    if (n <= SHMRING_WORD_COPY_MAX)
        for (; n - i >= 64; i += 64) {
            for (int k = 0; k < 8; k++) {
                uint64_t w;
                __builtin_memcpy(&w, slot + i + 8 * k, 8);
                __builtin_memcpy((unsigned char *)dst + i + 8 * k, &w, 8);
            }
            __asm__ __volatile__("" ::: "memory"); /* keeps the compiler from making this loop a memcpy call */
        }
    if (n - i <= SHMRING_SHORT_COPY)
        short_copy((unsigned char *)dst + i, slot + i, n - i);
    else
        memcpy((unsigned char *)dst + i, slot + i, n - i);
#endif
}

/* relaxed (TSan: release / acquire): lengths are read under the seqlock check as the bytes are */
static void store_u32(void *p, uint32_t v)
{
    atomic_store_explicit((_Atomic uint32_t *)p, v, COPY_STORE);
}

static uint32_t load_u32(const void *p)
{
    return atomic_load_explicit((_Atomic uint32_t *)p, COPY_LOAD);
}

static int is_topic(const shmring_t *r)
{
    return r->kind == SHMRING_KIND_TOPIC && r->kind_area != NULL && r->meta != NULL;
}

static int blocking(const shmring_t *r)
{
    return !(r->flags & SHMRING_FLAG_OVERWRITE);
}

/* ---- publishers ---- */

static void announce(struct shmring_participant_entry *e, uint64_t pos, uint32_t n)
{
    /* P2 (as queue.c's): recovery sees any field only with what we did before */
    atomic_store_explicit(&e->claim_role, SHMRING_CLAIM_PUT, memory_order_release);
    atomic_store_explicit(&e->claim_pos, pos, memory_order_release);
    atomic_store_explicit(&e->claim_n, n, memory_order_release);
}

static void withdraw(struct shmring_participant_entry *e)
{
    /* P2's withdrawal: a recoverer that reads 0 (acquire) also sees our commit */
    atomic_store_explicit(&e->claim_n, 0, memory_order_release);
}

/* The publisher's cached gate, scanned again if the table changed since
 * (generation gen, loaded before: the scan sees at least that table). */
static uint64_t cached_gate(shmring_participant_t *me, uint64_t gen)
{
    if (me->cached_gen != gen + 1) {
        me->cached_gate = shmring__topic_gate(me->ring, &me->cached_who);
        me->cached_gen = gen + 1;
    }
    return me->cached_gate;
}

/* Has the slowest subscriber we cached moved (or left, or lost its owner) since
 * we scanned? If not, a scan would find the same gate: skip it. acquire: as P4. */
static int slowest_moved(const shmring_participant_t *me)
{
    const shmring_t *r = me->ring;
    if (me->cached_gate == UINT64_MAX || me->cached_who >= r->kind_args[0])
        return 1;
    const struct shmring_subscriber_entry *e = &shmring__subs(r)[me->cached_who];
    uint64_t w = atomic_load_explicit(&e->state, memory_order_acquire);
    return SHMRING_SUB_STATUS(w) != SHMRING_SUB_ACTIVE || !shmring__sub_owned(r, w) ||
           atomic_load_explicit(&e->cursor, memory_order_acquire) != me->cached_gate;
}

/* The claim, begin, fill and commit of a publish, inlined into the single
 * publish (shmring_topic_publish: a constant n of 1 folds their loops away) and
 * wrapped by the public calls below each. */
static inline __attribute__((always_inline)) int claim(shmring_participant_t *me, uint32_t max_n, shmring_span_t *span)
{
    shmring_t *r = me->ring;
    struct shmring_segment *seg = r->seg;
    if (!is_topic(r))
        return SHMRING_EINVAL;
    if (max_n == 0)
        return 0;
    if (max_n > r->maxsize)
        max_n = (uint32_t)r->maxsize;
    /* relaxed: a first guess; the CAS (P1) decides */
    uint64_t pos = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed);
    for (;;) {
        /* G0 (and D3: a shutdown begun, D1, refuses, and is sealed here if it
         * stopped before D2) */
        uint64_t gen = atomic_load_explicit(&seg->cons.read_pos, memory_order_acquire);
        if ((pos | gen) & SHMRING_SHUT) {
            (void)shmring__seal(seg);
            withdraw(me->entry);
            return SHMRING_ESHUTDOWN;
        }
        uint32_t n = max_n;
        if (blocking(r)) {
            uint64_t gate = cached_gate(me, gen);
            if (!shmring__gate_allows(r, gate, pos + n) && slowest_moved(me)) {
                me->cached_gen = 0; /* look again: the slowest has moved on, or left */
                gate = cached_gate(me, gen);
            }
            if (gate != UINT64_MAX) {
                int64_t room = (int64_t)(gate + r->maxsize - pos);
                if (room <= 0) {
                    withdraw(me->entry);
                    return 0;
                }
                if ((uint64_t)room < n)
                    n = (uint32_t)room;
            }
        }
        announce(me->entry, pos, n);
        /* P1. On failure pos is reloaded (relaxed: a guess again). */
        if (atomic_compare_exchange_weak_explicit(&seg->prod.write_pos, &pos, pos + n, memory_order_seq_cst,
                                                  memory_order_relaxed)) {
            span->pos = pos;
            span->n = n;
            shmring__hook(SHMRING_HOOK_PUT_CLAIMED);
            return (int)n;
        }
    }
}

static inline __attribute__((always_inline)) int begin(shmring_participant_t *me, const shmring_span_t *span)
{
    shmring_t *r = me->ring;
    if (blocking(r)) {
        /* P3: pairs with G1 (S1), the Dekker pair of our claim's P1 */
        uint64_t gen = atomic_load_explicit(&r->seg->cons.read_pos, memory_order_seq_cst);
        /* cached_gate rescans first if the generation moved: a subscriber that
         * joined since our claim's gate check is in that scan, and we refuse
         * (the caller waits). Only a gate unchanged since the last scan is
         * looked at again, and only if its subscriber moved on. */
        if (!shmring__gate_allows(r, cached_gate(me, gen), span->pos + span->n)) {
            if (slowest_moved(me))
                me->cached_gen = 0;
            if (!shmring__gate_allows(r, cached_gate(me, gen), span->pos + span->n))
                return 0;
        }
    }
    for (uint32_t k = 0; k < span->n; k++) {
        uint64_t p = span->pos + k;
        if (!shmring__slot_writable(r, p)) /* P5 */
            return 0;
        /* P6: the mark, ordered before our writes by the fence below */
        shmring__seq_store(r, p, shmring__state(r, p, SHMRING_SEQ_FREE), memory_order_relaxed);
    }
    SEQLOCK_FENCE(memory_order_release); /* P6 */
    return 1;
}

static inline __attribute__((always_inline)) void fill(const shmring_t *r, uint64_t pos, const void *key, uint32_t key_len, const void *data,
                 uint32_t len)
{
    unsigned char *k = shmring__key(r, pos);
    store_u32(k, key_len);
    if (key_len)
        copy_in(k + 4, key, key_len);
    copy_in(shmring__slot_payload(r, pos), data, len);
    store_u32(shmring__len(r, pos), len);
}

void shmring_topic_fill_records(const shmring_t *r, const shmring_span_t *span, const void *buf, const void *key,
                                uint32_t key_len)
{
    for (uint32_t k = 0; k < span->n; k++)
        fill(r, span->pos + k, key, key_len, (const unsigned char *)buf + (uint64_t)k * r->slot_size,
                           (uint32_t)r->slot_size);
}

/* As a queue's producer (queue.c, prefetch_next_slots): the lines of the slot
 * a few positions ahead (word, key, payload), taken from the subscribers'
 * caches while we do the rest; not while the slowest subscriber may still be
 * reading there (half the capacity behind us or more). */
static void prefetch_ahead(const shmring_participant_t *me, uint64_t next)
{
    const shmring_t *r = me->ring;
    uint64_t ahead = next + 4;
    if (!blocking(r) || me->cached_gate == UINT64_MAX || ahead - me->cached_gate < r->maxsize / 2) {
        shmring__prefetch_for_write(shmring__slot_payload(r, ahead));
        shmring__prefetch_for_write(shmring__seq(r, ahead));
        shmring__prefetch_for_write(shmring__key(r, ahead));
    }
}

/* Positions [kept, n) of a claim given up (a timeout, Ctrl-C while begin
 * waited): each becomes a hole by recovery's rule (shmring__topic_make_hole):
 * a slot we marked free(p) at once; one that still holds its previous lap once
 * that lap is committed or a hole and, under block, the gate lets p be
 * written. A slot that cannot be one yet (a live publisher a lap behind still
 * writes it, or a subscriber has still to read that lap) is left as it is:
 * once we withdraw (P2), no announcement covers it, and whoever is stuck
 * behind it makes it a hole when it can (topic_recovery.c, settle_orphan),
 * and first any earlier laps of its slot given up so before it (settle_chain).
 * Storing hole(p) over a slot a lap-behind publisher then commits lost
 * position p for good; over a lap a subscriber had still to read, lost that. */
static void give_up(shmring_participant_t *me, const shmring_span_t *span, uint32_t kept)
{
    shmring_t *r = me->ring;
    /* P8: seq_cst, as P3 (after our claim's P1, the Dekker pair with S1 / S2):
     * a subscriber that joined before our claim is in make_hole's gate scan,
     * and, through our withdrawal, in a settler's (R7) */
    if (blocking(r))
        (void)atomic_load_explicit(&r->seg->cons.read_pos, memory_order_seq_cst);
    uint64_t made = 0;
    for (uint32_t k = kept; k < span->n; k++)
        made += (uint64_t)shmring__topic_make_hole(r, span->pos + k);
    if (made)
        /* relaxed: a statistic */
        atomic_fetch_add_explicit(&r->seg->stats.lost, made, memory_order_relaxed);
}

static inline __attribute__((always_inline)) void commit(shmring_participant_t *me, const shmring_span_t *span, uint32_t keep)
{
    shmring_t *r = me->ring;
    uint32_t n = span->n, kept = keep < n ? keep : n, half = kept / 2;
    /* P7: pairs with S5 */
    if (half > 0)
        shmring__store_states(r, span->pos, 0, half, 0, SHMRING_SEQ_COMMITTED);
    shmring__hook(SHMRING_HOOK_PUT_COMMITTING);
    if (half < kept)
        shmring__store_states(r, span->pos, half, kept, 0, SHMRING_SEQ_COMMITTED);
    if (kept < n)
        give_up(me, span, kept);
    withdraw(me->entry);
    prefetch_ahead(me, span->pos + span->n);
    shmring__wake(r, &r->seg->not_empty);
}

int shmring_topic_publish(shmring_participant_t *me, const void *key, uint32_t key_len, const void *data, uint32_t len,
                          shmring_span_t *span)
{
    const shmring_t *r = me->ring;
    if (!is_topic(r))
        return SHMRING_EINVAL;
    if (key_len > r->kind_args[1] || len > r->slot_size)
        return SHMRING_ETOOBIG;
    if ((r->flags & SHMRING_FLAG_RECORDS) && len != r->slot_size)
        return SHMRING_ERECORD; /* a records topic's message is one record, exactly */
    int n = claim(me, 1, span);
    if (n <= 0)
        return n;
    if (!begin(me, span))
        return SHMRING_TOPIC_PENDING;
    fill(r, span->pos, key, key_len, data, len);
    commit(me, span, 1);
    return 1;
}

int shmring_topic_publish_claim(shmring_participant_t *me, uint32_t max_n, shmring_span_t *span)
{
    return claim(me, max_n, span);
}

int shmring_topic_publish_begin(shmring_participant_t *me, const shmring_span_t *span)
{
    return begin(me, span);
}

void shmring_topic_fill(const shmring_t *r, uint64_t pos, const void *key, uint32_t key_len, const void *data,
                        uint32_t len)
{
    fill(r, pos, key, key_len, data, len);
}

void shmring_topic_publish_commit(shmring_participant_t *me, const shmring_span_t *span, uint32_t keep)
{
    commit(me, span, keep);
}

void shmring_topic_shutdown(shmring_t *r)
{
    if (r->readonly || !is_topic(r))
        return;
    /* D1, then D2: subscribers learn it from the generation, publishers from write_pos */
    atomic_fetch_or_explicit(&r->seg->cons.read_pos, SHMRING_SHUT, memory_order_release);
    (void)shmring__seal(r->seg);
    shmring_wake_all(r);
}

/* ---- subscribers ---- */

/* The oldest position the topic retains when `end` were claimed. */
static uint64_t oldest(const shmring_t *r, uint64_t end)
{
    return end > r->maxsize ? end - r->maxsize : 0;
}

static void set_cursor(shmring_topic_sub_t *s, uint64_t c)
{
    s->cursor = s->published = c;
    /* S4: pairs with P4, we are done with every position below c */
    atomic_store_explicit(&s->entry->cursor, c, memory_order_release);
    /* relaxed: for display */
    atomic_store_explicit(&s->entry->received, s->received, memory_order_relaxed);
}

/* Publish the cursor, and wake the publishers it may let on (block). */
static void let_publishers_on(shmring_topic_sub_t *s)
{
    set_cursor(s, s->cursor);
    if (blocking(s->ring))
        shmring__wake(s->ring, &s->ring->seg->not_full);
}

static void count_lag(shmring_topic_sub_t *s, uint64_t n)
{
    s->lagged += n;
    s->unreported += n;
    /* relaxed: for display */
    atomic_store_explicit(&s->entry->lagged, s->lagged, memory_order_relaxed);
}

/* Take a subscriber entry for s (FREE, or one whose owner is gone) and make it
 * gate from where `start` says; the gap, if the start was lost, counts as lag.
 * want: the position for SHMRING_START_AT. */
static int attach_entry(shmring_topic_sub_t *s, int start, uint64_t want)
{
    shmring_t *r = s->ring;
    struct shmring_subscriber_entry *subs = shmring__subs(r);
    /* relaxed: a provisional cursor, raised below (it only grows) */
    uint64_t end0 = shmring_pos(atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed));
    uint64_t c0 = start == SHMRING_START_LATEST ? end0 : start == SHMRING_START_OLDEST ? oldest(r, end0)
                                                                                       : (want < end0 ? want : end0);
    /* A full table may hold entries of dead owners that nothing recovered yet
     * (under overwrite, or block with no publisher held): recover once, look
     * again, whatever recovery returned (it counts the dead whose claims it
     * settled; one whose claim is still pending had its entries freed all the
     * same). */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            (void)shmring_recover(r);
        for (uint32_t i = 0; i < r->kind_args[0]; i++) {
            struct shmring_subscriber_entry *e = &subs[i];
            /* acquire: whose the entry was (pairs with S3 / unsubscribe's release) */
            uint64_t w = atomic_load_explicit(&e->state, memory_order_acquire);
            if (SHMRING_SUB_STATUS(w) != SHMRING_SUB_FREE && shmring__sub_owned(r, w))
                continue;
            uint32_t gen = SHMRING_SUB_GEN(w) + 1;
            uint64_t claiming = SHMRING_SUB_WORD(SHMRING_SUB_CLAIMING, gen, s->owner, s->owner_state);
            /* S3 */
            if (!atomic_compare_exchange_strong_explicit(&e->state, &w, claiming, memory_order_acq_rel,
                                                         memory_order_relaxed))
                continue;
            s->entry = e;
            s->index = i;
            s->word = SHMRING_SUB_WORD(SHMRING_SUB_ACTIVE, gen, s->owner, s->owner_state);
            /* relaxed: published by the release store of ACTIVE below */
            atomic_store_explicit(&e->cursor, c0, memory_order_relaxed);
            atomic_store_explicit(&e->lagged, s->lagged, memory_order_relaxed);
            atomic_store_explicit(&e->received, s->received, memory_order_relaxed);
            atomic_store_explicit(&e->state, s->word, memory_order_release); /* S3 */
            shmring__subs_changed(r);                                       /* S1 */
            /* S2: pairs with P1 */
            uint64_t end =
                shmring_pos(atomic_load_explicit(&r->seg->prod.write_pos, memory_order_seq_cst));
            uint64_t c = start == SHMRING_START_LATEST ? end : oldest(r, end);
            if (start == SHMRING_START_AT && want > c)
                c = want;
            if (start == SHMRING_START_AT && want < c)
                count_lag(s, c - want); /* no longer retained */
            set_cursor(s, c);
            return SHMRING_OK;
        }
    }
    return SHMRING_EFULLSUBS;
}

int shmring_topic_subscribe(shmring_participant_t *owner, int start, uint64_t position, shmring_topic_sub_t **out)
{
    shmring_t *r = owner->ring;
    *out = NULL;
    if (!is_topic(r) || start < SHMRING_START_LATEST || start > SHMRING_START_AT)
        return SHMRING_EINVAL;
    if (start == SHMRING_START_AT) {
        /* relaxed: the end now, to refuse a position beyond it */
        uint64_t end = shmring_pos(atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed));
        if (position > end)
            return shmring__fail(SHMRING_EINVAL, "start position %llu is out of range: 0 to %llu, the stream's end",
                                 (unsigned long long)position, (unsigned long long)end);
    }
    shmring_topic_sub_t *s = calloc(1, sizeof *s);
    if (s == NULL || (s->key = malloc(r->kind_args[1] + 1)) == NULL) {
        free(s);
        return SHMRING_ENOMEM;
    }
    s->ring = r;
    s->everything = 1; /* until a prefix is added */
    s->publish_every = r->maxsize / 8 < 64 ? (r->maxsize / 8 ? r->maxsize / 8 : 1) : 64;
    s->owner = owner->index;
    s->owner_state = owner->state;
    s->process = shmring__process();
    int rc = attach_entry(s, start, position);
    if (rc != SHMRING_OK) {
        shmring_topic_sub_free(s);
        return rc;
    }
    *out = s;
    return SHMRING_OK;
}

void shmring_topic_sub_free(shmring_topic_sub_t *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < s->n_prefixes; i++)
        free(s->prefixes[i].bytes);
    free(s->prefixes);
    free(s->key);
    free(s);
}

/* Is our entry still ours: attached (1), detached by a publisher (0), or
 * neither (-1: taken from us, as an owner that is gone)? */
static int entry_ours(const shmring_topic_sub_t *s, uint64_t *w)
{
    /* acquire: a detach (topic_recovery.c) or recovery that freed it */
    *w = atomic_load_explicit(&s->entry->state, memory_order_acquire);
    if (*w == s->word)
        return 1;
    return (*w & ~UINT64_C(0xff)) == (s->word & ~UINT64_C(0xff)) && SHMRING_SUB_STATUS(*w) == SHMRING_SUB_DETACHED
               ? 0
               : -1;
}

void shmring_topic_unsubscribe(shmring_topic_sub_t *s)
{
    if (s == NULL)
        return;
    shmring_t *r = s->ring;
    uint64_t w;
    if (s->process == shmring__process() && s->entry != NULL && entry_ours(s, &w) >= 0) {
        uint64_t free_word = SHMRING_SUB_WORD(SHMRING_SUB_FREE, SHMRING_SUB_GEN(w), 0, 0);
        /* release: a later taker (acquire, S3) finds us done with it */
        if (atomic_compare_exchange_strong_explicit(&s->entry->state, &w, free_word, memory_order_release,
                                                    memory_order_relaxed)) {
            shmring__subs_changed(r);
            shmring__wake(r, &r->seg->not_full); /* publishers we gated */
        }
    }
    shmring_topic_sub_free(s);
}

int shmring_topic_filter(shmring_topic_sub_t *s, const void *prefix, uint32_t len, int add)
{
    uint32_t i = 0;
    if (len > s->ring->kind_args[1])
        return SHMRING_EINVAL;
    while (i < s->n_prefixes && !(s->prefixes[i].len == len && memcmp(s->prefixes[i].bytes, prefix, len) == 0))
        i++;
    if (!add) {
        if (i < s->n_prefixes) {
            free(s->prefixes[i].bytes);
            s->prefixes[i] = s->prefixes[--s->n_prefixes];
        }
        return SHMRING_OK;
    }
    s->everything = 0; /* removing every prefix later leaves none: nothing matches */
    if (i < s->n_prefixes)
        return SHMRING_OK;
    if (s->n_prefixes == s->cap_prefixes) {
        uint32_t cap = s->cap_prefixes ? 2 * s->cap_prefixes : 4;
        struct shmring_topic_prefix *more = realloc(s->prefixes, cap * sizeof *more);
        if (more == NULL)
            return SHMRING_ENOMEM;
        s->prefixes = more;
        s->cap_prefixes = cap;
    }
    unsigned char *bytes = malloc(len + 1);
    if (bytes == NULL)
        return SHMRING_ENOMEM;
    memcpy(bytes, prefix, len);
    s->prefixes[s->n_prefixes].len = len;
    s->prefixes[s->n_prefixes++].bytes = bytes;
    return SHMRING_OK;
}

/* ZeroMQ's rule: some prefix is a byte prefix of the key; and, unlike ZeroMQ,
 * a subscriber that never had a prefix receives everything (one whose prefixes
 * were all unsubscribed receives nothing, as in ZeroMQ). */
static int matches(const shmring_topic_sub_t *s, const unsigned char *key, uint32_t len)
{
    if (s->everything)
        return 1;
    for (uint32_t i = 0; i < s->n_prefixes; i++)
        if (s->prefixes[i].len <= len && memcmp(s->prefixes[i].bytes, key, s->prefixes[i].len) == 0)
            return 1;
    return 0;
}

/* Lapped at c (the slot holds a later lap): continue a safety margin behind
 * the publishers and count what we skip. */
static uint64_t jump(shmring_topic_sub_t *s, uint64_t c)
{
    shmring_t *r = s->ring;
    /* relaxed: where to go; the slot words decide what we may read there */
    uint64_t end = shmring_pos(atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed));
    uint64_t to = oldest(r, end) + r->maxsize / 4;
    if (to > end)
        to = end; /* only in a corrupt segment (end <= maxsize, a word of a later lap) */
    if (to <= c)
        to = c + 1;
    s->end = end;
    count_lag(s, to - c);
    return to;
}

/* At the start of a call: a subscriber detached by a publisher (BLOCK) attaches
 * again at the oldest position retained, or further on, counting the gap; one
 * whose entry is gone takes another. */
static int reattach(shmring_topic_sub_t *s)
{
    uint64_t w;
    int ours = entry_ours(s, &w);
    if (ours == 1)
        return SHMRING_OK;
    if (ours == 0) {
        uint64_t word = SHMRING_SUB_WORD(SHMRING_SUB_FREE, SHMRING_SUB_GEN(w), 0, 0);
        /* release: as unsubscribe's; then we take an entry afresh */
        if (!atomic_compare_exchange_strong_explicit(&s->entry->state, &w, word, memory_order_release,
                                                     memory_order_relaxed))
            return SHMRING_OK; /* changed meanwhile: looked at again next call */
    }
    return attach_entry(s, SHMRING_START_AT, s->cursor);
}

/* Has position p's slot moved past free(p): committed, a hole, or a later lap
 * (lapped)? `order`: the caller's (T1 acquire; the waits' relaxed hints). */
static int slot_written(const shmring_t *r, uint64_t p, memory_order order)
{
    return shmring__seq_diff(r, shmring__seq_load(r, p, order), shmring__state(r, p, SHMRING_SEQ_FREE)) > 0;
}

/* Has a shutdown begun (D1)? relaxed: a hint for waits; next() decides (D3). */
static int shut_begun(const shmring_t *r)
{
    return (atomic_load_explicit(&r->seg->cons.read_pos, memory_order_relaxed) & SHMRING_SHUT) != 0;
}

/* write_pos says shut down and the generation does not: only a peer's
 * scribble (every shutdown flags the generation first). Flag it (D1's store,
 * release), so that subscribers waiting at the end drain rather than wait for
 * ever: 1. */
static int shut_generation(const shmring_t *r)
{
    atomic_fetch_or_explicit(&r->seg->cons.read_pos, SHMRING_SHUT, memory_order_release);
    return 1;
}

/* The cursor c is at the end last read: read it again. Under block only once
 * slot c says written (T1): a caught-up subscriber then never reads write_pos,
 * the publishers' line, while it waits (reading it at each look took half the
 * publishers' rate, bench/RESULTS.md), only once a run. Under overwrite at
 * once: a lapped slot's word may say anything, the end decides (step).
 * relaxed: the slot words decide what we read. */
static void reach_end(shmring_topic_sub_t *s, uint64_t c)
{
    shmring_t *r = s->ring;
    if (blocking(r) && !slot_written(r, c, memory_order_acquire)) /* T1 */
        return;
    s->end = shmring_pos(atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed));
}

/* Nothing at the cursor: 0, or, shut down and drained, SHMRING_ESHUTDOWN. */
static int nothing_at(shmring_topic_sub_t *s)
{
    shmring_t *r = s->ring;
    /* D3 */
    if (!(atomic_load_explicit(&r->seg->cons.read_pos, memory_order_acquire) & SHMRING_SHUT))
        return 0;
    uint64_t end = shmring__seal(r->seg);
    /* a cursor past the end (a peer lowered write_pos) is refused, as ready_at
     * says ready there once shut down */
    return end == s->cursor ? SHMRING_ESHUTDOWN : end < s->cursor ? SHMRING_ECORRUPT : 0;
}

/* One position at the cursor: 1 a message for us (copied), 0 a position
 * passed (hole, not ours, lapped), -1 none yet, or SHMRING_ECORRUPT. */
static int step(shmring_topic_sub_t *s, void *key, uint32_t *key_len, void *data, uint32_t *len)
{
    shmring_t *r = s->ring;
    uint64_t c = s->cursor;
    if (!blocking(r) && s->end - c > r->capacity) {
        /* overwrite: the end we read is more than a lap past us, so slot c is
         * claimed for a later lap: lapped, whatever the word says (its 30-bit
         * lap field wraps after 2^30 laps and could pass for an earlier lap, or
         * for ours). Not under block: the gate keeps claims within maxsize of
         * us, and a claim past it (the Dekker race) waits in publish_begin. */
        s->cursor = jump(s, c);
        return 0;
    }
    /* S5: pairs with P7 */
    uint32_t w = shmring__seq_load(r, c, memory_order_acquire);
    int32_t d = shmring__seq_diff(r, w, shmring__state(r, c, SHMRING_SEQ_FREE));
    if (d <= 0)
        return -1; /* being written, or still last lap's */
    if (d == SHMRING_SEQ_HOLE) {
        s->cursor = c + 1;
        return 0;
    }
    if (d != SHMRING_SEQ_COMMITTED) {
        s->cursor = jump(s, c);
        return 0;
    }
    const unsigned char *k = shmring__key(r, c);
    uint32_t klen = load_u32(k), plen = load_u32(shmring__len(r, c));
    /* a records topic's message is exactly one record: another length is a
     * peer's scribble, refused as a bad length is (the queue's SegmentError) */
    int bad = klen > r->kind_args[1] || plen > r->slot_size ||
              ((r->flags & SHMRING_FLAG_RECORDS) && plen != r->slot_size),
        ours = 0;
    if (!bad) {
#ifdef SHMRING_TOPIC_TSAN
        copy_out(s->key, k + 4, klen); /* TSan: every byte through an atomic */
        const unsigned char *in = s->key;
#else
        const unsigned char *in = k + 4; /* matched in place: the second look decides (S6) */
#endif
        ours = matches(s, in, klen);
        if (ours) {
            copy_out(key, k + 4, klen);
            copy_out(data, shmring__slot_payload(r, c), plen);
        }
    }
    SEQLOCK_FENCE(memory_order_acquire); /* S6: pairs with P6 */
    /* relaxed: ordered after the copies by S6 */
    if (shmring__seq_load(r, c, memory_order_relaxed) != w) {
        s->cursor = jump(s, c); /* overwritten while we read: never hand it out */
        return 0;
    }
    s->cursor = c + 1;
    if (bad)
        return SHMRING_ECORRUPT;
    if (!ours)
        return 0;
    *key_len = klen;
    *len = plen;
    return 1;
}

/* Positions passed without a message before the cursor is published again. */
#define SHMRING_PUBLISH_CURSOR_EVERY 256u

/* The next message, or none yet / shut down (see shmring_topic_recv). */
static int next(shmring_topic_sub_t *s, void *key, uint32_t *key_len, void *data, uint32_t *len, uint64_t *pos)
{
    shmring_t *r = s->ring;
    if (s->corrupt) { /* met by the last batch after what it returned: in its turn */
        s->corrupt = 0;
        *pos = s->corrupt_pos;
        return SHMRING_ECORRUPT;
    }
    if (blocking(r)) {
        int rc = reattach(s);
        if (rc != SHMRING_OK)
            return rc;
    }
    for (uint32_t passed = 0;; passed++) {
        uint64_t c = s->cursor;
        /* Nothing at or past the end is published: never step there (a slot
         * word a peer scribbled on must not send us on ahead of the
         * publishers). The end is cached, and read again only when the cursor
         * reaches it (reach_end). */
        int got = -1;
        if ((int64_t)(c - s->end) >= 0)
            reach_end(s, c);
        if ((int64_t)(c - s->end) < 0)
            got = step(s, key, key_len, data, len);
        if (got == 1 || got == SHMRING_ECORRUPT) {
            *pos = c;
            s->received += got == 1;
            /* A subscriber that keeps receiving publishes its cursor (and wakes
             * publishers) every publish_every positions, not every message: the
             * publishers' spin reads that line, and each store would take it
             * back from them (the queue's consumer keeps producers off read_pos
             * for the same reason). Once it has nothing more, it publishes at
             * once (below), so a publisher it holds is never left waiting. */
            if (got != 1 || s->cursor - s->published >= s->publish_every)
                let_publishers_on(s);
            return got;
        }
        if (got < 0) {
            if (s->cursor != s->published)
                let_publishers_on(s);
            return nothing_at(s);
        }
        if (passed % SHMRING_PUBLISH_CURSOR_EVERY == SHMRING_PUBLISH_CURSOR_EVERY - 1)
            set_cursor(s, s->cursor); /* a long run of others' messages: let publishers on */
    }
}

/* How long an end read by an earlier call is trusted for step()'s lap check. */
#define END_TRUSTED_NS UINT64_C(1000000)

/* At the start of a call, under overwrite: the end for step()'s lap check,
 * read again if the cursor is short of the one cached (at it, next() reads it
 * anyway) and the end was last read again more than END_TRUSTED_NS ago. An
 * end cached by an earlier call may be any number of laps old (a subscriber
 * that stopped part-way through a backlog), and the word's 30-bit lap field,
 * which the check stands in for, aliases after 2^29 laps: publishers cannot
 * run that far in a millisecond and a tick (2^30 positions or more), nor
 * within one call. Reading write_pos (the publishers' line) at every call
 * cost a line transfer per message of a backlog taken one message a call (the
 * binding's recv_many); the clock costs a few ns and nothing shared. relaxed:
 * as next()'s; the clock is process-local, and the handle's own. */
static void end_for_this_call(shmring_topic_sub_t *s)
{
    shmring_t *r = s->ring;
    if (blocking(r) || (int64_t)(s->cursor - s->end) >= 0)
        return;
    uint64_t now = shmring__coarse_now_ns(); /* 0: no time, then no end is trusted from one call to the next */
    if (now != 0 && now - s->end_checked_at <= END_TRUSTED_NS && now >= s->end_checked_at)
        return;
    s->end_checked_at = now;
    s->end = shmring_pos(atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed));
}

int shmring_topic_recv(shmring_topic_sub_t *s, void *key, uint32_t *key_len, void *data, uint32_t *len, uint64_t *pos)
{
    end_for_this_call(s);
    return next(s, key, key_len, data, len, pos);
}

int shmring_topic_recv_records(shmring_topic_sub_t *s, void *buf, uint32_t max_n)
{
    uint32_t got = 0, klen, len;
    uint64_t pos;
    end_for_this_call(s);
    while (got < max_n) {
        int rc = next(s, s->key, &klen, (unsigned char *)buf + (uint64_t)got * s->ring->slot_size, &len, &pos);
        if (rc == SHMRING_ECORRUPT && got > 0) {
            /* a bad slot (or one not a record) after records taken: they are
             * returned, and the next call says SHMRING_ECORRUPT for it */
            s->corrupt = 1;
            s->corrupt_pos = pos;
            return (int)got;
        }
        if (rc <= 0)
            return got > 0 ? (int)got : rc;
        got++;
    }
    return (int)got;
}

uint64_t shmring_topic_position(const shmring_topic_sub_t *s)
{
    return s->cursor;
}

uint64_t shmring_topic_lagged(const shmring_topic_sub_t *s)
{
    return s->lagged;
}

uint64_t shmring_topic_take_lag(shmring_topic_sub_t *s)
{
    uint64_t n = s->unreported;
    s->unreported = 0;
    return n;
}

/* ---- waiting ---- */

/* Could the wait of me end now (me->wait_pos: a subscriber's cursor, or a
 * publisher's first position that waits)? relaxed loads: a hint, ordered after
 * the sleeper bit by F1; the operation decides. Shut down, a publisher without
 * a claim is done (its claim fails); one that holds a claim (me->wait_claimed,
 * made before the shut-down) still waits to write it, asleep: subscribers
 * drain up to the end it is part of. */
static int ready_at(const shmring_participant_t *me, int what)
{
    const shmring_t *r = me->ring;
    uint64_t p = me->wait_pos;
    if (what == SHMRING_WAIT_READABLE) {
        int written = slot_written(r, p, memory_order_relaxed);
        if (blocking(r) && !written && !shut_begun(r))
            return 0; /* not the publishers' line while we wait (reach_end) */
        uint64_t wp = atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed);
        uint64_t end = shmring_pos(wp);
        /* never the word at or past the end (next() does not step there: a
         * word a peer scribbled on would end every wait at once) */
        if (p >= end) /* drained (p past the end: next() refuses) */
            return shut_begun(r) || ((wp & SHMRING_SHUT) && shut_generation(r));
        if (!blocking(r) && end - p > r->capacity)
            return 1; /* lapped, whatever the word's lap field says (step) */
        return written;
    }
    uint64_t wp = atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed);
    if ((wp & SHMRING_SHUT) && !me->wait_claimed)
        return 1; /* a claim now says so */
    uint32_t who;
    if (blocking(r) && !shmring__gate_allows(r, shmring__topic_gate(r, &who), p + 1))
        return 0;
    return p >= shmring_pos(wp) || shmring__slot_writable(r, p);
}

/* A publisher held at the gate spins until there is room for a run of
 * messages (as a queue's producer, queue.c spin_room: resuming at the first
 * freed slot would keep publisher and subscriber in lockstep, each publish
 * scanning the table again), looking only at the slowest subscriber it cached
 * (one load; a scan when it left or the table changed). Only the spin waits
 * for the run: the check before sleeping is ready_at's, exact. relaxed: a hint,
 * the claim decides. */
#define SHMRING_TOPIC_SPIN_ROOM 128u

static int room_for_a_run(const shmring_participant_t *me)
{
    const shmring_t *r = me->ring;
    uint64_t run = r->maxsize / 8 < SHMRING_TOPIC_SPIN_ROOM ? r->maxsize / 8 : SHMRING_TOPIC_SPIN_ROOM;
    if (!blocking(r) || me->cached_gate == UINT64_MAX || me->cached_who >= r->kind_args[0] ||
        atomic_load_explicit(&r->seg->cons.read_pos, memory_order_relaxed) + 1 != me->cached_gen)
        return ready_at(me, SHMRING_WAIT_WRITABLE);
    const struct shmring_subscriber_entry *e = &shmring__subs(r)[me->cached_who];
    uint64_t w = atomic_load_explicit(&e->state, memory_order_relaxed);
    if (SHMRING_SUB_STATUS(w) != SHMRING_SUB_ACTIVE || !shmring__sub_owned(r, w))
        return 1; /* it left (or its owner is gone): the claim scans again */
    uint64_t c = atomic_load_explicit(&e->cursor, memory_order_relaxed);
    return shmring__gate_allows(r, c, me->wait_pos + (run ? run : 1));
}

/* A subscriber that found nothing at its cursor spins looking at the last slot
 * of a run of SHMRING_TOPIC_RUN positions past it (at most maxsize / 8: with
 * fewer, the cursor's own), and at the cursor only once that run looks written
 * or every SHMRING_TOPIC_RUN rounds: a look at the slot
 * the publishers write next takes its line back from them at every message,
 * and resuming at the first message kept publisher and subscriber in lockstep
 * at well under either's rate alone (bench/RESULTS.md). A message that comes
 * alone is seen at most that many rounds later. relaxed: a hint, ready_at
 * decides (a word scribbled on ends no wait). */
#define SHMRING_TOPIC_RUN 16u

static int run_written(const shmring_participant_t *me)
{
    const shmring_t *r = me->ring;
    uint64_t run = r->maxsize / 8 < SHMRING_TOPIC_RUN ? r->maxsize / 8 : SHMRING_TOPIC_RUN;
    return slot_written(r, me->wait_pos + (run ? run - 1 : 0), memory_order_relaxed);
}

static int spin_ready(const shmring_participant_t *me, int what, int gated, uint32_t round)
{
    if (what == SHMRING_WAIT_READABLE)
        return (run_written(me) || round % SHMRING_TOPIC_RUN == SHMRING_TOPIC_RUN - 1) && ready_at(me, what);
    return gated ? room_for_a_run(me) : ready_at(me, what);
}

int shmring_topic_wait(shmring_participant_t *me, shmring_topic_sub_t *sub, const shmring_span_t *span, int what,
                       uint64_t timeout_ns, uint32_t spin)
{
    shmring_t *r = me->ring;
    if (what == SHMRING_WAIT_READABLE) {
        if (sub == NULL)
            return SHMRING_EINVAL;
        me->wait_pos = sub->cursor;
    } else {
        what = SHMRING_WAIT_WRITABLE;
        me->wait_claimed = span != NULL;
        /* a pending claim waits for its last position (the gate) and its
         * first unwritable slot; a publisher without one for the end */
        me->wait_pos = span ? span->pos + span->n - 1
                            : shmring_pos(atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed));
        if (span)
            for (uint32_t k = 0; k < span->n; k++)
                if (!shmring__slot_writable(r, span->pos + k)) {
                    me->wait_pos = span->pos + k;
                    break;
                }
    }
    int gated = what == SHMRING_WAIT_WRITABLE && span == NULL;
    for (uint32_t i = 0; i < spin; i++) {
        if (spin_ready(me, what, gated, i))
            return 1;
        shmring__cpu_relax();
    }
    if (timeout_ns == 0)
        return ready_at(me, what);
    /* Once a sleep, not a spin round: a write_pos flagged while the generation is
     * not (a peer's scribble; ready_at under block does not read write_pos before
     * its slot is written) would otherwise keep a drained subscriber asleep for
     * good. relaxed: a hint, next() decides. */
    if (what == SHMRING_WAIT_READABLE && !shut_begun(r) &&
        (atomic_load_explicit(&r->seg->prod.write_pos, memory_order_relaxed) & SHMRING_SHUT))
        return shut_generation(r);
    return shmring__sleep(me, what, timeout_ns); /* re-checks ready_at after F1 (wait.c) */
}

/* ---- the topic as a ring kind (kind.h) ---- */

static int layout(const struct shmring_header *h, struct shmring_layout *out)
{
    int rc;
    if (!(h->flags & SHMRING_FLAG_MULTICAST))
        return shmring__fail(SHMRING_ERESERVED, "flags 0x%x: a topic without its flag 0x%x", h->flags,
                             SHMRING_FLAG_MULTICAST);
    if ((rc = shmring__check_range(SHMRING_EPARTTABLE, "max_subscribers", h->kind_args[0], 1,
                                   SHMRING_SUBSCRIBERS_MAX, "")) ||
        (rc = shmring__check_range(SHMRING_ESLOTSIZE, "max_topic_len", h->kind_args[1], 0, SHMRING_TOPIC_LEN_MAX,
                                   "")))
        return rc;
    struct shmring_layout first;
    if ((rc = shmring__layout_compute(h->slot_size, h->maxsize, h->max_participants, h->flags, 0, &first)))
        return rc;
    uint64_t bytes = (uint64_t)h->kind_args[0] * SHMRING_LINE + first.capacity * shmring_key_stride(h->kind_args[1]);
    return shmring__layout_compute(h->slot_size, h->maxsize, h->max_participants, h->flags, bytes, out);
}

/* Attach: the counters of a topic that passed every header check. */
static int validate(struct shmring_segment *seg, const struct shmring_header *h)
{
    (void)h;
    /* relaxed: plausibility of what a peer wrote, not synchronisation */
    /* the raw word without its one flag (shmring_pos would hide bit 62) */
    uint64_t end = atomic_load_explicit(&seg->prod.write_pos, memory_order_relaxed) & ~SHMRING_SHUT;
    uint64_t holes = atomic_load_explicit(&seg->stats.lost, memory_order_relaxed);
    if (end >= SHMRING_POS_LIMIT || holes > end)
        return shmring__fail(SHMRING_EPOSITIONS, "counters inconsistent: write_pos %llu, holes %llu",
                             (unsigned long long)end, (unsigned long long)holes);
    return SHMRING_OK;
}

const struct shmring_kind shmring__topic_kind = {
    .kind = SHMRING_KIND_TOPIC,
    .flags = SHMRING_FLAG_MULTICAST,
    .layout = layout,
    .validate = validate,
    .n_waitqs = 2,
    .waitq_offsets = {[SHMRING_WAIT_READABLE] = offsetof(struct shmring_segment, not_empty),
                      [SHMRING_WAIT_WRITABLE] = offsetof(struct shmring_segment, not_full)},
    .ready = NULL,
    .ready_at = ready_at,
    .first_pass = shmring__topic_first_pass,
    .settle = shmring__topic_settle,
};
