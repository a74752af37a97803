/*
 * kinds.c - the one place where ring kinds are registered: a header's kind
 * field names its table of operations (kind.h). No shared-memory atomics here.
 */
#include "kind.h"

static const struct shmring_kind *const kinds[] = {&shmring__queue_kind, &shmring__topic_kind};

const struct shmring_kind *shmring__kind(uint32_t kind)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        /* a kind with more wait queues than a handle has room for is none */
        if (kinds[i]->kind == kind && kinds[i]->n_waitqs <= SHMRING_WAITQS_MAX)
            return kinds[i];
    return NULL;
}
