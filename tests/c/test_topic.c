/*
 * test_topic.c - C tests of the topic (csrc/topic.c, topic_recovery.c), built
 * by tests/test_c_topic.py with -Wall -Wextra -Werror (plain, ASan+UBSan,
 * ThreadSanitizer, and aarch64 under qemu).
 *
 *   test_topic unit       single-threaded: retention and each start, prefix
 *                         filters, gating (block), lapping with exact counts
 *                         (overwrite), the slow timeout's detach and resume,
 *                         shut-down (a claim made before it still waits to be
 *                         written, asleep), a dead publisher's claim made holes,
 *                         a dead subscriber that stops gating
 *   test_topic stress P S N MAXSIZE block|overwrite
 *                         P publisher x S subscriber threads, N messages each,
 *                         tagged (publisher, sequence) and checksummed; every
 *                         subscriber checks per-publisher order and no torn
 *                         message; block: each gets every message exactly once
 *                         (one in three filters on one publisher's prefix and
 *                         gets exactly its N); overwrite: what it received plus
 *                         what it counts as lagged is exactly every message
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>

#include "../../csrc/topic.h"
#include "test_helpers.h"

static char ring_name[64];

static shmring_t *make_topic(uint64_t slot_size, uint64_t maxsize, uint32_t subs, uint32_t key_len, uint32_t policy)
{
    snprintf(ring_name, sizeof ring_name, "/shmring-ttest-%d", (int)getpid());
    shmring_unlink(ring_name);
    shmring_params_t p = {.slot_size = slot_size, .maxsize = maxsize, .kind = SHMRING_KIND_TOPIC,
                          .max_participants = 64, .mode = 0600, .max_subscribers = subs,
                          .max_topic_len = key_len, .policy = policy};
    shmring_t *r = NULL;
    CHECK(shmring_create(ring_name, &p, &r) == SHMRING_OK && r != NULL);
    return r;
}

static void drop_topic(shmring_t *r)
{
    shmring_close(r);
    CHECK(shmring_unlink(ring_name) == SHMRING_OK);
}

/* A topic with one participant, me, and one subscriber from the end, s. */
struct one {
    shmring_t *r;
    shmring_participant_t *me;
    shmring_topic_sub_t *s;
};

static struct one one_subscriber(uint64_t maxsize, uint32_t subs, uint32_t policy)
{
    struct one f;
    f.r = make_topic(16, maxsize, subs, 4, policy);
    CHECK(shmring_participant_join(f.r, &f.me) == SHMRING_OK);
    CHECK(shmring_topic_subscribe(f.me, SHMRING_START_LATEST, 0, &f.s) == SHMRING_OK);
    return f;
}

/* r, me and s of a topic of maxsize with one subscriber (and room for another). */
#define ONE_SUBSCRIBER(maxsize, policy)                                                                         \
    struct one f = one_subscriber(maxsize, 2, policy);                                                         \
    shmring_t *r = f.r;                                                                                        \
    shmring_participant_t *me = f.me;                                                                          \
    shmring_topic_sub_t *s = f.s

/* Publish one message (key, then the value v as 8 bytes): 1, or 0 if gated. */
static int pub(shmring_participant_t *me, const char *key, uint64_t v)
{
    shmring_span_t span;
    int rc = shmring_topic_publish(me, key, (uint32_t)strlen(key), &v, sizeof v, &span);
    CHECK(rc == 0 || rc == 1);
    return rc;
}

/* The next message's value (its key in key), or -1 if none. */
static int64_t recv_value(shmring_topic_sub_t *s, char *key)
{
    char k[64];
    uint64_t v = 0, pos;
    uint32_t klen, len;
    int rc = shmring_topic_recv(s, k, &klen, &v, &len, &pos);
    CHECK(rc == 0 || rc == 1);
    if (rc == 0)
        return -1;
    CHECK(len == sizeof v && klen < sizeof k);
    if (key) {
        memcpy(key, k, klen);
        key[klen] = '\0';
    }
    return (int64_t)v;
}

static void test_retention_and_starts(void)
{
    shmring_t *r = make_topic(16, 8, 4, 8, SHMRING_POLICY_BLOCK);
    shmring_participant_t *me;
    CHECK(shmring_participant_join(r, &me) == SHMRING_OK);
    for (uint64_t i = 0; i < 20; i++) /* no subscriber: never gated */
        CHECK(pub(me, "k", i) == 1);
    shmring_topic_sub_t *old, *late, *at, *gone;
    CHECK(shmring_topic_subscribe(me, SHMRING_START_OLDEST, 0, &old) == SHMRING_OK);
    CHECK(shmring_topic_subscribe(me, SHMRING_START_LATEST, 0, &late) == SHMRING_OK);
    CHECK(shmring_topic_subscribe(me, SHMRING_START_AT, 15, &at) == SHMRING_OK);
    CHECK(shmring_topic_subscribe(me, SHMRING_START_AT, 3, &gone) == SHMRING_OK);
    shmring_topic_sub_t *beyond;
    CHECK(shmring_topic_subscribe(me, SHMRING_START_AT, 21, &beyond) == SHMRING_EINVAL);
    CHECK(strstr(shmring_error_detail(), "start position 21 is out of range: 0 to 20, the stream's end") != NULL);
    CHECK(shmring_topic_position(old) == 12 && shmring_topic_position(late) == 20);
    CHECK(shmring_topic_lagged(gone) == 12 - 3 && shmring_topic_position(gone) == 12);
    for (int64_t i = 12; i < 20; i++) /* the last maxsize messages, in order */
        CHECK(recv_value(old, NULL) == i);
    CHECK(recv_value(old, NULL) == -1 && recv_value(late, NULL) == -1);
    for (int64_t i = 15; i < 20; i++)
        CHECK(recv_value(at, NULL) == i);
    CHECK(pub(me, "k", 20) == 0); /* block: gone, at 12, gates */
    for (int64_t i = 12; i < 20; i++)
        CHECK(recv_value(gone, NULL) == i);
    CHECK(pub(me, "k", 20) == 1);
    CHECK(recv_value(late, NULL) == 20 && recv_value(old, NULL) == 20 && recv_value(at, NULL) == 20);
    CHECK(shmring_topic_take_lag(gone) == 9 && shmring_topic_take_lag(gone) == 0);
    shmring_topic_stats_t st;
    shmring_topic_stats(r, &st);
    CHECK(st.published == 21 && st.holes == 0 && st.subscribers == 4 && !st.shut);
    shmring_topic_sub_info_t info;
    CHECK(shmring_topic_subscriber(r, 0, &info) == 1 && info.position == 21 && info.received == 9 && info.alive &&
          info.pid == getpid() && !info.detached);
    CHECK(shmring_topic_subscriber(r, 4, &info) == SHMRING_EINVAL);
    shmring_topic_unsubscribe(old);
    CHECK(shmring_topic_subscriber(r, 0, &info) == 0);
    shmring_topic_unsubscribe(late);
    shmring_topic_unsubscribe(at);
    shmring_topic_unsubscribe(gone);
    drop_topic(r);
}

