/*
 * placement.c - how far apart two CPUs are right now: the round trip of one
 * cache line between a process pinned to each, in nanoseconds.
 *
 *   placement CPU_A CPU_B   ->  prints "<ns>" (the median of 15 batches of 1000 round trips)
 *
 * On a VM the host may move the virtual CPUs between cores that share a cache
 * and cores that do not, every few seconds. On this project's 2-vCPU VM the
 * round trip is then about 125 ns or about 470 ns, and every two-process row of
 * `shmring bench` (and the bare C ring of c_ceiling.c) follows it: records rows
 * move 3-4x fewer bytes while it is 470. bench/ab.py runs this before and after
 * each repetition, so that it compares the two builds within one placement.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pin.h"

enum { BATCHES = 15, TRIPS = 1000 };

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CPU_A CPU_B\n", argv[0]);
        return 2;
    }
    /* The line both sides spin on: A writes odd values, B answers with the next even one. */
    _Atomic long *line = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (line == MAP_FAILED)
        return 1;
    const long total = (long)BATCHES * TRIPS;
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        pin(argv[2]);
        for (long i = 1; i <= total; i++) {
            /* relaxed: only the value travels, no other data rides on it */
            while (atomic_load_explicit(line, memory_order_relaxed) != 2 * i - 1)
                ;
            atomic_store_explicit(line, 2 * i, memory_order_relaxed);
        }
        _exit(0);
    }
    pin(argv[1]);
    double batch[BATCHES];
    for (long b = 0, i = 1; b < BATCHES; b++) {
        double t0 = now_ns();
        for (long end = i + TRIPS; i < end; i++) {
            atomic_store_explicit(line, 2 * i - 1, memory_order_relaxed);
            while (atomic_load_explicit(line, memory_order_relaxed) != 2 * i)
                ;
        }
        batch[b] = (now_ns() - t0) / TRIPS;
    }
    waitpid(pid, NULL, 0);
    qsort(batch, BATCHES, sizeof batch[0], by_value);
    printf("%.1f\n", batch[BATCHES / 2]);
    return 0;
}
