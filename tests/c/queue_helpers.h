/*
 * queue_helpers.h - what the C tests move messages with: one message out, and
 * records in and out in one claim (the binding has its own, _core.pyx). Built
 * on the public claim calls; not part of the library.
 */
#ifndef SHMRING_TEST_QUEUE_HELPERS_H
#define SHMRING_TEST_QUEUE_HELPERS_H

#include <string.h>

#include "../../csrc/internal.h"

/* One message out: 1 (its length in *len), 0 empty, SHMRING_EINVAL if buf_size
 * is under the slot size (nothing consumed), SHMRING_ECORRUPT. */
static int test_get(shmring_participant_t *me, void *buf, size_t buf_size, size_t *len)
{
    shmring_t *r = me->ring;
    if (buf_size < r->slot_size)
        return SHMRING_EINVAL;
    shmring_span_t span;
    int n = shmring_queue_get_claim(me, 1, 0, &span);
    if (n <= 0)
        return n;
    int64_t l = shmring_slot_len(r, span.pos);
    if (l >= 0)
        memcpy(buf, shmring__slot_payload(r, span.pos), (size_t)l);
    shmring_queue_get_release(me, &span);
    if (l < 0)
        return (int)l;
    *len = (size_t)l;
    return 1;
}

/* Records rings: move up to n records (slot_size bytes each) in one claim, one
 * memcpy per contiguous run. The number moved (0: full / empty) or an error. */
static int64_t test_put_records(shmring_participant_t *me, const void *src, uint64_t n)
{
    shmring_span_t span;
    int k = shmring_queue_put_claim(me, n < UINT32_MAX ? (uint32_t)n : UINT32_MAX, 0, &span);
    if (k > 0) {
        shmring_copy_span(me->ring, &span, (void *)src, 1);
        shmring_queue_put_commit(me, &span);
    }
    return k;
}

static int64_t test_get_records(shmring_participant_t *me, void *dst, uint64_t max_n)
{
    shmring_span_t span;
    int k = shmring_queue_get_claim(me, max_n < UINT32_MAX ? (uint32_t)max_n : UINT32_MAX, 0, &span);
    if (k > 0) {
        shmring_copy_span(me->ring, &span, dst, 0);
        shmring_queue_get_release(me, &span);
    }
    return k;
}

#endif /* SHMRING_TEST_QUEUE_HELPERS_H */
