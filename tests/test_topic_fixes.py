"""Regression tests for the hostile review of shmring.Topic (one per finding; the
C ones are in tests/c/test_topic.c)."""
import multiprocessing as mp
import threading
import time

import pytest

import shmring
from conftest import release_stalled_publisher, start_stalled_publisher, wait_until

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


# ---- the second review: findings C, E, F, H, I ----

_raised_once = set()


def _fail(exc, tag):
    """What a _Failing message unpickles to: raises exc (KeyboardInterrupt: once per tag, as
    a Ctrl-C would land once), else the tag."""
    if exc is KeyboardInterrupt and tag in _raised_once:
        return tag
    _raised_once.add(tag)
    raise exc(f"decoding {tag} failed")


class _Failing:
    """A message whose unpickling raises exc."""

    def __init__(self, exc, tag):
        self.exc, self.tag = exc, tag

    def __reduce__(self):
        return (_fail, (self.exc, self.tag))


def test_recv_many_keeps_the_rest_of_its_batch_when_the_first_message_fails_to_decode(make_topic):
    # finding C: the first message's error lost the rest of the batch (already past the cursor)
    topic = make_topic(16, 256)
    pub, sub = topic.publisher(), topic.subscribe()
    pub.publish_many([(b"k", _Failing(ValueError, "bad")), (b"k", "good1"), (b"k", "good2")])
    with pytest.raises(ValueError, match="decoding bad failed"):
        sub.recv_many(timeout=1)
    assert sub.recv(timeout=1) == (b"k", "good1")
    assert sub.recv_many(timeout=1) == [(b"k", "good2")]
    assert sub.lagged == 0 and sub.position == 3


def test_recv_many_hands_out_a_later_decode_failure_in_its_turn(make_topic):
    topic = make_topic(16, 256)
    pub, sub = topic.publisher(), topic.subscribe()
    pub.publish_many([(b"k", "good0"), (b"k", _Failing(ValueError, "bad")), (b"k", "good2"), (b"k", "good3")])
    assert sub.recv_many(timeout=1) == [(b"k", "good0")]
    with pytest.raises(ValueError, match="decoding bad failed"):
        sub.recv_many(timeout=1)
    assert sub.recv_many_bytes(1, timeout=1)[0][0] == b"k"  # good2, as bytes: held ones take any call's type
    assert sub.recv_many(timeout=1) == [(b"k", "good3")]
    with pytest.raises(shmring.Empty):
        sub.recv(block=False)


@pytest.mark.parametrize("call", ["recv", "recv_many", "iterate"])
def test_an_interrupted_decode_loses_nothing_taken(make_topic, call):
    # finding C: a KeyboardInterrupt while decoding lost the message (recv) or the whole batch
    topic = make_topic(16, 256)
    pub, sub = topic.publisher(), topic.subscribe()
    tag = f"interrupted-{call}"
    _raised_once.discard(tag)  # (a rerun in this process interrupts again)
    pub.publish_many([(b"k", "good0"), (b"k", _Failing(KeyboardInterrupt, tag)), (b"k", "good2")])
    if call == "recv_many":
        with pytest.raises(KeyboardInterrupt):
            sub.recv_many(timeout=1)
        got = sub.recv_many(timeout=1)
    elif call == "recv":
        got = [sub.recv(timeout=1)]
        with pytest.raises(KeyboardInterrupt):
            sub.recv(timeout=1)
        got += [sub.recv(timeout=1), sub.recv(timeout=1)]
    else:
        got = []
        with pytest.raises(KeyboardInterrupt):
            for item in sub:
                got.append(item)
        topic.shutdown()
        got += list(sub)
    assert got == [(b"k", "good0"), (b"k", tag), (b"k", "good2")]
    assert sub.lagged == 0


