/*
 * hooks.c - test hooks: points inside operations where a test can make this
 * process stall, so that it can be killed there (shmring_debug_set_hook). The
 * check is inline (internal.h, shmring__hook): one relaxed load per operation.
 *
 * Atomic pairs in this file: none. relaxed: test configuration, set before the
 * operations it affects.
 */
#define _GNU_SOURCE
#include <time.h>

#include "internal.h"

_Atomic int shmring__hook_point;
static _Atomic uint64_t hook_ns;

void shmring_debug_set_hook(int point, uint64_t ns)
{
    atomic_store_explicit(&hook_ns, ns, memory_order_relaxed);
    atomic_store_explicit(&shmring__hook_point, point, memory_order_relaxed);
}

void shmring__hook_stall(void)
{
    uint64_t ns = atomic_load_explicit(&hook_ns, memory_order_relaxed);
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    nanosleep(&ts, NULL);
}