static void test_filters(void)
{
    shmring_t *r = make_topic(16, 16, 4, 8, SHMRING_POLICY_BLOCK);
    shmring_participant_t *me;
    CHECK(shmring_participant_join(r, &me) == SHMRING_OK);
    shmring_topic_sub_t *a, *all, *empty;
    CHECK(shmring_topic_subscribe(me, SHMRING_START_LATEST, 0, &a) == SHMRING_OK);
    CHECK(shmring_topic_subscribe(me, SHMRING_START_LATEST, 0, &all) == SHMRING_OK);
    CHECK(shmring_topic_subscribe(me, SHMRING_START_LATEST, 0, &empty) == SHMRING_OK);
    CHECK(shmring_topic_filter(a, "a.", 2, 1) == SHMRING_OK && shmring_topic_filter(a, "a.", 2, 1) == SHMRING_OK);
    CHECK(shmring_topic_filter(a, "a.b", 3, 1) == SHMRING_OK); /* overlapping: still once each */
    CHECK(shmring_topic_filter(empty, "", 0, 1) == SHMRING_OK);
    CHECK(shmring_topic_filter(a, "123456789", 9, 1) == SHMRING_EINVAL); /* longer than any key */
    pub(me, "a.1", 1);
    pub(me, "b.1", 2);
    pub(me, "a.b", 3);
    pub(me, "", 4);
    char key[16];
    CHECK(recv_value(a, key) == 1 && strcmp(key, "a.1") == 0);
    CHECK(recv_value(a, key) == 3 && strcmp(key, "a.b") == 0);
    CHECK(recv_value(a, NULL) == -1);
    for (int64_t i = 1; i <= 4; i++)
        CHECK(recv_value(all, NULL) == i && recv_value(empty, NULL) == i);
    /* at run time: from the next message it has not received */
    CHECK(shmring_topic_filter(a, "a.", 2, 0) == SHMRING_OK && shmring_topic_filter(a, "b.", 2, 1) == SHMRING_OK);
    CHECK(shmring_topic_filter(a, "zz", 2, 0) == SHMRING_OK); /* one it has not: nothing */
    pub(me, "a.2", 5);
    pub(me, "b.2", 6);
    pub(me, "a.b2", 7);
    CHECK(recv_value(a, key) == 6 && strcmp(key, "b.2") == 0);
    CHECK(recv_value(a, key) == 7 && strcmp(key, "a.b2") == 0);
    /* its last prefix unsubscribed: nothing, not everything (finding 5) */
    CHECK(shmring_topic_filter(a, "a.b", 3, 0) == SHMRING_OK && shmring_topic_filter(a, "b.", 2, 0) == SHMRING_OK);
    pub(me, "b.3", 8);
    CHECK(recv_value(a, NULL) == -1);
    for (int64_t i = 5; i <= 8; i++)
        CHECK(recv_value(all, NULL) == i);
    shmring_topic_unsubscribe(a);
    shmring_topic_unsubscribe(all);
    shmring_topic_unsubscribe(empty);
    drop_topic(r);
}

static void test_block_gates_and_detaches(void)
{
    ONE_SUBSCRIBER(8, SHMRING_POLICY_BLOCK);
    for (uint64_t i = 0; i < 8; i++)
        CHECK(pub(me, "k", i) == 1);
    CHECK(pub(me, "k", 8) == 0); /* the subscriber is maxsize behind */
    shmring_span_t span;
    CHECK(shmring_topic_publish_claim(me, 4, &span) == 0);
    CHECK(shmring_topic_wait(me, NULL, NULL, SHMRING_WAIT_WRITABLE, 0, 10) == 0);
    CHECK(recv_value(s, NULL) == 0);
    CHECK(shmring_topic_wait(me, NULL, NULL, SHMRING_WAIT_WRITABLE, 0, 10) == 1);
    CHECK(shmring_topic_publish_claim(me, 4, &span) == 1 && span.pos == 8); /* room for one */
    CHECK(shmring_topic_publish_begin(me, &span) == 1);
    uint64_t v = 8;
    shmring_topic_fill(r, span.pos, "k", 1, &v, sizeof v);
    shmring_topic_publish_commit(me, &span, 1);
    /* the slow timeout: held at one gate position, timed by the caller's clock */
    uint64_t recheck, t = shmring_now_ns();
    CHECK(shmring_topic_unstick(me, NULL, NULL, SHMRING_WAIT_WRITABLE, t, &recheck) == 0 && recheck != 0);
    shmring_topic_set_slow_timeout(r, 1000000);
    CHECK(shmring_topic_unstick(me, NULL, NULL, SHMRING_WAIT_WRITABLE, t, &recheck) == 0 && recheck == t + 1000000);
    CHECK(shmring_topic_unstick(me, NULL, NULL, SHMRING_WAIT_WRITABLE, t + 2000000, &recheck) == 1);
    shmring_topic_stats_t st;
    shmring_topic_stats(r, &st);
    CHECK(st.detached == 1);
    for (uint64_t i = 9; i < 30; i++) /* nobody gates now */
        CHECK(pub(me, "k", i) == 1);
    /* its next call: the gap counted, resumed at the oldest retained (22) */
    CHECK(recv_value(s, NULL) == 22 && shmring_topic_lagged(s) == 22 - 1);
    CHECK(pub(me, "k", 30) == 1 && pub(me, "k", 31) == 0); /* it gates again: 22 + 1 + 8 */
    shmring_topic_unsubscribe(s);
    CHECK(pub(me, "k", 31) == 1);
    drop_topic(r);
}

static void test_overwrite_laps_with_an_exact_count(void)
{
    ONE_SUBSCRIBER(8, SHMRING_POLICY_OVERWRITE);
    for (uint64_t i = 0; i < 100; i++) /* never waits */
        CHECK(pub(me, "k", i) == 1);
    int64_t v, last = -1;
    uint64_t got = 0;
    while ((v = recv_value(s, NULL)) >= 0) {
        CHECK(v > last);
        last = v;
        got++;
    }
    CHECK(last == 99 && got + shmring_topic_lagged(s) == 100);
    CHECK(shmring_topic_lagged(s) == 100 - 8 + 8 / 4); /* jumped maxsize - maxsize / 4 behind the end */
    shmring_topic_unsubscribe(s);
    drop_topic(r);
}

static void test_shutdown(void)
{
    ONE_SUBSCRIBER(8, SHMRING_POLICY_BLOCK);
    pub(me, "k", 1);
    pub(me, "k", 2);
    shmring_topic_shutdown(r);
    shmring_span_t span;
    CHECK(shmring_topic_publish(me, "k", 1, "x", 1, &span) == SHMRING_ESHUTDOWN);
    CHECK(shmring_topic_wait(me, NULL, NULL, SHMRING_WAIT_WRITABLE, 0, 1) == 1);
    CHECK(recv_value(s, NULL) == 1 && recv_value(s, NULL) == 2);
    char k[8], d[16];
    uint32_t kl, l;
    uint64_t pos;
    CHECK(shmring_topic_recv(s, k, &kl, d, &l, &pos) == SHMRING_ESHUTDOWN);
    CHECK(shmring_topic_wait(me, s, NULL, SHMRING_WAIT_READABLE, 0, 1) == 1);
    shmring_topic_stats_t st;
    shmring_topic_stats(r, &st);
    CHECK(st.shut && st.published == 2);
    shmring_topic_unsubscribe(s);
    drop_topic(r);
}