def test_a_records_topic_refuses_bytes_that_are_not_one_record(make_topic):
    # finding E: publish_bytes of any length was published; recv_array dropped it, recv raised numpy's error
    np = pytest.importorskip("numpy")
    dt = np.dtype([("a", "<i8"), ("b", "<f8")])
    topic = make_topic(16, dtype=dt)
    pub, sub = topic.publisher(), topic.subscribe()
    rule = r"{} of a records topic takes one record of \[\('a', '<i8'\), \('b', '<f8'\)\] \(16 bytes\), got {} bytes"
    for bad in (b"abc", b"", bytearray(15), memoryview(b"x" * 8)):
        with pytest.raises(shmring.InvalidArgument, match=rule.format(r"publish_bytes\(\)", len(bad))):
            pub.publish_bytes(b"k", bad)
        with pytest.raises(ValueError, match=rule.format(r"publish_many_bytes\(\)", len(bad))):
            pub.publish_many_bytes([(b"k", bytes(16)), (b"k", bad)])
    with pytest.raises(shmring.MessageTooLarge):
        pub.publish_bytes(b"k", bytes(17))
    assert topic.stats()["published"] == 0  # nothing of a refused call was published
    record = np.array([(7, 0.5)], dt)
    pub.publish_bytes(b"k", record.tobytes())
    pub.publish_many_bytes([(b"k", record.tobytes())])
    assert sub.recv_array(timeout=1).tolist() == [(7, 0.5), (7, 0.5)]


_METHODS = ["recv", "recv_bytes", "recv_many", "recv_many_bytes", "recv_array", "recv_array_out"]


def _call(sub, method, np, dt):
    """One call of `method`, checked for its own result type: the values it received (a list)."""
    if method == "recv_array_out":
        out = np.full(8, -1, dt)
        n = sub.recv_array(out=out, timeout=1)
        assert type(n) is int and 1 <= n <= 8 and (out["a"][n:] == -1).all()
        return out["a"][:n].tolist()
    got = getattr(sub, method)(timeout=1)
    if method == "recv_array":
        assert isinstance(got, np.ndarray) and got.dtype == dt
        return got["a"].tolist()
    items = got if method.startswith("recv_many") else [got]
    assert isinstance(got, list if method.startswith("recv_many") else tuple)
    values = []
    for key, value in items:
        assert key == b"k"
        if method.endswith("bytes"):
            assert type(value) is bytes
            value = np.frombuffer(value, dt)[0]
        assert isinstance(value, np.void) and value.dtype == dt
        values.append(int(value["a"]))
    return values


@pytest.mark.parametrize("second", _METHODS)
@pytest.mark.parametrize("first", _METHODS)
def test_what_a_lagged_call_took_comes_back_as_the_next_call_s_own_type(make_topic, first, second):
    # finding F: held from recv_array, recv() returned the ndarray; held from recv_many,
    # recv_array(out=) returned a (key, record) tuple and left out= untouched
    np = pytest.importorskip("numpy")
    dt = np.dtype([("a", "<i8")])
    topic = make_topic(4, dtype=dt, policy="overwrite")
    pub, sub = topic.publisher(), topic.subscribe()
    sub.on_lag = "raise"
    arr = np.zeros(10, dt)
    arr["a"] = np.arange(10)
    pub.publish_array(arr, key=b"k")
    with pytest.raises(shmring.Lagged) as e:
        _call(sub, first, np, dt)
    missed = e.value.count
    assert missed == sub.lagged > 0
    got = []
    while len(got) < 10 - missed:
        got += _call(sub, second, np, dt)
    assert got == list(range(missed, 10))  # in order, nothing lost
    with pytest.raises(shmring.Empty):
        sub.recv(block=False)


