"""Regression tests for the hostile review of shmring.Topic (one per finding; the
C ones are in tests/c/test_topic.c)."""
import multiprocessing as mp
import threading
import time

import pytest

import shmring
from conftest import start_stalled_publisher, wait_until

pytestmark = pytest.mark.timeout(60)


def test_filtering_a_subscriber_after_its_topic_closed_is_refused(make_topic):
    # finding 2: it reached shmring_topic_filter on the freed ring
    topic = make_topic(8, 16)
    sub = topic.subscribe(b"a")
    topic.close()
    with pytest.raises(shmring.QueueClosed, match="closed"):
        sub.subscribe(b"b")
    with pytest.raises(shmring.QueueClosed, match="closed"):
        sub.unsubscribe(b"a")
    with pytest.raises(shmring.QueueClosed, match="closed"):
        sub.recv(block=False)


def _scribble(topic, fmt, value, at=None, slot=None, field=0):
    """Write value (struct fmt) into topic's segment, as a hostile peer: at offset
    `at`, or into slot `slot`'s word (field 0) or its length (field 4)."""
    import mmap
    import os
    import struct

    fd = os.open(f"/dev/shm/{topic.name}", os.O_RDWR)
    try:
        m = mmap.mmap(fd, 0)
    finally:
        os.close(fd)
    try:
        struct.pack_into(fmt, m, at if slot is None else struct.unpack_from("<Q", m, 72)[0] + slot * 8 + field, value)
    finally:
        m.close()


def test_recv_many_keeps_what_it_took_when_a_later_message_is_corrupt(make_topic):
    # finding 6: a bad slot after the first message lost the ones already taken
    topic = make_topic(8, 64)
    pub, sub = topic.publisher(), topic.subscribe()
    for i in range(3):
        pub.publish_bytes(b"k", b"m%d" % i)
    _scribble(topic, "<I", 65, slot=1, field=4)  # position 1: length 65 > msg_size 64
    assert sub.recv_many_bytes(10, timeout=1) == [(b"k", b"m0")]
    with pytest.raises(shmring.ShmringError):
        sub.recv_many_bytes(10, timeout=1)
    assert sub.recv_many_bytes(10, timeout=1) == [(b"k", b"m2")]


def test_a_lagged_recv_array_into_out_hands_its_records_to_the_next_out(make_topic):
    # finding 7: the next call returned the held count, but its own out= was not filled
    np = pytest.importorskip("numpy")
    dt = np.dtype([("x", "<i8")])
    topic = make_topic(4, dtype=dt, policy="overwrite")
    pub, sub = topic.publisher(), topic.subscribe()
    sub.on_lag = "raise"
    arr = np.zeros(10, dtype=dt)
    arr["x"] = np.arange(10)
    pub.publish_array(arr)
    first, second = np.zeros(8, dtype=dt), np.full(8, -1, dtype=dt)
    with pytest.raises(shmring.Lagged) as e:
        sub.recv_array(out=first, timeout=1)
    missed = e.value.count
    n = sub.recv_array(out=second, timeout=1)
    assert n >= 1 and second["x"][:n].tolist() == list(range(missed, missed + n))
    assert missed + n == 10


# finding 4: after shutdown(), a publisher waiting with a claim it still had to write
# spun at a whole core (ready_at answered "ready" to every writer once shut down)

