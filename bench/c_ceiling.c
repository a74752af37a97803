/*
 * c_ceiling.c - the bare C ceiling for moving records between two processes:
 * a single-producer single-consumer byte ring in shared memory, copied into and
 * out of in large chunks, with nothing else (no per-record work, no Python).
 * Measured at the consumer, from its first chunk to its last.
 *
 *   c_ceiling RING_BYTES CHUNK_BYTES TOTAL_BYTES [CONSUMER_CPU PRODUCER_CPU]
 *       ->  prints "<bytes/s>"
 *
 * With the CPU numbers (Linux), each process is pinned like the shmring rows.
 *
 * The consumer starts once the producer has filled the ring, so the ring runs
 * full, as shmring's does under the same load (its consumer is the slower side).
 * On a VM the rate also follows where the host has put the two virtual CPUs,
 * which it changes every few seconds: on this project's 2-vCPU VM the bytes per
 * second drop about 5x (24 GB/s to 5 GB/s) while a cache line's round trip
 * between the two CPUs is 470 ns instead of 125 ns (bench/placement.c), and the
 * shmring records rows drop with it. The records suite takes the best of a few
 * runs per repetition as the ceiling, so that it stays a ceiling.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pin.h"

struct control {
    _Alignas(128) _Atomic uint64_t written; /* bytes the producer has published */
    _Alignas(128) _Atomic uint64_t read;    /* bytes the consumer has finished with */
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: %s RING_BYTES CHUNK_BYTES TOTAL_BYTES [CONSUMER_CPU PRODUCER_CPU]\n", argv[0]);
        return 2;
    }
    int pinned = argc == 6;
    uint64_t ring = strtoull(argv[1], NULL, 0), chunk = strtoull(argv[2], NULL, 0);
    uint64_t total = strtoull(argv[3], NULL, 0) / chunk * chunk;
    if (chunk == 0 || ring < chunk || ring % chunk != 0 || total < 2 * chunk) {
        fprintf(stderr, "need 0 < CHUNK <= RING, RING a multiple of CHUNK, TOTAL >= 2 CHUNK\n");
        return 2;
    }
    void *shared = mmap(NULL, sizeof(struct control) + ring, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        return 1;
    struct control *c = shared;
    unsigned char *buf = (unsigned char *)shared + sizeof *c;
    memset(buf, 1, ring);
    unsigned char *local = malloc(chunk);
    memset(local, 7, chunk);
    pid_t pid = fork();
    if (pid == 0) { /* producer */
        if (pinned)
            pin(argv[5]);
        for (uint64_t w = 0; w < total; w += chunk) {
            /* acquire: pairs with the consumer's release of `read`: it is done with the bytes */
            while (w + chunk - atomic_load_explicit(&c->read, memory_order_acquire) > ring)
                ;
            memcpy(buf + w % ring, local, chunk);
            /* release: pairs with the consumer's acquire: the bytes are there */
            atomic_store_explicit(&c->written, w + chunk, memory_order_release);
        }
        _exit(0);
    }
    if (pinned)
        pin(argv[4]);
    double t0 = 0;
    /* acquire: as below; the head start described at the top */
    while (atomic_load_explicit(&c->written, memory_order_acquire) < (total < ring ? total : ring))
        ;
    for (uint64_t r = 0; r < total; r += chunk) {
        while (atomic_load_explicit(&c->written, memory_order_acquire) < r + chunk)
            ;
        if (r == chunk)
            t0 = now(); /* from the end of the first chunk, like the Python rows */
        memcpy(local, buf + r % ring, chunk);
        atomic_store_explicit(&c->read, r + chunk, memory_order_release);
    }
    double elapsed = now() - t0;
    waitpid(pid, NULL, 0);
    printf("%.0f\n", (double)(total - 2 * chunk) / elapsed);
    return 0;
}
