/*
 * test_helpers.h - what the C tests of every ring kind share (test_ring.c,
 * test_topic.c): CHECK (asserts stay on in every build), and making a
 * participant look dead for white-box crash recovery. Not part of the library.
 */
#ifndef SHMRING_TEST_HELPERS_H
#define SHMRING_TEST_HELPERS_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../csrc/internal.h"

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

static inline pid_t dead_pid(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(0);
    CHECK(waitpid(pid, NULL, 0) == pid); /* reaped: the pid names nobody now */
    return pid;
}

/* What a participant leaves when its process dies: no lock on its entry (the
 * kernel drops it), and for the PID fallback a pid that names nobody. */
static inline void drop_lock(shmring_participant_t *p)
{
#ifdef F_OFD_SETLK
    if (atomic_load(&p->entry->liveness) == SHMRING_LIVENESS_LOCK) {
        struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_len = 1,
                           .l_start = (off_t)p->index};
        CHECK(fcntl(p->ring->lock_fd, F_OFD_SETLK, &fl) == 0);
        p->ring->locked[p->index / 64] &= ~(UINT64_C(1) << (p->index % 64));
    }
#else
    (void)p;
#endif
}

static inline void make_dead(shmring_participant_t *p, pid_t pid)
{
    drop_lock(p);
    atomic_store(&p->entry->pid, pid);
}

#endif /* SHMRING_TEST_HELPERS_H */
