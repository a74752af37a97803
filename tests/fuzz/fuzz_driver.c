/*
 * fuzz_driver.c - runs fuzz_attach.c without libFuzzer (gcc has none): replays
 * every file of a corpus directory, then mutates them at random for a number
 * of seconds. No coverage feedback; the mutations aim at the segment's 32- and
 * 64-bit fields (interesting values at aligned offsets), bit flips, truncation.
 *
 *   fuzz_driver SECONDS CORPUS_DIR [SEED]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FILES 256
#define MAX_SIZE (1 << 20)

static uint8_t *files[MAX_FILES];
static size_t sizes[MAX_FILES];
static int nfiles;

static void load(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        perror(dir);
        exit(2);
    }
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL && nfiles < MAX_FILES) {
        if (ent->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        files[nfiles] = malloc(MAX_SIZE);
        sizes[nfiles] = fread(files[nfiles], 1, MAX_SIZE, f);
        fclose(f);
        nfiles++;
    }
    closedir(d);
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t mutate(uint8_t *buf, size_t size, uint64_t *s)
{
    static const uint64_t interesting[] = {0, 1, 2, 3, 4, 0x7f, 0x80, 0xff, 0x7fffffff, 0x80000000,
                                           0xffffffff, 0x100000000ull, 0x7fffffffffffffffull,
                                           0x8000000000000000ull, 0xffffffffffffffffull};
    int rounds = 1 + (int)(rnd(s) % 8);
    for (int k = 0; k < rounds && size > 0; k++) {
        size_t at = (size_t)(rnd(s) % size);
        switch (rnd(s) % 6) {
        case 0: /* flip a bit */
            buf[at] ^= (uint8_t)(1u << (rnd(s) % 8));
            break;
        case 1: /* random byte */
            buf[at] = (uint8_t)rnd(s);
            break;
        case 2: /* interesting 64-bit value at an aligned offset (counters, sizes, offsets) */
        case 3: {
            at &= ~(size_t)7;
            if (at + 8 <= size) {
                uint64_t v = interesting[rnd(s) % (sizeof interesting / sizeof *interesting)];
                if (rnd(s) % 4 == 0)
                    v += size; /* near the real size */
                memcpy(buf + at, &v, 8);
            }
            break;
        }
        case 4: { /* interesting 32-bit value */
            at &= ~(size_t)3;
            if (at + 4 <= size) {
                uint32_t v = (uint32_t)interesting[rnd(s) % (sizeof interesting / sizeof *interesting)];
                memcpy(buf + at, &v, 4);
            }
            break;
        }
        case 5: /* truncate */
            size = at;
            break;
        }
    }
    return size;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SECONDS CORPUS_DIR [SEED]\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[1]);
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : (uint64_t)time(NULL);
    uint64_t s = seed | 1;
    load(argv[2]);
    if (nfiles == 0) {
        fprintf(stderr, "empty corpus %s\n", argv[2]);
        return 2;
    }
    for (int i = 0; i < nfiles; i++)
        LLVMFuzzerTestOneInput(files[i], sizes[i]);
    uint8_t *buf = malloc(MAX_SIZE);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long runs = 0;
    do {
        int i = (int)(rnd(&s) % (uint64_t)nfiles);
        memcpy(buf, files[i], sizes[i]);
        size_t size = mutate(buf, sizes[i], &s);
        LLVMFuzzerTestOneInput(buf, size);
        runs++;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
    printf("fuzz ok: %d corpus files replayed, %lu mutated inputs in %.0f s (seed %llu)\n", nfiles, runs,
           seconds, (unsigned long long)seed);
    free(buf);
    return 0;
}