static void test_dead_publisher_leaves_holes(void)
{
    shmring_t *r = make_topic(16, 8, 2, 4, SHMRING_POLICY_BLOCK);
    shmring_participant_t *me, *dying, *marking;
    CHECK(shmring_participant_join(r, &me) == SHMRING_OK);
    CHECK(shmring_participant_join(r, &dying) == SHMRING_OK);
    CHECK(shmring_participant_join(r, &marking) == SHMRING_OK);
    shmring_topic_sub_t *s;
    CHECK(shmring_topic_subscribe(me, SHMRING_START_LATEST, 0, &s) == SHMRING_OK);
    pub(me, "k", 0);
    shmring_span_t held, marked;
    CHECK(shmring_topic_publish_claim(dying, 2, &held) == 2); /* claimed, never marked */
    CHECK(shmring_topic_publish_claim(marking, 1, &marked) == 1 && shmring_topic_publish_begin(marking, &marked) == 1);
    pub(me, "k", 4);
    CHECK(recv_value(s, NULL) == 0 && recv_value(s, NULL) == -1); /* stuck behind the claim */
    uint64_t recheck, t = shmring_now_ns();
    shmring_set_recover_after(r, 1000000);
    CHECK(shmring_topic_unstick(me, s, NULL, SHMRING_WAIT_READABLE, t, &recheck) == 0 && recheck == t + 1000000);
    pid_t gone = dead_pid();
    make_dead(dying, gone);
    make_dead(marking, gone);
    CHECK(shmring_topic_unstick(me, s, NULL, SHMRING_WAIT_READABLE, t + 2000000, &recheck) == 1);
    CHECK(recv_value(s, NULL) == 4); /* the holes skipped */
    shmring_topic_stats_t st;
    shmring_topic_stats(r, &st);
    CHECK(st.holes == 3 && st.recoveries == 2 && st.published == 5);
    shmring_topic_unsubscribe(s);
    drop_topic(r);
}

static void test_dead_subscriber_stops_gating(void)
{
    shmring_t *r = make_topic(16, 4, 2, 4, SHMRING_POLICY_BLOCK);
    shmring_participant_t *me, *dying;
    CHECK(shmring_participant_join(r, &me) == SHMRING_OK);
    CHECK(shmring_participant_join(r, &dying) == SHMRING_OK);
    shmring_topic_sub_t *s, *s2, *again;
    CHECK(shmring_topic_subscribe(dying, SHMRING_START_LATEST, 0, &s) == SHMRING_OK);
    CHECK(shmring_topic_subscribe(dying, SHMRING_START_LATEST, 0, &s2) == SHMRING_OK);
    CHECK(shmring_topic_subscribe(me, SHMRING_START_LATEST, 0, &again) == SHMRING_EFULLSUBS && again == NULL);
    for (uint64_t i = 0; i < 4; i++)
        CHECK(pub(me, "k", i) == 1);
    CHECK(pub(me, "k", 4) == 0);
    make_dead(dying, dead_pid());
    uint64_t recheck, t = shmring_now_ns();
    shmring_set_recover_after(r, 1000000);
    CHECK(shmring_topic_unstick(me, NULL, NULL, SHMRING_WAIT_WRITABLE, t, &recheck) == 0);
    CHECK(shmring_topic_unstick(me, NULL, NULL, SHMRING_WAIT_WRITABLE, t + 2000000, &recheck) == 1);
    CHECK(pub(me, "k", 4) == 1);
    shmring_topic_stats_t st;
    shmring_topic_stats(r, &st);
    CHECK(st.subscribers == 0);
    CHECK(shmring_topic_subscribe(me, SHMRING_START_LATEST, 0, &again) == SHMRING_OK); /* its entries are free */
    shmring_topic_sub_free(s); /* the dead one's memory (its entries are not ours) */
    shmring_topic_sub_free(s2);
    shmring_topic_unsubscribe(again);
    drop_topic(r);
}

/* A subscriber whose owner left without unsubscribing (a thread that ended, a
 * participant entry reused without recovery) gates nobody, at once: no scan is
 * skipped on the ground that the slowest subscriber did not move. */
static void test_a_subscriber_whose_owner_left_gates_nobody(void)
{
    shmring_t *r = make_topic(16, 4, 2, 4, SHMRING_POLICY_BLOCK);
    shmring_participant_t *me, *leaving;
    CHECK(shmring_participant_join(r, &me) == SHMRING_OK);
    CHECK(shmring_participant_join(r, &leaving) == SHMRING_OK);
    shmring_topic_sub_t *s;
    CHECK(shmring_topic_subscribe(leaving, SHMRING_START_LATEST, 0, &s) == SHMRING_OK);
    for (uint64_t i = 0; i < 4; i++)
        CHECK(pub(me, "k", i) == 1);
    CHECK(pub(me, "k", 4) == 0); /* gated, the slowest cached */
    shmring_participant_leave(leaving);
    CHECK(shmring_topic_wait(me, NULL, NULL, SHMRING_WAIT_WRITABLE, 0, 10) == 1);
    CHECK(pub(me, "k", 4) == 1 && pub(me, "k", 5) == 1);
    shmring_topic_stats_t st;
    shmring_topic_stats(r, &st);
    CHECK(st.subscribers == 0);
    shmring_topic_sub_free(s);
    drop_topic(r);
}

/* A publisher whose claim passed the gate before a subscriber joined (start
 * oldest, cursor 0) and whose begin sees the new generation: begin refuses to
 * overwrite what the subscriber has still to read (finding 1); and a publisher
 * that dies holding such a claim does not turn the unread slot into a hole.
 * The claim's CAS is made to land after the subscriber's S2 by hand. */
static shmring_participant_t *claimed_before_an_oldest_subscriber(shmring_t *r, shmring_topic_sub_t **s,
                                                                  shmring_participant_t **me, shmring_span_t *span)
{
    shmring_participant_t *p;
    CHECK(shmring_participant_join(r, me) == SHMRING_OK);
    CHECK(shmring_participant_join(r, &p) == SHMRING_OK);
    for (uint64_t v = 0; v < 8; v++)
        CHECK(pub(p, "k", v) == 1);
    CHECK(shmring_topic_publish_claim(p, 1, span) == 1 && span->pos == 8); /* no subscriber: allowed */
    atomic_store(&r->seg->prod.write_pos, 8);                               /* its CAS not landed yet */
    CHECK(shmring_topic_subscribe(*me, SHMRING_START_OLDEST, 0, s) == SHMRING_OK);
    CHECK(shmring_topic_position(*s) == 0);
    atomic_store(&r->seg->prod.write_pos, 9); /* now it lands */
    return p;
}