def _call_in_thread(call):
    """Run call() in a thread: (thread, result), result["outcome"] once it ended."""
    result = {}

    def run():
        try:
            call()
            result["outcome"] = "returned"
        except BaseException as e:  # noqa: B036 - reported to the test
            result["outcome"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, result


def _cpu_share_while_blocked(th, seconds):
    """CPU time this process used over `seconds` of wall time (as a share of
    it), while th stays blocked: the blocked call is all that runs here."""
    c0, t0 = time.process_time(), time.monotonic()
    th.join(seconds)  # a window to measure over, not a synchronisation: nothing ends th here
    share = (time.process_time() - c0) / (time.monotonic() - t0)
    assert th.is_alive(), "the call ended on its own"
    return share


def _shut_down(topic):
    topic.shutdown()


def test_a_publisher_held_at_the_gate_ends_with_shutdown_from_another_process_without_spinning(make_topic):
    topic = make_topic(8, 16)
    sub = topic.subscribe()  # stalled: never reads
    pub = topic.publisher()
    for i in range(8):
        pub.publish_bytes(b"k", b"m%d" % i)
    th, result = _call_in_thread(lambda: pub.publish_bytes(b"k", b"held", timeout=30))
    wait_until(lambda: topic.stats()["writers_waiting"] >= 1, what="the publisher asleep at the gate")
    assert _cpu_share_while_blocked(th, 0.5) < 0.2
    shutter = mp.get_context("fork").Process(target=_shut_down, args=(topic,))
    shutter.start()
    shutter.join(10)
    assert shutter.exitcode == 0
    t0 = time.monotonic()
    th.join(10)
    assert not th.is_alive() and time.monotonic() - t0 < 5
    assert isinstance(result["outcome"], shmring.ShutDown)
    assert [sub.recv_bytes(timeout=1) for _ in range(8)] == [(b"k", b"m%d" % i) for i in range(8)]
    with pytest.raises(shmring.ShutDown):
        sub.recv_bytes(timeout=1)


def test_a_pending_claim_sleeps_after_shutdown_and_its_message_is_delivered(make_topic):
    topic = make_topic(8, 16, recover_after=0.05)
    child = start_stalled_publisher(topic)  # claims position 0, never writes it
    try:
        pub = topic.publisher()
        for i in range(1, 8):
            pub.publish_bytes(b"k", b"m%d" % i)
        # position 8 reuses slot 0, which the live child claimed and has not written:
        # this claim is pending until it has
        th, result = _call_in_thread(lambda: pub.publish_bytes(b"k", b"m8", timeout=30))
        wait_until(lambda: topic.stats()["published"] == 9, what="the pending claim of position 8")
        sub = topic.subscribe(start="oldest")  # position 1 on
        threading.Thread(target=topic.shutdown).start()
        wait_until(lambda: topic.stats()["shut_down"], what="the shut-down")
        assert _cpu_share_while_blocked(th, 1.0) < 0.2  # was 0.99: it spun
        child.kill()  # its claim becomes a hole: position 8 may be written
        child.wait(10)
        t0 = time.monotonic()
        th.join(10)
        assert not th.is_alive() and time.monotonic() - t0 < 5
        assert result["outcome"] == "returned"  # claimed before the shut-down: published
        assert [sub.recv_bytes(timeout=5) for _ in range(8)] == [(b"k", b"m%d" % i) for i in range(1, 9)]
        with pytest.raises(shmring.ShutDown):
            sub.recv_bytes(timeout=1)
        with pytest.raises(shmring.ShutDown):
            pub.publish_bytes(b"k", b"later")
    finally:
        child.kill()
        child.wait(10)


# finding 9: small API points of Topic, Subscriber and Publisher

@pytest.mark.parametrize("bad, exc, match", [
    (b"toolong", shmring.InvalidArgument, r"prefix of 7 bytes is longer than this topic's max_topic_len of 4 bytes"),
    ("\u00e9\u00e9\u00e9", shmring.InvalidArgument, r"prefix of 6 bytes is longer than this topic's max_topic_len"),
    (5, TypeError, r"a prefix is bytes or str, got int"),
    ([b"a"], TypeError, r"a prefix is bytes or str, got list"),
    (None, TypeError, r"a prefix is bytes or str, got NoneType"),
])
def test_subscribe_with_a_bad_prefix_raises_before_taking_a_subscriber_entry(make_topic, bad, exc, match):
    topic = make_topic(8, 16, max_topic_len=4, max_subscribers=2)
    pub = topic.publisher()
    with pytest.raises(exc, match=match) as refused:  # keeps the traceback, and its frames, alive
        topic.subscribe(b"ok", bad)
    assert topic.stats()["subscribers"] == []
    pub.publish_bytes(b"ok", b"before")
    subs = [topic.subscribe(b"ok") for _ in range(2)]  # max_subscribers, still all free
    for i in range(10):  # more than the capacity: no entry left behind gates the publisher
        pub.publish_bytes(b"ok", b"m%d" % i, timeout=5)
        assert [s.recv_bytes(timeout=1) for s in subs] == [(b"ok", b"m%d" % i)] * 2
    assert refused.value is not None


def test_pickling_a_subscriber_a_publisher_or_their_calls_names_the_rule(make_topic):
    import copy
    import pickle
    import re

    topic = make_topic(8, 16)
    sub, pub = topic.subscribe(), topic.publisher()
    rule = r"is made in the process that uses it: pass the Topic \(it pickles\) and call {} there"
    objects = [(sub, "topic.subscribe()"), (sub._sub, "topic.subscribe()"), (pub, "topic.publisher()")]
    # a Subscriber's calls are its subscription's bound methods (multiprocessing pickles a
    # target's arguments, and a callback may be one of them)
    calls = [(getattr(sub, name), "topic.subscribe()") for name in shmring.Subscriber._calls]
    for obj, made in objects + calls:
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            with pytest.raises(TypeError, match=rule.format(re.escape(made))):
                pickle.dumps(obj, protocol)
    for obj, made in objects:
        with pytest.raises(TypeError, match=rule.format(re.escape(made))):
            copy.copy(obj)
    with pytest.raises(TypeError, match=rule.format(re.escape("topic.subscribe()"))):
        mp.reduction.ForkingPickler.dumps([sub.recv_bytes])
    pub.publish_bytes(b"k", b"still works")
    assert sub.recv_bytes(timeout=1) == (b"k", b"still works")


def test_a_start_position_out_of_range_is_a_value_error_naming_it_and_the_range(make_topic):
    topic = make_topic(8, 16, max_subscribers=1)
    pub = topic.publisher()
    for i in range(20):
        pub.publish_bytes(b"k", b"m%d" % i)
    for bad in (2**64, 2**64 + 5, 10**30, 2**64 - 1, 2**63, 21, -1, -2**70):
        with pytest.raises(ValueError, match=rf"start position {bad} is out of range: 0 to 20, the stream's end"):
            topic.subscribe(start=bad)
        assert topic.stats()["subscribers"] == []
    with topic.subscribe(start=20) as sub:  # the end: allowed, and the entry was free
        pub.publish_bytes(b"k", b"m20")
        assert sub.recv_bytes(timeout=1) == (b"k", b"m20")
    with topic.subscribe(start=0) as sub:  # retained no longer: from the oldest, the gap counted
        assert sub.recv_bytes(timeout=1) == (b"k", b"m13") and sub.lagged == 13


def test_a_topic_s_errors_name_the_topic_and_its_limits_not_a_queue_s(make_topic):
    import pickle

    topic = make_topic(8, 16, max_topic_len=4)
    pub = topic.publisher()
    for publish in (lambda: pub.publish_bytes(b"k", b"x" * 17), lambda: pub.publish(b"k", b"x" * 17),
                    lambda: pub.publish_many_bytes([(b"k", b"ok"), (b"k", b"x" * 17)]),
                    lambda: pub.publish_many([(b"k", 1), (b"k", b"x" * 17)])):
        with pytest.raises(shmring.MessageTooLarge, match=r"is \d+ bytes, larger than this topic's msg_size of 16 "
                                                          r"bytes .*max_topic_len, 4 bytes") as e:
            publish()
        assert "queue" not in str(e.value)
        assert str(pickle.loads(pickle.dumps(e.value))) == str(e.value)  # multiprocessing hands it back so
    assert topic.stats()["published"] == 0  # nothing of a refused batch was published
    with pytest.raises(shmring.OutOfMemory, match=r"capacity 1048576 of msg_size 1048576 bytes needs") as e:
        shmring.Topic(2**20, 2**20)
    assert "maxsize" not in str(e.value)


def test_a_records_topic_s_errors_say_publish_and_topic(make_topic):
    np = pytest.importorskip("numpy")
    dt = np.dtype([("x", "<i8")])
    topic = make_topic(8, dtype=dt)
    pub, sub = topic.publisher(), topic.subscribe()
    with pytest.raises(TypeError, match=r"record of dtype int32 given to a topic of \[\('x', '<i8'\)\]"):
        pub.publish(b"k", np.int32(1))
    with pytest.raises(ValueError, match=r"publish\(\) takes one record .* use publish_array\(\) for many"):
        pub.publish(b"k", np.zeros(2, dt))
    with pytest.raises(TypeError, match=r"array of dtype int32 given to a topic of"):
        pub.publish_array(np.zeros(2, np.int32))
    with pytest.raises(TypeError, match=r"array of dtype int32 given to a topic of"):
        sub.recv_array(out=np.zeros(2, np.int32), timeout=0)
    assert topic.stats()["published"] == 0


def test_publishing_from_a_signal_handler_while_a_claim_waits_says_topic(make_topic):
    import signal

    topic = make_topic(8, 16, recover_after=0.05)
    pub = topic.publisher()

    def handler(signum, frame):
        pub.publish_bytes(b"k", b"from the handler")

    child = start_stalled_publisher(topic)  # claims position 0, never writes it
    old = signal.signal(signal.SIGUSR1, handler)
    try:
        for i in range(1, 8):
            pub.publish_bytes(b"k", b"m%d" % i)
        me = threading.get_ident()
        threading.Thread(target=lambda: (wait_until(lambda: topic.stats()["published"] == 9, what="the claim"),
                                         signal.pthread_kill(me, signal.SIGUSR1))).start()
        with pytest.raises(RuntimeError, match=r"this thread holds a claim on the topic") as e:
            pub.publish_bytes(b"k", b"m8", timeout=30)  # pending behind the child's claim
        assert "queue" not in str(e.value) and "reserve()" not in str(e.value)
    finally:
        signal.signal(signal.SIGUSR1, old)
        child.kill()
        child.wait(10)


# ---- the second hostile review (C protocol) ----

SLOW_COMMITTER = """
    import signal, sys, shmring
    from shmring import _core
    signal.signal(signal.SIGUSR1, lambda *a: None)  # ends the hook's stall (nanosleep: EINTR)
    t = shmring.Topic.attach(sys.argv[1])
    pub = t.publisher()
    _core._set_test_hook("put_committing", 600)
    print("claiming", flush=True)
    pub.publish_bytes(b"k", b"m0")
"""


@pytest.mark.parametrize("policy", ["overwrite", "block"])
def test_a_claim_given_up_behind_a_lap_being_written_is_skipped_not_a_hang(make_topic, policy):
    # review 2, A: the give-up stored hole(4) over slot 0, which the child then committed as
    # position 0: position 4 read "not written yet" forever, and publishing at 8 was Full
    import signal
    import subprocess
    import sys
    import textwrap

    from conftest import child_python_env

    topic = make_topic(4, 16, policy=policy, recover_after=0.05)
    sub = None
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SLOW_COMMITTER), topic.name],
                             stdout=subprocess.PIPE, text=True, env=child_python_env())
    try:
        assert child.stdout.readline().strip() == "claiming"
        wait_until(lambda: topic.stats()["published"] == 1, what="the child's claim of position 0")
        pub = topic.publisher()
        for i in range(1, 4):
            pub.publish_bytes(b"k", b"m%d" % i)
        if policy == "overwrite":  # from position 4, waiting there while 5..7 come
            sub = topic.subscribe()
        with pytest.raises(shmring.Full):
            pub.publish_bytes(b"k", b"m4", timeout=0.2)  # slot 0 is still the child's
        while child.poll() is None:  # let it commit (a signal before its stall is repeated)
            child.send_signal(signal.SIGUSR1)
            try:
                child.wait(0.05)
            except subprocess.TimeoutExpired:
                pass
        assert child.returncode == 0
        for i in range(5, 8):
            pub.publish_bytes(b"k", b"m%d" % i)
        if sub is None:
            sub = topic.subscribe(start="oldest")  # position 4 on
        assert [sub.recv_bytes(timeout=5) for _ in range(3)] == [(b"k", b"m%d" % i) for i in (5, 6, 7)]
        pub.publish_bytes(b"k", b"m8", timeout=5)
        assert sub.recv_bytes(timeout=5) == (b"k", b"m8")
        assert sub.lagged == 0 and topic.stats()["holes"] == 1
    finally:
        child.kill()
        child.wait(10)


