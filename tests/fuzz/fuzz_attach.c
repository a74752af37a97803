/*
 * fuzz_attach.c - fuzz target: any bytes as a shared-memory segment, attached
 * as a queue and as a topic, and then used (claims, copies, stats, liveness,
 * recovery, waits; a topic's publish, subscribe, receive, stats).
 *
 * The promise it checks: a corrupt, truncated or foreign segment is an error
 * code, and a segment that passed validation is never read or written outside
 * its mapping and never makes an operation loop forever, whatever its counters,
 * slot words and participant table say.
 *
 * Built by tests/test_fuzz.py two ways: with clang's libFuzzer (coverage-guided)
 * where available, and with gcc + ASan/UBSan and fuzz_driver.c everywhere.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../csrc/internal.h"

static void exercise(shmring_t *r)
{
    shmring_participant_t *me;
    if (shmring_participant_join(r, &me) != SHMRING_OK)
        return;
    shmring_span_t span;
    int n = shmring_queue_get_claim(me, 4, 0, &span);
    if (n > 0) {
        unsigned char sink = 0;
        for (uint32_t i = 0; i < span.n; i++) {
            int64_t len = shmring_slot_len(r, span.pos + i);
            if (len > 0)
                sink ^= shmring_slot_payload(r, span.pos + i)[len - 1];
        }
        (void)sink;
        shmring_queue_get_release(me, &span);
    }
    n = shmring_queue_put_claim(me, 2, 0, &span);
    if (n > 0) {
        for (uint32_t i = 0; i < span.n; i++) {
            memset(shmring_slot_payload(r, span.pos + i), 0xab, r->slot_size);
            shmring_slot_set_len(r, span.pos + i, (uint32_t)r->slot_size);
        }
        shmring_queue_put_commit(me, &span);
    }
    shmring_stats_t st;
    shmring_queue_stats(r, &st);
    shmring_participants_alive(r);
    shmring_recover(r);
    shmring_queue_task_done(me, 1);
    shmring_queue_unfinished(r);
    shmring_queue_wait(me, SHMRING_WAIT_READABLE, 0, 1);
    shmring_queue_wait(me, SHMRING_WAIT_WRITABLE, 0, 1);
    shmring_participant_leave(me);
}

static void exercise_topic(shmring_t *r)
{
    shmring_participant_t *me;
    if (shmring_participant_join(r, &me) != SHMRING_OK)
        return;
    shmring_topic_sub_t *sub;
    if (shmring_topic_subscribe(me, SHMRING_START_OLDEST, 0, &sub) == SHMRING_OK) {
        static unsigned char key[SHMRING_TOPIC_LEN_MAX], buf[1 << 16];
        uint32_t klen, len;
        uint64_t pos, recheck;
        shmring_topic_filter(sub, "a", 1, 1);
        for (int i = 0; i < 8 && r->slot_size <= sizeof buf; i++)
            if (shmring_topic_recv(sub, key, &klen, buf, &len, &pos) <= 0)
                break;
        shmring_topic_wait(me, sub, NULL, SHMRING_WAIT_READABLE, 0, 1);
        shmring_topic_unstick(me, sub, NULL, SHMRING_WAIT_READABLE, 1, &recheck);
        shmring_topic_unsubscribe(sub);
    }
    shmring_span_t span;
    if (r->slot_size <= 64 && shmring_topic_publish(me, "a", r->kind_args[1] ? 1 : 0, "payload", 7 < r->slot_size ? 7 : (uint32_t)r->slot_size, &span) ==
                                  SHMRING_TOPIC_PENDING)
        shmring_topic_publish_commit(me, &span, 0);
    shmring_topic_stats_t st;
    shmring_topic_stats(r, &st);
    shmring_topic_sub_info_t info;
    for (uint32_t i = 0; i < r->kind_args[0] && i < 4; i++)
        shmring_topic_subscriber(r, i, &info);
    shmring_recover(r);
    shmring_participant_leave(me);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char name[64];
    if (!name[0])
        snprintf(name, sizeof name, "/shmring-fuzz-%d", (int)getpid());
    shm_unlink(name);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return 0;
    /* mmap, not write(): macOS shared memory objects cannot be written with write() */
    int ok = size == 0;
    if (size > 0 && ftruncate(fd, (off_t)size) == 0) {
        void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            memcpy(m, data, size);
            munmap(m, size);
            ok = 1;
        }
    }
    close(fd);
    shmring_t *r;
    /* what `shmring ls` / `stat` do: look without joining, through a read-only mapping */
    if (ok && shmring_attach(name, SHMRING_KIND_QUEUE, SHMRING_ATTACH_READONLY, &r) == SHMRING_OK) {
        shmring_info_t info;
        shmring_stats_t st;
        shmring_info(r, &info);
        shmring_queue_stats(r, &st);
        shmring_close(r);
    }
    if (ok && shmring_attach(name, SHMRING_KIND_QUEUE, 0, &r) == SHMRING_OK) {
        exercise(r);
        shmring_close(r);
    }
    if (ok && shmring_attach(name, SHMRING_KIND_TOPIC, SHMRING_ATTACH_READONLY, &r) == SHMRING_OK) {
        shmring_topic_stats_t st;
        shmring_topic_sub_info_t info;
        shmring_topic_stats(r, &st);
        for (uint32_t i = 0; i < r->kind_args[0]; i++)
            shmring_topic_subscriber(r, i, &info);
        shmring_close(r);
    }
    if (ok && shmring_attach(name, SHMRING_KIND_TOPIC, 0, &r) == SHMRING_OK) {
        exercise_topic(r);
        shmring_close(r);
    }
    shm_unlink(name);
    return 0;
}