def test_attaching_an_overwrite_topic_with_slow_subscriber_timeout_is_refused(make_topic):
    # finding I: attach accepted it silently, while creating such a topic refuses it
    topic = make_topic(8, 16, policy="overwrite")
    rule = r"slow_subscriber_timeout is for policy 'block' \(overwrite never waits for subscribers\)"
    with pytest.raises(ValueError, match=rule):
        shmring.Topic(8, 16, policy="overwrite", slow_subscriber_timeout=1)
    participants = topic.stats()["participants"]
    with pytest.raises(ValueError, match=rule):
        shmring.Topic.attach(topic.name, slow_subscriber_timeout=1)
    assert topic.stats()["participants"] == participants  # the refused handle was closed
    attached = shmring.Topic.attach(topic.name)
    assert attached.policy == "overwrite" and attached.slow_subscriber_timeout is None
    attached.close()
    blocking = make_topic(8, 16)
    attached = shmring.Topic.attach(blocking.name, slow_subscriber_timeout=1)
    assert attached.slow_subscriber_timeout == 1
    attached.close()


def test_lagged_counts_the_positions_skipped_whatever_their_keys(make_topic):
    # finding H: lagged is exact in positions of the stream, every message published in the
    # gap, not only the messages of the subscriber's prefixes (their keys were overwritten)
    capacity, published = 8, 100
    topic = make_topic(capacity, 16, policy="overwrite")
    pub, sub = topic.publisher(), topic.subscribe(b"a.")
    for i in range(published):  # 1 in 10 under a.
        pub.publish_bytes(b"a.%d" % i if i % 10 == 5 else b"b.%d" % i, b"m%d" % i)
    got = []
    with pytest.raises(shmring.Empty):
        while True:
            got.append(sub.recv_bytes(block=False))
    # the subscriber, at 0, jumps to a quarter of the capacity behind the end (docs/design.md)
    resumed = published - (capacity - capacity // 4)
    assert got == [(b"a.95", b"m95")]
    assert sub.lagged == resumed == 94  # positions 0..93, of which only 9 were a.* messages
    assert sub.position == published
    assert topic.stats()["subscribers"][0]["lagged"] == resumed


def test_a_lagged_subscriber_s_recv_array_checks_out_before_it_takes_anything(make_topic):
    # finding F's raise mode takes raw messages first: a bad out= must still be refused at once
    np = pytest.importorskip("numpy")
    dt = np.dtype([("a", "<i8")])
    topic = make_topic(4, dtype=dt, policy="overwrite")
    pub, sub = topic.publisher(), topic.subscribe()
    sub.on_lag = "raise"
    for bad, exc, match in ((np.zeros(2, np.int32), TypeError, r"array of dtype int32 given to a topic of"),
                            (np.zeros(0, dt), ValueError, r"out= has no room for a record"),
                            (np.zeros(4, dt)[::2], ValueError, r"out= must be C-contiguous")):
        with pytest.raises(exc, match=match):
            sub.recv_array(out=bad, timeout=0)  # not Empty: nothing is there yet
    pub.publish_array(np.ones(1, dt), key=b"k")
    frozen = np.zeros(2, dt)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=r"out= must be a writable array"):
        sub.recv_array(out=frozen, timeout=1)
    assert sub.position == 0  # nothing was taken
    assert sub.recv(timeout=1)[1]["a"] == 1


# ---- the second hostile review (C protocol) ----


@pytest.mark.parametrize("policy", ["overwrite", "block"])
def test_a_claim_given_up_behind_a_lap_being_written_is_skipped_not_a_hang(make_topic, policy):
    # review 2, A: the give-up stored hole(4) over slot 0, which the child then committed as
    # position 0: position 4 read "not written yet" forever, and publishing at 8 was Full
    topic = make_topic(4, 16, policy=policy, recover_after=0.05)
    sub = None
    child = start_stalled_publisher(topic, at="put_committing")
    try:
        pub = topic.publisher()
        for i in range(1, 4):
            pub.publish_bytes(b"k", b"m%d" % i)
        if policy == "overwrite":  # from position 4, waiting there while 5..7 come
            sub = topic.subscribe()
        with pytest.raises(shmring.Full):
            pub.publish_bytes(b"k", b"m4", timeout=0.2)  # slot 0 is still the child's
        release_stalled_publisher(child)
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


