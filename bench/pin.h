/*
 * pin.h - pin the calling process to one CPU, for the two-process C benchmarks
 * (c_ceiling.c, placement.c). Shipped beside c_ceiling.c in the package.
 */
#ifndef SHMRING_BENCH_PIN_H
#define SHMRING_BENCH_PIN_H
#include <stdio.h>
#include <stdlib.h>
#ifdef __linux__
#include <sched.h>
#endif

/* Pin the calling process to one CPU where the OS can; the number comes from argv. */
static void pin(const char *cpu)
{
#ifdef __linux__
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(atoi(cpu), &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        perror("sched_setaffinity");
#else
    (void)cpu;
#endif
}
#endif