static void test_begin_refuses_after_the_table_changed(void)
{
    shmring_t *r = make_topic(16, 8, 2, 4, SHMRING_POLICY_BLOCK);
    shmring_participant_t *me;
    shmring_topic_sub_t *s;
    shmring_span_t span;
    shmring_participant_t *p = claimed_before_an_oldest_subscriber(r, &s, &me, &span);
    CHECK(shmring_topic_publish_begin(p, &span) == 0);
    for (int64_t v = 0; v < 8; v++)
        CHECK(recv_value(s, NULL) == v);
    CHECK(shmring_topic_publish_begin(p, &span) == 1); /* room now */
    uint64_t v = 8;
    shmring_topic_fill(r, 8, "k", 1, &v, sizeof v);
    shmring_topic_publish_commit(p, &span, 1);
    CHECK(recv_value(s, NULL) == 8 && shmring_topic_lagged(s) == 0);
    shmring_topic_unsubscribe(s);
    drop_topic(r);
}

static void test_a_dead_claim_keeps_an_unread_slot(void)
{
    shmring_t *r = make_topic(16, 8, 2, 4, SHMRING_POLICY_BLOCK);
    shmring_participant_t *me;
    shmring_topic_sub_t *s;
    shmring_span_t span;
    shmring_participant_t *p = claimed_before_an_oldest_subscriber(r, &s, &me, &span);
    make_dead(p, dead_pid());
    uint64_t recheck, t = shmring_now_ns();
    shmring_set_recover_after(r, 1000000);
    shmring_topic_unstick(me, NULL, NULL, SHMRING_WAIT_WRITABLE, t, &recheck);
    shmring_topic_unstick(me, NULL, NULL, SHMRING_WAIT_WRITABLE, t + 2000000, &recheck);
    for (int64_t v = 0; v < 8; v++)
        CHECK(recv_value(s, NULL) == v); /* position 0 not made a hole under it */
    CHECK(shmring_topic_lagged(s) == 0);
    shmring_topic_unstick(me, s, NULL, SHMRING_WAIT_READABLE, t + 4000000, &recheck); /* stuck at 8 */
    shmring_topic_unstick(me, s, NULL, SHMRING_WAIT_READABLE, t + 6000000, &recheck);
    CHECK(recv_value(s, NULL) == -1); /* 8 is a hole now, skipped */
    shmring_topic_stats_t st;
    shmring_topic_stats(r, &st);
    CHECK(st.holes == 1);
    shmring_topic_unsubscribe(s);
    drop_topic(r);
}

/* After shutdown, a publisher that holds a claim made before it (waiting for
 * its slot's previous lap, or for a subscriber that joined after its claim)
 * is not ready until it may write: it sleeps instead of spinning (finding 4),
 * then writes and commits, and subscribers receive that message too before
 * they end. A waiter without a claim is ready at once (its claim fails). */
static int sleeps_for(shmring_participant_t *p, const shmring_span_t *span, uint64_t ns)
{
    uint64_t t = shmring_now_ns();
    return shmring_topic_wait(p, NULL, span, SHMRING_WAIT_WRITABLE, ns, 0) == 0 && shmring_now_ns() - t >= ns / 2;
}

static void commit_value(shmring_participant_t *p, const shmring_span_t *span, uint64_t v)
{
    CHECK(shmring_topic_publish_begin(p, span) == 1);
    shmring_topic_fill(p->ring, span->pos, "k", 1, &v, sizeof v);
    shmring_topic_publish_commit(p, span, 1);
}

static void test_a_pending_claim_waits_asleep_after_shutdown(void)
{
    /* behind a slot whose previous lap a live publisher has claimed and not committed */
    shmring_t *r = make_topic(16, 8, 2, 4, SHMRING_POLICY_BLOCK);
    shmring_participant_t *a, *b;
    shmring_topic_sub_t *s;
    shmring_span_t first, span;
    CHECK(shmring_participant_join(r, &a) == SHMRING_OK && shmring_participant_join(r, &b) == SHMRING_OK);
    CHECK(shmring_topic_publish_claim(a, 1, &first) == 1 && first.pos == 0);
    for (uint64_t v = 1; v < 8; v++)
        CHECK(pub(b, "k", v) == 1);
    uint64_t v = 8;
    CHECK(shmring_topic_publish(b, "k", 1, &v, sizeof v, &span) == SHMRING_TOPIC_PENDING && span.pos == 8);
    CHECK(shmring_topic_subscribe(b, SHMRING_START_OLDEST, 0, &s) == SHMRING_OK && shmring_topic_position(s) == 1);
    shmring_topic_shutdown(r);
    CHECK(shmring_topic_wait(b, NULL, &span, SHMRING_WAIT_WRITABLE, 0, 10) == 0);
    CHECK(sleeps_for(b, &span, 2000000));
    shmring_participant_t *c;
    shmring_span_t later;
    CHECK(shmring_participant_join(r, &c) == SHMRING_OK);
    CHECK(shmring_topic_wait(c, NULL, NULL, SHMRING_WAIT_WRITABLE, 0, 1) == 1); /* no claim: done at once */
    CHECK(shmring_topic_publish_claim(c, 1, &later) == SHMRING_ESHUTDOWN);
    CHECK(shmring_topic_publish_begin(b, &span) == 0);
    commit_value(a, &first, 0);
    CHECK(shmring_topic_wait(b, NULL, &span, SHMRING_WAIT_WRITABLE, 0, 1) == 1);
    commit_value(b, &span, 8);
    for (int64_t w = 1; w <= 8; w++)
        CHECK(recv_value(s, NULL) == w);
    char k[8], d[16];
    uint32_t kl, l;
    uint64_t pos;
    CHECK(shmring_topic_recv(s, k, &kl, d, &l, &pos) == SHMRING_ESHUTDOWN && shmring_topic_lagged(s) == 0);
    shmring_topic_unsubscribe(s);
    drop_topic(r);

    /* behind the gate: a subscriber (start oldest) joined after the claim */
    r = make_topic(16, 8, 2, 4, SHMRING_POLICY_BLOCK);
    shmring_participant_t *me;
    shmring_participant_t *p = claimed_before_an_oldest_subscriber(r, &s, &me, &span);
    CHECK(shmring_topic_publish_begin(p, &span) == 0);
    shmring_topic_shutdown(r);
    CHECK(shmring_topic_wait(p, NULL, &span, SHMRING_WAIT_WRITABLE, 0, 10) == 0);
    CHECK(sleeps_for(p, &span, 2000000));
    for (int64_t w = 0; w < 8; w++)
        CHECK(recv_value(s, NULL) == w);
    CHECK(shmring_topic_wait(p, NULL, &span, SHMRING_WAIT_WRITABLE, 0, 1) == 1);
    commit_value(p, &span, 8);
    CHECK(recv_value(s, NULL) == 8);
    CHECK(shmring_topic_recv(s, k, &kl, d, &l, &pos) == SHMRING_ESHUTDOWN && shmring_topic_lagged(s) == 0);
    shmring_topic_unsubscribe(s);
    drop_topic(r);
}

/* Subscribers whose process died, under overwrite (nothing waits, so nothing
 * recovers them): a subscribe() that finds the table full recovers them and
 * takes an entry (finding 3). */