@pytest.mark.parametrize("settler", ["subscriber", "publisher"])
@pytest.mark.parametrize("policy", ["overwrite", "block"])
def test_claims_given_up_on_two_laps_of_a_slot_are_settled_not_a_hang(make_topic, policy, settler):
    # review 3: positions 4 and 8 (slot 0, twice) were given up while the child still wrote
    # position 0; settle_orphan looked one lap back only, so once 0 was committed position 8
    # waited for 4 and 4 for nobody: a subscriber at 8 got Empty forever, publishing at 12
    # was Full forever, and holes stayed 0
    topic = make_topic(4, 16, policy=policy, recover_after=0.05)
    child = start_stalled_publisher(topic, at="put_committing")
    try:
        pub = topic.publisher()
        for i in (1, 2, 3):
            pub.publish_bytes(b"k", b"m%d" % i)
        with pytest.raises(shmring.Full):
            pub.publish_bytes(b"k", b"m4", block=False)  # slot 0 is still the child's
        for i in (5, 6, 7):
            pub.publish_bytes(b"k", b"m%d" % i)
        with pytest.raises(shmring.Full):
            pub.publish_bytes(b"k", b"m8", block=False)  # slot 0 again: 8 depends on 4
        for i in (9, 10, 11):
            pub.publish_bytes(b"k", b"m%d" % i)
        release_stalled_publisher(child)
        assert topic.stats()["holes"] == 0  # nobody has waited behind 4 or 8 yet
        if settler == "subscriber":  # its cursor at 8, the second orphan: it settles 4, then 8
            sub = topic.subscribe(start="oldest")
            assert sub.position == 8
            assert [sub.recv_bytes(timeout=5) for _ in range(3)] == [(b"k", b"m%d" % i) for i in (9, 10, 11)]
            assert topic.stats()["holes"] == 2
            pub.publish_bytes(b"k", b"m12", timeout=5)
        else:  # 12's slot still holds 0 (committed): the publisher settles 4, then 8
            pub.publish_bytes(b"k", b"m12", timeout=5)
            assert topic.stats()["holes"] == 2
            sub = topic.subscribe(start="oldest")
            assert sub.position == 9
            assert [sub.recv_bytes(timeout=5) for _ in range(3)] == [(b"k", b"m%d" % i) for i in (9, 10, 11)]
        assert sub.recv_bytes(timeout=5) == (b"k", b"m12")
        pub.publish_bytes(b"k", b"m13", timeout=5)
        assert sub.recv_bytes(timeout=5) == (b"k", b"m13")
        assert sub.lagged == 0 and topic.stats()["holes"] == 2
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


@pytest.mark.parametrize("first", ["subscriber", "publisher"])
@pytest.mark.parametrize("policy", ["block", "overwrite"])
def test_a_shutdown_killed_between_its_two_stores_is_sealed_by_whoever_sees_it_first(make_topic, policy, first):
    # layout 11: a shutdown flags the subscriber table's generation (cons.read_pos) first,
    # then write_pos; killed between the two, subscribers must still drain and end, and
    # publishing must stop at the end they drained to (a review: publishers went on)
    import struct

    topic = make_topic(64, 16, policy=policy)
    sub, pub = topic.subscribe(), topic.publisher()
    for i in range(3):
        pub.publish_bytes(b"k", b"%d" % i)
    _scribble(topic, "<Q", struct.unpack_from("<Q", _read(topic, 256, 8))[0] | 1 << 63, at=256)
    assert topic.stats()["shut_down"]  # the generation's flag alone says so
    if first == "publisher":
        with pytest.raises(shmring.ShutDown):
            pub.publish_bytes(b"k", b"late", timeout=5)
    assert [sub.recv_bytes(timeout=5)[1] for _ in range(3)] == [b"0", b"1", b"2"]
    with pytest.raises(shmring.ShutDown):
        sub.recv_bytes(timeout=5)
    with pytest.raises(shmring.ShutDown):  # sealed at 3
        pub.publish_bytes(b"k", b"late", timeout=5)
    assert topic.stats()["published"] == 3