@pytest.mark.parametrize("policy", ["block", "overwrite"])
def test_a_scribbled_end_gives_an_idle_wait_and_a_clear_error_after_shutdown(make_topic, policy):
    # review 2, D: a slot word committed at the end made recv(timeout) spin for all of it; a
    # write_pos lowered below the cursor made recv spin after shutdown, never ShutDown
    topic = make_topic(64, 16, policy=policy)
    sub = topic.subscribe()
    _scribble(topic, "<I", 1, slot=0)  # slot 0: committed(0), write_pos 0
    c0 = time.process_time()
    with pytest.raises(shmring.Empty):
        sub.recv_bytes(timeout=0.5)
    assert time.process_time() - c0 < 0.2  # was 0.5: a busy loop
    topic = make_topic(64, 16, policy=policy)
    sub, pub = topic.subscribe(), topic.publisher()
    for i in range(10):
        pub.publish_bytes(b"k", b"x")
    assert len([sub.recv_bytes(timeout=1) for _ in range(10)]) == 10
    _scribble(topic, "<Q", 5, at=128)  # write_pos 5 < the cursor, 10
    topic.shutdown()
    c0 = time.process_time()
    with pytest.raises(shmring.SegmentError, match="corrupt"):
        sub.recv_bytes(timeout=0.5)
    assert time.process_time() - c0 < 0.2


def test_a_records_topic_refuses_a_payload_of_another_length_and_reports_a_scribbled_one(make_topic):
    # review 2, E (the C side): publish_bytes of any length was published, and recv_array
    # skipped a message of another length without a word (lagged 0)
    np = pytest.importorskip("numpy")
    dt = np.dtype([("x", "<i8")])
    topic = make_topic(8, dtype=dt)
    pub, sub = topic.publisher(), topic.subscribe()
    with pytest.raises(ValueError):
        pub.publish_bytes(b"k", b"abc")
    assert topic.stats()["published"] == 0
    pub.publish_array(np.arange(3, dtype="<i8").view(dt))
    _scribble(topic, "<I", 4, slot=1, field=4)  # position 1: half a record
    assert sub.recv_array(timeout=1)["x"].tolist() == [0]
    with pytest.raises(shmring.SegmentError):
        sub.recv_array(timeout=1)
    assert sub.recv_array(timeout=1)["x"].tolist() == [2]