static void test_subscribe_reclaims_dead_subscribers_entries(void)
{
    shmring_t *r = make_topic(16, 4, 2, 4, SHMRING_POLICY_OVERWRITE);
    shmring_participant_t *me, *dying;
    CHECK(shmring_participant_join(r, &me) == SHMRING_OK);
    CHECK(shmring_participant_join(r, &dying) == SHMRING_OK);
    shmring_topic_sub_t *s, *s2, *again = NULL;
    CHECK(shmring_topic_subscribe(dying, SHMRING_START_LATEST, 0, &s) == SHMRING_OK);
    CHECK(shmring_topic_subscribe(dying, SHMRING_START_LATEST, 0, &s2) == SHMRING_OK);
    CHECK(shmring_topic_subscribe(me, SHMRING_START_LATEST, 0, &again) == SHMRING_EFULLSUBS); /* alive: full */
    make_dead(dying, dead_pid());
    CHECK(shmring_topic_subscribe(me, SHMRING_START_LATEST, 0, &again) == SHMRING_OK && again != NULL);
    shmring_topic_sub_free(s);
    shmring_topic_sub_free(s2);
    shmring_topic_unsubscribe(again);
    drop_topic(r);
}

/* Publishing up to position base, fast-forwarded (write_pos moved there, the
 * last lap's words committed), then 4 messages, base to base + 3. */
static void fast_forward(shmring_participant_t *me, uint64_t base)
{
    shmring_t *r = me->ring;
    atomic_store(&r->seg->prod.write_pos, base);
    for (uint64_t q = base - 4; q < base; q++)
        shmring__seq_store(r, q, shmring__state(r, q, SHMRING_SEQ_COMMITTED), memory_order_release);
    for (uint64_t v = base; v < base + 4; v++)
        CHECK(pub(me, "k", v) == 1);
}

/* A subscriber lapped 2^29 laps or more (a slot word keeps the lap in 30 bits,
 * so it can pass for an earlier lap) counts the laps from the end it read, not
 * from the word (finding 8). The fast-forward stands for publishing 2^31 and
 * 2^32 messages: write_pos moved there, the last lap's words committed. */
static void test_a_lap_count_past_the_word_s_lap_field(void)
{
    ONE_SUBSCRIBER(4, SHMRING_POLICY_OVERWRITE);
    for (uint64_t v = 0; v < 4; v++)
        CHECK(pub(me, "k", v) == 1);
    for (int laps = 29; laps <= 30; laps++) {
        uint64_t base = (UINT64_C(1) << laps) * 4;
        fast_forward(me, base);
        shmring_topic_sub_t *t;
        CHECK(shmring_topic_subscribe(me, SHMRING_START_LATEST, 0, &t) == SHMRING_OK);
        t->cursor = 0; /* a subscriber that was at 0 all along */
        atomic_store(&t->entry->cursor, 0);
        CHECK(recv_value(t, NULL) == (int64_t)(base + 1) && shmring_topic_lagged(t) == base + 1);
        shmring_topic_unsubscribe(t);
    }
    shmring_topic_unsubscribe(s);
    drop_topic(r);
}

/* The word of the slot that holds p: is it state `code` of position q? */
static int word_is(shmring_t *r, uint64_t p, uint64_t q, uint32_t code)
{
    return shmring__seq_load(r, p, memory_order_acquire) == shmring__state(r, q, code);
}

/* A claim given up while its slot's previous lap is still being written by a
 * live publisher a lap behind (review 2, A): the slot is left to that
 * publisher, not overwritten with a hole it would then overwrite in turn
 * (position 4 was "not written yet" forever). Whoever is stuck behind it, a
 * subscriber there (overwrite) or a publisher a lap later (block, no
 * subscriber), makes it a hole once it can. */
static void test_a_given_up_claim_leaves_a_lap_being_written(void)
{
    for (int ow = 0; ow <= 1; ow++) {
        shmring_t *r = make_topic(16, 4, 2, 4, ow ? SHMRING_POLICY_OVERWRITE : SHMRING_POLICY_BLOCK);
        shmring_participant_t *a, *b;
        shmring_topic_sub_t *s = NULL;
        shmring_span_t first, given, later;
        CHECK(shmring_participant_join(r, &a) == SHMRING_OK && shmring_participant_join(r, &b) == SHMRING_OK);
        CHECK(shmring_topic_publish_claim(a, 1, &first) == 1 && shmring_topic_publish_begin(a, &first) == 1);
        for (uint64_t v = 1; v < 4; v++)
            CHECK(pub(b, "k", v) == 1);
        if (ow) /* from 4 (0 counts as lapped once 4 is claimed) */
            CHECK(shmring_topic_subscribe(b, SHMRING_START_LATEST, 0, &s) == SHMRING_OK);
        uint64_t v = 4;
        CHECK(shmring_topic_publish(b, "k", 1, &v, sizeof v, &given) == SHMRING_TOPIC_PENDING && given.pos == 4);
        shmring_topic_publish_commit(b, &given, 0); /* given up: a timeout */
        CHECK(word_is(r, 0, 0, SHMRING_SEQ_FREE));  /* still a's, being written */
        commit_value(a, &first, 0);
        uint64_t recheck, t = shmring_now_ns();
        if (ow) {
            CHECK(recv_value(s, NULL) == -1); /* at 4 */
            CHECK(shmring_topic_unstick(b, s, NULL, SHMRING_WAIT_READABLE, t, &recheck) == 1);
        }
        for (v = 5; v < 8; v++)
            CHECK(pub(b, "k", v) == 1);
        for (int64_t w = 5; ow && w < 8; w++)
            CHECK(recv_value(s, NULL) == w);
        v = 8;
        int rc = shmring_topic_publish(b, "k", 1, &v, sizeof v, &later);
        if (!ow) {
            CHECK(rc == SHMRING_TOPIC_PENDING && word_is(r, 0, 0, SHMRING_SEQ_COMMITTED));
            CHECK(shmring_topic_unstick(b, NULL, &later, SHMRING_WAIT_WRITABLE, t, &recheck) == 1);
            commit_value(b, &later, 8);
            CHECK(shmring_topic_subscribe(b, SHMRING_START_OLDEST, 0, &s) == SHMRING_OK);
            for (int64_t w = 5; w <= 8; w++)
                CHECK(recv_value(s, NULL) == w);
        } else {
            CHECK(rc == 1 && recv_value(s, NULL) == 8);
        }
        shmring_topic_stats_t st;
        shmring_topic_stats(r, &st);
        CHECK(st.holes == 1 && st.published == 9 && shmring_topic_lagged(s) == 0);
        shmring_topic_unsubscribe(s);
        drop_topic(r);
    }
}

/* Under block, a claim given up after the gate refused it (a subscriber that
 * joined after the claim has the slot's last lap still to read): that lap is
 * read, not lost; the position becomes a hole once the gate lets it be
 * written (review 2, A). */