@pytest.mark.parametrize("policy", ["block", "overwrite"])
def test_a_write_pos_flagged_alone_still_ends_a_subscriber_at_the_end(make_topic, policy):
    # a review: with only write_pos's flag (a peer's scribble: every shutdown flags the
    # generation first) a subscriber at the end waited for ever, idle
    import struct

    topic = make_topic(64, 16, policy=policy)
    sub, pub = topic.subscribe(), topic.publisher()
    pub.publish_bytes(b"k", b"x")
    assert sub.recv_bytes(timeout=5) == (b"k", b"x")
    _scribble(topic, "<Q", struct.unpack_from("<Q", _read(topic, 128, 8))[0] | 1 << 63, at=128)
    with pytest.raises(shmring.ShutDown):
        sub.recv_bytes(timeout=5)


def _read(topic, at, n):
    with open(f"/dev/shm/{topic.name}", "rb") as f:
        f.seek(at)
        return f.read(n)


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


_STALLED_BATCH = """
import sys, shmring
from shmring import _core
t = shmring.Topic.attach(sys.argv[1]); pub = t.publisher()
_core._set_test_hook("put_committing", 600)
print("claiming", flush=True)
pub.publish_many_bytes([(b"k", b"d%d" % i) for i in range(4)])
"""


@pytest.mark.parametrize("laps", [1 << 28, (1 << 30) + 5])
def test_a_dead_batch_whose_committed_slots_were_reused_is_settled_at_once_and_alone(make_topic, laps):
    # review 3 of issue 12: chain_bottom read a slot word a lap ahead of a committed position
    # of the dead claim as ~2^30 laps behind: seconds of walking, or (past 2^30 laps) holes
    # made over live messages. The topic is scribbled as one that has run `laps` laps.
    import mmap
    import os
    import struct
    import subprocess
    import sys

    topic = make_topic(4, 16, policy="overwrite", recover_after=0.05)
    fd = os.open(f"/dev/shm/{topic.name}", os.O_RDWR)
    try:
        m = mmap.mmap(fd, 0)
    finally:
        os.close(fd)
    meta = struct.unpack_from("<Q", m, 72)[0]

    def word(s):
        return struct.unpack_from("<I", m, meta + 8 * s)[0]

    def state(p, code):
        return (((p >> 2) << 2) | code) & 0xFFFFFFFF

    struct.pack_into("<Q", m, 128, laps * 4)
    for s in range(4):
        struct.pack_into("<I", m, meta + 8 * s, state(laps * 4 + s - 4, 1))  # committed, the lap before
    child = subprocess.Popen([sys.executable, "-c", _STALLED_BATCH, topic.name], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "claiming"
        wait_until(lambda: word(1) == state(laps * 4 + 1, 1), 10, "the batch's first half committed")
    finally:
        child.kill()
        child.wait(10)
    sub, pub = topic.subscribe(), topic.publisher()
    pub.publish_bytes(b"k", b"m4")
    pub.publish_bytes(b"k", b"m5")  # slots 0 and 1 a lap on: ahead of the dead claim's committed half
    pub.publish_bytes(b"k", b"m6", timeout=2)  # slot 2: the dead claim's, made a hole (took seconds)
    assert topic.stats()["holes"] == 2
    assert [sub.recv_bytes(timeout=5)[1] for _ in range(3)] == [b"m4", b"m5", b"m6"] and sub.lagged == 0
    pub.publish_bytes(b"k", b"m7", timeout=2)
    pub.publish_bytes(b"k", b"m8", timeout=2)  # slot 0 was pushed laps ahead: Full
    m.close()
