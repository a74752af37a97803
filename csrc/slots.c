/*
 * slots.c - runs of slot words (scalar loops and the x86-64 vector path) and
 * the public accessors of slots. The single-slot cases are inline in slots.h.
 *
 * Atomic pairs in this file (the partners are the ring kind's, queue.c):
 *   count_runs  acquire loads of each word, or (vector path) plain 16-byte
 *               loads then an acquire fence: P1 / C1, pair with C3 / P4
 *   store_runs  release stores of each word, or (vector path) a release fence
 *               then plain 16-byte stores: P4 / C3, pair with C1 / P1
 *   The vector path's fences pair with either form on the other side. Its plain
 *   accesses are invisible to ThreadSanitizer (the path is off under TSan), so
 *   a plain (non-TSan) stress run of records rings covers it (test_c_core.py).
 */
#define _GNU_SOURCE
#include <string.h>

#include "internal.h"

/* Records rings pack their slot words (2 or 4 bytes), so on x86-64 a run of
 * them is checked and stored 16 bytes at a time: plain vector loads followed by
 * one acquire fence, one release fence followed by plain vector stores. This is
 * the fence form of P1/C1 (loads, then fence acquire) and P4/C3 (fence release,
 * then stores), and what the per-word atomics compile to on x86 anyway (plain
 * moves; the fences only stop the compiler). x86 reads and writes each aligned
 * word of a vector access whole. For batches of 4096 24-byte records it takes
 * ~5 instructions per slot word to well under one. In C11 terms these plain
 * accesses race with the atomics; that they work rests on x86 and on GCC and
 * clang treating the fences as compiler barriers, which is why the path is
 * limited to them. Elsewhere (aarch64: a 16-byte access at a 2-byte aligned
 * address is not promised whole words before LSE2), under ThreadSanitizer (it
 * cannot pair fences with plain accesses) and with -DSHMRING_SCALAR_WORDS, the
 * per-word atomic loops below do it all (SHMRING_PACKED_VECTORS, slots.h). */

#ifdef SHMRING_PACKED_VECTORS
typedef uint64_t words2 __attribute__((vector_size(16), aligned(2)));

/* 16 bytes of `value` repeated in words of the ring's width. */
static inline words2 pattern(const shmring_t *r, uint32_t value)
{
    uint64_t lane = value * (r->seq_bytes == 2 ? UINT64_C(0x0001000100010001) : UINT64_C(0x0000000100000001));
    return (words2){lane, lane};
}

/* How many packed words from w, a multiple of 32 bytes' worth up to run, hold expect. */
static uint32_t count_packed(const shmring_t *r, const void *w, uint32_t expect, uint32_t run)
{
    const unsigned char *p = w;
    const words2 e = pattern(r, expect);
    const uint32_t per = 32 / r->seq_bytes;
    uint32_t k = 0;
    for (; k + per <= run; k += per) {
        words2 a, b;
        memcpy(&a, p + k * r->seq_bytes, sizeof a);
        memcpy(&b, p + k * r->seq_bytes + sizeof a, sizeof b);
        words2 diff = (a ^ e) | (b ^ e);
        if ((diff[0] | diff[1]) != 0)
            break; /* the scalar loop finds which word differs */
    }
    /* P1 / C1 for the words read above: pairs with C3 / P4 (either form) */
    atomic_thread_fence(memory_order_acquire);
    return k;
}

/* Store value into the packed words from w, 16 bytes at a time up to run; how many it stored. */
static uint32_t store_packed(const shmring_t *r, void *w, uint32_t value, uint32_t run)
{
    unsigned char *p = w;
    const words2 v = pattern(r, value);
    const uint32_t per = 16 / r->seq_bytes;
    uint32_t k = 0;
    /* P4 / C3 for the words stored below: pairs with C1 / P1 (either form) */
    atomic_thread_fence(memory_order_release);
    for (; k + per <= run; k += per)
        memcpy(p + k * r->seq_bytes, &v, sizeof v);
    return k;
}
#endif

/* slots.h */
uint32_t shmring__count_runs(const shmring_t *r, uint64_t pos, uint32_t max, uint32_t code, uint32_t *last)
{
    uint32_t n = 0;
    *last = 0;
    while (n < max) {
        uint32_t run = shmring__run_at(r, pos + n, max - n);
        uint32_t expect = shmring__state(r, pos + n, code);
        const unsigned char *w = shmring__seq(r, pos + n);
        uint32_t k = 0;
#ifdef SHMRING_PACKED_VECTORS
        if (r->meta_shift != 3)
            k = count_packed(r, w, expect, run);
#endif
        for (; k < run; k++) {
            uint32_t seq = shmring__word_load(r, w + ((size_t)k << r->meta_shift), memory_order_acquire);
            if (seq != expect) {
                *last = seq;
                return n + k;
            }
        }
        n += run;
    }
    return n;
}

void shmring__store_runs(const shmring_t *r, uint64_t pos, uint32_t from, uint32_t to, uint64_t ahead,
                       uint32_t code)
{
    for (uint32_t i = from; i < to;) {
        uint32_t run = shmring__run_at(r, pos + i, to - i);
        uint32_t value = shmring__state(r, pos + i + ahead, code);
        unsigned char *w = shmring__seq(r, pos + i);
        uint32_t k = 0;
#ifdef SHMRING_PACKED_VECTORS
        if (r->meta_shift != 3)
            k = store_packed(r, w, value, run);
#endif
        for (; k < run; k++)
            shmring__word_store(r, w + ((size_t)k << r->meta_shift), value, memory_order_release);
        i += run;
    }
}


unsigned char *shmring_slot_payload(const shmring_t *r, uint64_t pos)
{
    return shmring__slot_payload(r, pos);
}

void shmring_slot_set_len(const shmring_t *r, uint64_t pos, uint32_t len)
{
    shmring__slot_set_len(r, pos, len);
}

int64_t shmring_slot_len(const shmring_t *r, uint64_t pos)
{
    /* Read once: a peer scribbling on the segment cannot make us copy more
     * than a slot after this check. */
    if (r->flags & SHMRING_FLAG_RECORDS)
        return (int64_t)r->slot_size;
    uint32_t len = *shmring__len(r, pos);
    return len > r->slot_size ? SHMRING_ECORRUPT : (int64_t)len;
}

void shmring_copy_span(const shmring_t *r, const shmring_span_t *span, void *buf, int into_ring)
{
    uint64_t n = span->n, first = shmring__run_at(r, span->pos, span->n);
    unsigned char *slot = shmring__slot_payload(r, span->pos), *b = buf;
    if (into_ring) {
        memcpy(slot, b, first * r->slot_size);
        memcpy(r->payload, b + first * r->slot_size, (n - first) * r->slot_size);
    } else {
        memcpy(b, slot, first * r->slot_size);
        memcpy(b + first * r->slot_size, r->payload, (n - first) * r->slot_size);
    }
}