static void test_a_given_up_claim_keeps_an_unread_slot(void)
{
    shmring_t *r = make_topic(16, 8, 2, 4, SHMRING_POLICY_BLOCK);
    shmring_participant_t *me;
    shmring_topic_sub_t *s;
    shmring_span_t span;
    shmring_participant_t *p = claimed_before_an_oldest_subscriber(r, &s, &me, &span);
    CHECK(shmring_topic_publish_begin(p, &span) == 0);
    shmring_topic_publish_commit(p, &span, 0); /* given up */
    CHECK(word_is(r, 8, 0, SHMRING_SEQ_COMMITTED));
    for (int64_t v = 0; v < 8; v++)
        CHECK(recv_value(s, NULL) == v);
    CHECK(recv_value(s, NULL) == -1); /* at 8 */
    uint64_t recheck;
    CHECK(shmring_topic_unstick(me, s, NULL, SHMRING_WAIT_READABLE, shmring_now_ns(), &recheck) == 1);
    CHECK(pub(p, "k", 9) == 1 && recv_value(s, NULL) == 9 && shmring_topic_lagged(s) == 0);
    shmring_topic_stats_t st;
    shmring_topic_stats(r, &st);
    CHECK(st.holes == 1);
    shmring_topic_unsubscribe(s);
    drop_topic(r);
}

/* Claims given up on two laps of one slot while an older lap is still being
 * written (review 3): 8 depends on 4, 4 on 0, and 4's own waiter has gone.
 * Once 0 is committed, whoever waits behind 8 (here a publisher a lap later)
 * settles the chain oldest first, each hole counted once; recovery of a dead
 * claim at 8 behind a given-up 4 does the same (it kept 8 pending forever). */
static void test_claims_given_up_on_two_laps_of_a_slot(void)
{
    for (int dead = 0; dead <= 1; dead++)
        for (int ow = 0; ow <= 1; ow++) {
            shmring_t *r = make_topic(16, 4, 2, 4, ow ? SHMRING_POLICY_OVERWRITE : SHMRING_POLICY_BLOCK);
            shmring_participant_t *a, *b, *c;
            shmring_topic_sub_t *s;
            shmring_span_t first, given, third, later;
            CHECK(shmring_participant_join(r, &a) == SHMRING_OK && shmring_participant_join(r, &b) == SHMRING_OK);
            CHECK(shmring_participant_join(r, &c) == SHMRING_OK);
            CHECK(shmring_topic_publish_claim(a, 1, &first) == 1 && shmring_topic_publish_begin(a, &first) == 1);
            for (uint64_t v = 1; v < 4; v++)
                CHECK(pub(b, "k", v) == 1);
            uint64_t v = 4;
            CHECK(shmring_topic_publish(b, "k", 1, &v, sizeof v, &given) == SHMRING_TOPIC_PENDING && given.pos == 4);
            shmring_topic_publish_commit(b, &given, 0); /* given up */
            for (v = 5; v < 8; v++)
                CHECK(pub(b, "k", v) == 1);
            if (dead) { /* claimed, never marked: its owner dies */
                CHECK(shmring_topic_publish_claim(c, 1, &third) == 1 && third.pos == 8);
            } else {
                v = 8;
                CHECK(shmring_topic_publish(b, "k", 1, &v, sizeof v, &third) == SHMRING_TOPIC_PENDING);
                shmring_topic_publish_commit(b, &third, 0); /* given up too */
            }
            for (v = 9; v < 12; v++)
                CHECK(pub(b, "k", v) == 1);
            CHECK(word_is(r, 0, 0, SHMRING_SEQ_FREE)); /* still a's: 4 and 8 left as they are */
            commit_value(a, &first, 0);
            v = 12;
            CHECK(shmring_topic_publish(b, "k", 1, &v, sizeof v, &later) == SHMRING_TOPIC_PENDING && later.pos == 12);
            CHECK(word_is(r, 0, 0, SHMRING_SEQ_COMMITTED));
            uint64_t recheck, t = shmring_now_ns();
            if (dead) {
                shmring_set_recover_after(r, 1000000);
                CHECK(shmring_topic_unstick(b, NULL, &later, SHMRING_WAIT_WRITABLE, t, &recheck) == 0);
                make_dead(c, dead_pid());
                CHECK(shmring_topic_unstick(b, NULL, &later, SHMRING_WAIT_WRITABLE, t + 2000000, &recheck) == 1);
            } else {
                CHECK(shmring_topic_unstick(b, NULL, &later, SHMRING_WAIT_WRITABLE, t, &recheck) == 1);
            }
            CHECK(word_is(r, 8, 8, SHMRING_SEQ_HOLE));
            shmring_topic_stats_t st;
            shmring_topic_stats(r, &st);
            CHECK(st.holes == 2);
            commit_value(b, &later, 12);
            CHECK(shmring_topic_subscribe(b, SHMRING_START_OLDEST, 0, &s) == SHMRING_OK);
            for (int64_t w = 9; w <= 12; w++)
                CHECK(recv_value(s, NULL) == w);
            shmring_topic_stats(r, &st);
            CHECK(st.holes == 2 && st.published == 13 && shmring_topic_lagged(s) == 0);
            shmring_topic_unsubscribe(s);
            drop_topic(r);
        }
}

/* As test_a_lap_count_past_the_word_s_lap_field, for a subscriber that
 * stopped part-way through a backlog: the end it cached in an earlier call is
 * not trusted for the lap check once the time those laps take has passed
 * (review 2, B; it waited forever at 2^29 laps and handed later messages out
 * as earlier positions at 2^30). Within END_TRUSTED_NS it is (review 3: a
 * reload per call cost a line transfer per message of a backlog). */
static void test_a_lap_count_from_an_end_cached_by_an_earlier_call(void)
{
    for (int laps = 29; laps <= 30; laps++) {
        ONE_SUBSCRIBER(4, SHMRING_POLICY_OVERWRITE);
        for (uint64_t v = 0; v < 4; v++)
            CHECK(pub(me, "k", v) == 1);
        CHECK(recv_value(s, NULL) == 0); /* the end cached: 4 */
        CHECK(recv_value(s, NULL) == 1 && s->end_checked_at != 0); /* short of it: read again, timed */
        uint64_t base = (UINT64_C(1) << laps) * 4;
        fast_forward(me, base);
        /* the pause those laps take, past END_TRUSTED_NS (topic.c): the next
         * call reads the end again */
        s->end_checked_at -= UINT64_C(2000000000);
        CHECK(shmring_topic_wait(me, s, NULL, SHMRING_WAIT_READABLE, 0, 1) == 1);
        CHECK(recv_value(s, NULL) == (int64_t)(base + 1) && shmring_topic_lagged(s) == base - 1);
        shmring_topic_unsubscribe(s);
        drop_topic(r);
    }
}

/* A hostile segment (review 2, D): a word committed at the end, or write_pos
 * lowered below a cursor, gives an idle wait or SHMRING_ECORRUPT, never a
 * wait that ends at once with nothing to receive (a busy loop); a jump never
 * goes past the end. */
