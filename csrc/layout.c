/*
 * layout.c - where each area of a segment lies (layout.h): the arithmetic that
 * create, attach's validation and a ring kind's table share, with the detail of
 * the first parameter out of range. No atomics here.
 */
#include "internal.h"

static uint64_t align_line(uint64_t x)
{
    return (x + SHMRING_LINE - 1) & ~(uint64_t)(SHMRING_LINE - 1);
}

int shmring__check_range(int rc, const char *what, uint64_t v, uint64_t lo, uint64_t hi, const char *where)
{
    if (v >= lo && v <= hi)
        return SHMRING_OK;
    return shmring__fail(rc, "%s %llu%s is out of range %llu..%llu", what, (unsigned long long)v, where,
                         (unsigned long long)lo, (unsigned long long)hi);
}

int shmring__layout_compute(uint64_t slot_size, uint64_t maxsize, uint32_t max_participants,
                            uint32_t flags, uint64_t kind_bytes, struct shmring_layout *out)
{
    int rc;
    if (slot_size > SHMRING_SLOT_SIZE_MAX)
        return shmring__fail(SHMRING_ESLOTSIZE, "msg_size %llu is over the largest slot, %llu bytes",
                             (unsigned long long)slot_size, (unsigned long long)SHMRING_SLOT_SIZE_MAX);
    if ((rc = shmring__check_range(SHMRING_ESLOTSIZE, "msg_size", slot_size, 1, SHMRING_SLOT_SIZE_MAX, "")) ||
        (rc = shmring__check_range(SHMRING_EMAXSIZE, "maxsize", maxsize, 1, SHMRING_MAXSIZE_MAX, "")))
        return rc;
    if (max_participants > SHMRING_PARTICIPANTS_MAX)
        return shmring__fail(SHMRING_EPARTTABLE, "max_participants %u is over the table's limit, %u",
                             max_participants, SHMRING_PARTICIPANTS_MAX);
    if ((rc = shmring__check_range(SHMRING_EPARTTABLE, "max_participants", max_participants, 1, SHMRING_PARTICIPANTS_MAX, "")))
        return rc;
    /* At least 4 slots (a bound older layouts needed; kept for the tests that use it). */
    uint64_t cap = 4;
    while (cap < maxsize)
        cap <<= 1;
    out->capacity = cap;
    out->participants_offset = sizeof(struct shmring_segment);
    out->kind_offset = align_line(out->participants_offset +
                                  (uint64_t)max_participants * sizeof(struct shmring_participant_entry));
    out->meta_offset = align_line(out->kind_offset + kind_bytes);
    uint64_t meta_bytes = cap << shmring_meta_shift(flags, cap);
    out->payload_offset = align_line(out->meta_offset + meta_bytes);
    uint64_t payload_bytes;
    if (__builtin_mul_overflow(cap, slot_size, &payload_bytes) ||
        __builtin_add_overflow(out->payload_offset, payload_bytes, &out->mapped_size) ||
        out->mapped_size > (uint64_t)SIZE_MAX || out->mapped_size > (UINT64_C(1) << 46))
        return shmring__fail(SHMRING_ENOMEM, "msg_size %llu x %llu slots is over the largest mapping, 2^46 bytes",
                             (unsigned long long)slot_size, (unsigned long long)cap);
    return SHMRING_OK;
}