static void test_a_scribbled_end_gives_an_idle_wait_or_an_error(void)
{
    char k[8], d[16];
    uint32_t kl, l;
    uint64_t pos;
    for (int ow = 0; ow <= 1; ow++) {
        uint32_t policy = ow ? SHMRING_POLICY_OVERWRITE : SHMRING_POLICY_BLOCK;
        {
            ONE_SUBSCRIBER(8, policy);
            shmring__seq_store(r, 0, shmring__state(r, 0, SHMRING_SEQ_COMMITTED), memory_order_release);
            CHECK(recv_value(s, NULL) == -1);
            CHECK(shmring_topic_wait(me, s, NULL, SHMRING_WAIT_READABLE, 0, 10) == 0);
            shmring_topic_unsubscribe(s);
            drop_topic(r);
        }
        {
            ONE_SUBSCRIBER(16, policy);
            for (uint64_t v = 0; v < 10; v++)
                CHECK(pub(me, "k", v) == 1);
            for (int64_t v = 0; v < 10; v++)
                CHECK(recv_value(s, NULL) == v);
            atomic_store(&r->seg->prod.write_pos, 5);
            CHECK(recv_value(s, NULL) == -1);
            CHECK(shmring_topic_wait(me, s, NULL, SHMRING_WAIT_READABLE, 0, 10) == 0); /* idle */
            shmring_topic_shutdown(r);
            CHECK(shmring_topic_wait(me, s, NULL, SHMRING_WAIT_READABLE, 0, 1) == 1);
            CHECK(shmring_topic_recv(s, k, &kl, d, &l, &pos) == SHMRING_ECORRUPT); /* was 0, and ready: a spin */
            shmring_topic_unsubscribe(s);
            drop_topic(r);
        }
    }
    /* a word of a later lap while the end is within maxsize / 4: the jump stops at the end */
    ONE_SUBSCRIBER(8, SHMRING_POLICY_OVERWRITE);
    CHECK(pub(me, "k", 0) == 1);
    shmring__seq_store(r, 0, shmring__state(r, 16, SHMRING_SEQ_COMMITTED), memory_order_release);
    CHECK(recv_value(s, NULL) == -1 && shmring_topic_position(s) == 1 && shmring_topic_lagged(s) == 1);
    CHECK(pub(me, "k", 7) == 1 && recv_value(s, NULL) == 7);
    shmring_topic_unsubscribe(s);
    drop_topic(r);
}

/* subscribe() on a full table whose only entry is a dead participant's that
 * also left a publish claim still pending (its slot's previous lap is being
 * written): recovery freed the entry, so the first subscribe() takes it
 * (review 2, G: it said SHMRING_EFULLSUBS, and only the second succeeded). */
static void test_subscribe_takes_the_entry_of_a_dead_participant_with_a_pending_claim(void)
{
    shmring_t *r = make_topic(16, 4, 1, 4, SHMRING_POLICY_OVERWRITE);
    shmring_participant_t *a, *me, *dying;
    shmring_topic_sub_t *s, *again = NULL;
    shmring_span_t first, held;
    CHECK(shmring_participant_join(r, &a) == SHMRING_OK && shmring_participant_join(r, &me) == SHMRING_OK &&
          shmring_participant_join(r, &dying) == SHMRING_OK);
    CHECK(shmring_topic_publish_claim(a, 1, &first) == 1 && shmring_topic_publish_begin(a, &first) == 1);
    CHECK(shmring_topic_subscribe(dying, SHMRING_START_LATEST, 0, &s) == SHMRING_OK);
    for (uint64_t v = 1; v < 4; v++)
        CHECK(pub(me, "k", v) == 1);
    uint64_t v = 4;
    CHECK(shmring_topic_publish(dying, "k", 1, &v, sizeof v, &held) == SHMRING_TOPIC_PENDING);
    make_dead(dying, dead_pid());
    CHECK(shmring_topic_subscribe(me, SHMRING_START_LATEST, 0, &again) == SHMRING_OK && again != NULL);
    commit_value(a, &first, 0);
    shmring_topic_sub_free(s);
    shmring_topic_unsubscribe(again);
    drop_topic(r);
}

/* A records topic (review 2, E): publish refuses a payload that is not one
 * record; a slot of another length (a hostile peer) is SHMRING_ECORRUPT in its
 * turn, after the records before it, not skipped without a count. */
static void test_a_records_topic_refuses_and_reports_other_lengths(void)
{
    snprintf(ring_name, sizeof ring_name, "/shmring-ttest-%d", (int)getpid());
    shmring_unlink(ring_name);
    shmring_params_t prm = {.slot_size = 8, .maxsize = 8, .kind = SHMRING_KIND_TOPIC, .max_participants = 8,
                            .mode = 0600, .records = 1, .schema = "{}", .max_subscribers = 2,
                            .max_topic_len = 4, .policy = SHMRING_POLICY_BLOCK};
    shmring_t *r = NULL;
    CHECK(shmring_create(ring_name, &prm, &r) == SHMRING_OK);
    shmring_participant_t *me;
    shmring_topic_sub_t *s;
    shmring_span_t span;
    CHECK(shmring_participant_join(r, &me) == SHMRING_OK);
    CHECK(shmring_topic_subscribe(me, SHMRING_START_LATEST, 0, &s) == SHMRING_OK);
    uint64_t recs[4] = {10, 11, 12, 13}, out[4];
    CHECK(shmring_topic_publish(me, "k", 1, recs, 4, &span) == SHMRING_ERECORD);
    CHECK(shmring_topic_publish(me, "k", 1, recs, 0, &span) == SHMRING_ERECORD);
    for (int i = 0; i < 3; i++)
        CHECK(shmring_topic_publish(me, "k", 1, &recs[i], 8, &span) == 1);
    atomic_store((_Atomic uint32_t *)shmring__len(r, 1), 4); /* position 1: half a record */
    CHECK(shmring_topic_recv_records(s, out, 4) == 1 && out[0] == 10);
    CHECK(shmring_topic_recv_records(s, out, 4) == SHMRING_ECORRUPT);
    CHECK(shmring_topic_recv_records(s, out, 4) == 1 && out[0] == 12);
    CHECK(shmring_topic_publish(me, "k", 1, &recs[3], 8, &span) == 1);
    atomic_store((_Atomic uint32_t *)shmring__len(r, 3), 4);
    char k[8];
    uint32_t kl, l;
    uint64_t pos;
    CHECK(shmring_topic_recv(s, k, &kl, out, &l, &pos) == SHMRING_ECORRUPT && pos == 3);
    shmring_topic_unsubscribe(s);
    drop_topic(r);
}

static void test_unit(void)
{
    test_retention_and_starts();
    test_filters();
    test_block_gates_and_detaches();
    test_overwrite_laps_with_an_exact_count();
    test_shutdown();
    test_dead_publisher_leaves_holes();
    test_dead_subscriber_stops_gating();
    test_a_subscriber_whose_owner_left_gates_nobody();
    test_begin_refuses_after_the_table_changed();
    test_a_dead_claim_keeps_an_unread_slot();
    test_a_pending_claim_waits_asleep_after_shutdown();
    test_subscribe_reclaims_dead_subscribers_entries();
    test_a_lap_count_past_the_word_s_lap_field();
    test_a_given_up_claim_leaves_a_lap_being_written();
    test_a_given_up_claim_keeps_an_unread_slot();
    test_claims_given_up_on_two_laps_of_a_slot();
    test_a_lap_count_from_an_end_cached_by_an_earlier_call();
    test_a_scribbled_end_gives_an_idle_wait_or_an_error();
    test_subscribe_takes_the_entry_of_a_dead_participant_with_a_pending_claim();
    test_a_records_topic_refuses_and_reports_other_lengths();
    printf("topic unit ok\n");
}

/* ---- stress: threads ---- */

struct tmsg {
    uint32_t publisher, filler;
    uint64_t seq, check;
};

static uint64_t checksum(const struct tmsg *m)
{
    return (m->seq * UINT64_C(0x9e3779b97f4a7c15)) ^ ((uint64_t)m->publisher << 32 | m->filler);
}

static shmring_t *stress;
static int n_pubs, overwrite;
static uint64_t per_pub;
static _Atomic int pubs_done;

static void wait_slice(shmring_participant_t *me, shmring_topic_sub_t *s, const shmring_span_t *span, int what)
{
    uint64_t recheck;
    CHECK(shmring_topic_wait(me, s, span, what, 10000000, 200) >= 0);
    shmring_topic_unstick(me, s, span, what, 0, &recheck);
}

static void *publisher(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    shmring_participant_t *me;
    CHECK(shmring_participant_join(stress, &me) == SHMRING_OK);
    unsigned seed = id * 7919u + 1;
    char key[8];
    int klen = snprintf(key, sizeof key, "p%u", id);
    uint64_t next = 0;
    while (next < per_pub) {
        uint32_t want = 1 + (uint32_t)(rand_r(&seed) % 16);
        if (want > per_pub - next)
            want = (uint32_t)(per_pub - next);
        shmring_span_t span;
        int n = shmring_topic_publish_claim(me, want, &span);
        CHECK(n >= 0);
        if (n == 0) {
            CHECK(!overwrite);
            wait_slice(me, NULL, NULL, SHMRING_WAIT_WRITABLE);
            continue;
        }
        while (!shmring_topic_publish_begin(me, &span))
            wait_slice(me, NULL, &span, SHMRING_WAIT_WRITABLE);
        for (uint32_t i = 0; i < span.n; i++) {
            struct tmsg m = {.publisher = id, .filler = rand_r(&seed), .seq = next++};
            m.check = checksum(&m);
            shmring_topic_fill(stress, span.pos + i, key, (uint32_t)klen, &m, sizeof m);
        }
        shmring_topic_publish_commit(me, &span, span.n);
    }
    shmring_participant_leave(me);
    if (atomic_fetch_add(&pubs_done, 1) + 1 == n_pubs)
        shmring_topic_shutdown(stress);
    return NULL;
}

struct sub_arg {
    shmring_topic_sub_t *sub;
    shmring_participant_t *me;
    int filtered; /* on publisher `filtered - 1` */
};

static void *subscriber(void *arg)
{
    struct sub_arg *a = arg;
    uint64_t *next = calloc((size_t)n_pubs, sizeof *next), got = 0;
    for (;;) {
        char key[8];
        struct tmsg m;
        uint32_t klen, len;
        uint64_t pos;
        int rc = shmring_topic_recv(a->sub, key, &klen, &m, &len, &pos);
        if (rc == SHMRING_ESHUTDOWN)
            break;
        CHECK(rc >= 0);
        if (rc == 0) {
            wait_slice(a->me, a->sub, NULL, SHMRING_WAIT_READABLE);
            continue;
        }
        CHECK(len == sizeof m && m.publisher < (uint32_t)n_pubs && m.check == checksum(&m)); /* never torn */
        char want[8];
        int wl = snprintf(want, sizeof want, "p%u", m.publisher);
        CHECK((int)klen == wl && memcmp(key, want, klen) == 0);
        if (overwrite)
            CHECK(m.seq >= next[m.publisher]); /* in order, maybe with gaps */
        else
            CHECK(m.seq == next[m.publisher]); /* in order, none lost */
        next[m.publisher] = m.seq + 1;
        got++;
    }
    uint64_t total = per_pub * (uint64_t)n_pubs;
    if (a->filtered)
        CHECK(got == per_pub && next[a->filtered - 1] == per_pub);
    else if (overwrite)
        CHECK(got + shmring_topic_lagged(a->sub) == total); /* exact */
    else
        CHECK(got == total && shmring_topic_lagged(a->sub) == 0);
    free(next);
    return NULL;
}

static void test_stress(int np, int ns, uint64_t n, uint64_t maxsize, int ow)
{
    n_pubs = np;
    per_pub = n;
    overwrite = ow;
    stress = make_topic(sizeof(struct tmsg), maxsize, 64, 4,
                        ow ? SHMRING_POLICY_OVERWRITE : SHMRING_POLICY_BLOCK);
    pthread_t th[64];
    struct sub_arg subs[32];
    CHECK(np + ns <= 64 && ns <= 32);
    for (int i = 0; i < ns; i++) {
        CHECK(shmring_participant_join(stress, &subs[i].me) == SHMRING_OK);
        CHECK(shmring_topic_subscribe(subs[i].me, SHMRING_START_LATEST, 0, &subs[i].sub) == SHMRING_OK);
        subs[i].filtered = !ow && i % 3 == 2 ? 1 + i % np : 0;
        if (subs[i].filtered) {
            char key[8];
            int klen = snprintf(key, sizeof key, "p%d", subs[i].filtered - 1);
            CHECK(shmring_topic_filter(subs[i].sub, key, (uint32_t)klen, 1) == SHMRING_OK);
        }
        pthread_create(&th[i], NULL, subscriber, &subs[i]);
    }
    for (int i = 0; i < np; i++)
        pthread_create(&th[ns + i], NULL, publisher, (void *)(uintptr_t)i);
    for (int i = 0; i < np + ns; i++)
        pthread_join(th[i], NULL);
    shmring_topic_stats_t st;
    shmring_topic_stats(stress, &st);
    CHECK(st.published == n * (uint64_t)np && st.holes == 0 && st.shut);
    uint64_t lagged = 0;
    for (int i = 0; i < ns; i++) {
        lagged += shmring_topic_lagged(subs[i].sub);
        shmring_topic_unsubscribe(subs[i].sub);
        shmring_participant_leave(subs[i].me);
    }
    drop_topic(stress);
    printf("topic stress ok: %d publishers x %d subscribers, %llu messages, maxsize %llu, %s, %llu lagged\n", np, ns,
           (unsigned long long)(n * (uint64_t)np), (unsigned long long)maxsize, ow ? "overwrite" : "block",
           (unsigned long long)lagged);
}

static void remove_ring(void)
{
    if (ring_name[0])
        shmring_unlink(ring_name); /* also when a CHECK fails */
}

int main(int argc, char **argv)
{
    atexit(remove_ring);
    if (argc == 2 && strcmp(argv[1], "unit") == 0) {
        test_unit();
        return 0;
    }
    if (argc == 7 && strcmp(argv[1], "stress") == 0) {
        test_stress(atoi(argv[2]), atoi(argv[3]), strtoull(argv[4], NULL, 10), strtoull(argv[5], NULL, 10),
                    strcmp(argv[6], "overwrite") == 0);
        return 0;
    }
    fprintf(stderr, "usage: %s unit | stress P S N MAXSIZE block|overwrite\n", argv[0]);
    return 2;
}
