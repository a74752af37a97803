"""shmring.Topic: publish / subscribe between processes (issue 12).

Delivery (every matching message exactly once, in order per publisher, across
processes), prefix filters, each start, both policies with exact lag counts and
no torn reads, the slow-subscriber timeout, SIGKILL of a subscriber and of a
publisher mid-claim, records topics, pickling, errors, waiting.
"""
import multiprocessing as mp
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib

import pytest

import shmring
from conftest import child_python_env, interrupt_when_asleep, start_stalled_publisher, wait_until
from test_blocking import assert_lateness

pytestmark = pytest.mark.timeout(120)

CTX = mp.get_context("fork")


# ---- delivery across processes ----

PUBLISHERS, SUBSCRIBERS, PER_PUBLISHER = 3, 3, 34_000  # 102,000 messages


def _subscriber_proc(topic, prefixes, ready, results):
    sub = topic.subscribe(*prefixes)
    ready.set()
    nxt, count = {}, 0
    try:
        for key, data in iter(lambda: sub.recv_bytes(timeout=60), None):
            p, seq = struct.unpack("<II", data)
            assert key == b"p%d.m" % p, key
            assert seq == nxt.get(p, 0), (p, seq, nxt.get(p, 0))  # in order, none lost, none twice
            nxt[p] = seq + 1
            count += 1
    except shmring.ShutDown:
        pass
    results.put((prefixes, count, nxt, sub.lagged))


def _publisher_proc(topic, p, n):
    pub = topic.publisher()
    i = 0
    while i < n:  # singles and runs, as a publisher mixes them
        if i % 3:
            pub.publish_bytes(b"p%d.m" % p, struct.pack("<II", p, i), timeout=60)
            i += 1
        else:
            k = min(50, n - i)
            pub.publish_many_bytes([(b"p%d.m" % p, struct.pack("<II", p, j)) for j in range(i, i + k)], timeout=60)
            i += k


def test_three_publishers_three_subscribers_every_matching_message_once_in_order(make_topic):
    topic = make_topic(1024, 16, max_topic_len=8)
    results = CTX.Queue()
    readies = [CTX.Event() for _ in range(SUBSCRIBERS)]
    filters = [(), (b"p0.", b"p0.m"), (b"p1", "p2.")]  # everything; overlapping; two publishers
    subs = [CTX.Process(target=_subscriber_proc, args=(topic, filters[i], readies[i], results))
            for i in range(SUBSCRIBERS)]
    for s in subs:
        s.start()
    for r in readies:
        assert r.wait(60)
    pubs = [CTX.Process(target=_publisher_proc, args=(topic, p, PER_PUBLISHER)) for p in range(PUBLISHERS)]
    for p in pubs:
        p.start()
    for p in pubs:
        p.join(90)
        assert p.exitcode == 0
    topic.shutdown()
    got = {tuple(prefixes): (count, nxt, lagged) for prefixes, count, nxt, lagged in
           (results.get(timeout=60) for _ in range(SUBSCRIBERS))}
    for s in subs:
        s.join(30)
        assert s.exitcode == 0
    n = PER_PUBLISHER
    assert got[()] == (PUBLISHERS * n, {0: n, 1: n, 2: n}, 0)
    assert got[(b"p0.", b"p0.m")] == (n, {0: n}, 0)
    assert got[(b"p1", "p2.")] == (2 * n, {1: n, 2: n}, 0)
    st = topic.stats()
    assert st["published"] == PUBLISHERS * n and st["holes"] == 0 and st["shut_down"]
    assert st["subscribers"] == []  # each child freed its entry as it ended (os._exit, after the finalizers)


# ---- filters ----

def test_empty_and_overlapping_prefixes(make_topic):
    topic = make_topic(64, 32, max_topic_len=8)
    pub = topic.publisher()
    everything, empty, overlapping, text = (topic.subscribe(), topic.subscribe(b""),
                                            topic.subscribe(b"a", b"ab", b"abc"), topic.subscribe("é"))
    for key in (b"ab.1", b"b", b"", b"abc", "é.x".encode()):
        pub.publish_bytes(key, key)
    assert [k for k, _ in everything.recv_many_bytes()] == [b"ab.1", b"b", b"", b"abc", "é.x".encode()]
    assert [k for k, _ in empty.recv_many_bytes()] == [b"ab.1", b"b", b"", b"abc", "é.x".encode()]
    assert overlapping.recv_many_bytes() == [(b"ab.1", b"ab.1"), (b"abc", b"abc")]  # each once
    assert text.recv_many_bytes() == [("é.x".encode(), "é.x".encode())]
    for s in (everything, empty, overlapping, text):
        with pytest.raises(shmring.Empty):
            s.recv(block=False)


def test_a_received_pair_is_never_changed_by_later_receives(make_topic):
    # the binding hands out its (key, payload) tuple again once nobody holds it: one
    # that is held keeps its items, one dropped at once is refilled right
    topic = make_topic(64, 32, max_topic_len=8)
    pub, sub = topic.publisher(), topic.subscribe()
    for i in range(7):
        pub.publish_bytes(b"k%d" % (i % 2), b"m%d" % i)
    first = sub.recv_bytes()
    held = [sub.recv_bytes() for _ in range(2)]
    dropped = [sub.recv_bytes() for _ in range(1)][0]
    refilled = [tuple(sub.recv_bytes()) for _ in range(3)]
    assert first == (b"k0", b"m0") and held == [(b"k1", b"m1"), (b"k0", b"m2")]
    assert dropped == (b"k1", b"m3") and refilled == [(b"k0", b"m4"), (b"k1", b"m5"), (b"k0", b"m6")]
    seen = {(b"k", b"0")}
    for i in range(2):
        pub.publish_bytes(b"k", b"%d" % i)
    assert sub.recv_bytes() in seen  # hashed, then dropped: a tuple that caches its hash (3.14)
    pair = sub.recv_bytes()  # must not keep the hash of what it held before
    assert hash(pair) == hash((b"k", b"1")) and pair in {(b"k", b"1")} and pair not in seen
    payload = pair[1]
    del pair
    held = sys.getrefcount(payload)
    sub.close()  # a closed subscriber keeps no message alive
    assert sys.getrefcount(payload) == held - 1


def test_subscribe_and_unsubscribe_at_run_time_apply_to_what_is_not_yet_received(make_topic):
    topic = make_topic(64, 32, max_topic_len=8)
    pub = topic.publisher()
    sub = topic.subscribe(b"a")
    for key in (b"a1", b"b1", b"a2", b"b2"):
        pub.publish(key, key.decode())
    assert sub.recv(timeout=1) == (b"a1", "a1")
    sub.subscribe(b"b")        # b1 is not received yet: it comes
    sub.unsubscribe(b"a")      # a2 is not received yet: it does not
    assert sub.recv_many() == [(b"b1", "b1"), (b"b2", "b2")]
    sub.unsubscribe(b"zz")     # one it never had: nothing changes
    pub.publish(b"b3", 3)
    assert sub.recv(timeout=1) == (b"b3", 3)


# ---- where a subscriber starts ----

def test_each_start(make_topic):
    topic = make_topic(8, 16, max_topic_len=4)
    pub = topic.publisher()
    for i in range(20):  # no subscriber: the publisher never blocks, the topic keeps the last 8
        pub.publish(b"k", i, block=False)
    latest, oldest = topic.subscribe(), topic.subscribe(start="oldest")
    at, gone = topic.subscribe(start=15), topic.subscribe(start=3)
    assert (latest.position, oldest.position, at.position, gone.position) == (20, 12, 15, 12)
    assert [v for _, v in oldest.recv_many()] == list(range(12, 20))  # exactly min(capacity, published)
    assert [v for _, v in at.recv_many()] == list(range(15, 20))
    assert [v for _, v in gone.recv_many()] == list(range(12, 20)) and gone.lagged == 9
    with pytest.raises(shmring.Empty):
        latest.recv(timeout=0.01)
    pub.publish(b"k", 20)
    assert latest.recv(timeout=1) == (b"k", 20) and latest.lagged == 0
    resumed = topic.subscribe(start=latest.position)
    pub.publish(b"k", 21)
    assert resumed.recv(timeout=1) == (b"k", 21)
    with pytest.raises(shmring.InvalidArgument, match=r"start position 99 is out of range: 0 to 22, the stream's end"):
        topic.subscribe(start=99)
    with pytest.raises(ValueError, match=r"start must be 'latest', 'oldest' or a position, got 'newest'"):
        topic.subscribe(start="newest")
    with pytest.raises(ValueError, match=r"start position -1 is out of range: 0 to 22, the stream's end"):
        topic.subscribe(start=-1)
    with pytest.raises(TypeError, match="start must be"):
        topic.subscribe(start=True)


# ---- overwrite ----

def _checksummed(i):
    body = struct.pack("<Q", i) * 7
    return body + struct.pack("<I", zlib.crc32(body))


def _overwrite_publisher(topic, n, started):
    pub = topic.publisher()
    started.set()
    for i in range(0, n, 500):
        pub.publish_many_bytes([(b"x", _checksummed(j)) for j in range(i, min(i + 500, n))], block=False)
    topic.shutdown()


def test_overwrite_laps_with_exact_lagged_and_no_torn_message(make_topic):
    n = 1_000_000
    topic = make_topic(256, 64, policy="overwrite", max_topic_len=1)
    sub = topic.subscribe()
    started = CTX.Event()
    pub = CTX.Process(target=_overwrite_publisher, args=(topic, n, started))
    pub.start()
    assert started.wait(30)
    got, last = 0, -1
    try:
        while True:
            for key, data in sub.recv_many_bytes(timeout=60):
                body, crc = data[:-4], struct.unpack("<I", data[-4:])[0]
                assert zlib.crc32(body) == crc, "a torn message was handed out"
                i = struct.unpack_from("<Q", body)[0]
                assert i > last and body == struct.pack("<Q", i) * 7
                last = i
                got += 1
    except shmring.ShutDown:
        pass
    pub.join(60)
    assert pub.exitcode == 0
    assert got + sub.lagged == n     # exact
    assert last == n - 1             # it read up to the end
    assert sub.lagged > 0            # it was lapped (a publisher of batches outruns a Python reader)
    assert topic.stats()["subscribers"][0]["lagged"] == sub.lagged


def test_on_lag_raise_raises_lagged_once_with_the_count_then_continues(make_topic):
    topic = make_topic(8, 16, policy="overwrite", max_topic_len=1)
    pub = topic.publisher()
    sub = topic.subscribe()
    sub.on_lag = "raise"
    for i in range(100):
        pub.publish(b"k", i)
    with pytest.raises(shmring.Lagged) as info:
        sub.recv(timeout=1)
    missed = info.value.count
    assert missed == sub.lagged and missed > 0
    rest = [sub.recv(timeout=1)[1]]
    rest += [v for _, v in sub.recv_many()]
    assert rest == list(range(missed, 100))     # nothing lost beyond the count, nothing twice
    with pytest.raises(ValueError, match=r"on_lag must be one of \('count', 'raise'\), got 'ignore'"):
        sub.on_lag = "ignore"


# ---- block: gating, the slow timeout, dead subscribers ----

def test_block_publisher_waits_for_the_slowest_subscriber_and_times_out(make_topic):
    topic = make_topic(4, 16, max_topic_len=1)
    pub = topic.publisher()
    slow, fast = topic.subscribe(), topic.subscribe()
    for i in range(4):
        pub.publish(b"k", i)
    fast.recv_many()
    t0 = time.monotonic()
    with pytest.raises(shmring.Full):
        pub.publish(b"k", 4, timeout=0.05)
    assert 0.04 <= time.monotonic() - t0 < 1.0
    with pytest.raises(shmring.Full):
        pub.publish(b"k", 4, block=False)
    threading.Timer(0.05, slow.recv).start()    # frees one slot
    pub.publish(b"k", 4, timeout=10)
    assert [v for _, v in fast.recv_many()] == [4]


def test_slow_subscriber_timeout_detaches_it_and_it_resumes_at_the_oldest_counting_the_gap(make_topic):
    topic = make_topic(8, 16, max_topic_len=1, slow_subscriber_timeout=0.2)
    pub = topic.publisher()
    stalled = topic.subscribe()
    for i in range(8):
        pub.publish(b"k", i)
    t0 = time.monotonic()
    pub.publish(b"k", 8, timeout=10)           # held by `stalled` until it is detached
    assert 0.15 <= time.monotonic() - t0 < 5
    for i in range(9, 30):
        pub.publish(b"k", i, block=False)      # nobody gates now
    assert topic.stats()["detached"] == 1
    assert topic.stats()["subscribers"][0]["detached"]
    key, first = stalled.recv(timeout=1)
    assert first == 30 - 8 and stalled.lagged == first   # continued at the oldest retained
    assert [v for _, v in stalled.recv_many()] == list(range(first + 1, 30))
    pub.publish(b"k", 30, block=False)
    for i in range(31, 38):
        pub.publish(b"k", i, block=False)
    with pytest.raises(shmring.Full):          # it gates again, attached
        pub.publish(b"k", 38, block=False)


SLEEPY_SUBSCRIBER = """
    import sys, time, shmring
    t = shmring.Topic.attach(sys.argv[1])
    sub = t.subscribe()
    print("subscribed", flush=True)
    time.sleep(600)
"""


def test_a_sigkilled_subscriber_stops_gating_publishers_within_a_second(make_topic):
    topic = make_topic(8, 16, max_topic_len=1, recover_after=0.1)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SLEEPY_SUBSCRIBER), topic.name],
                             stdout=subprocess.PIPE, text=True, env=child_python_env())
    try:
        assert child.stdout.readline().strip() == "subscribed"
        pub = topic.publisher()
        for i in range(8):
            pub.publish(b"k", i)
        with pytest.raises(shmring.Full):
            pub.publish(b"k", 8, timeout=0.3)   # the live child gates
        child.kill()
        child.wait(10)
        t0 = time.monotonic()
        pub.publish(b"k", 8, timeout=10)
        assert time.monotonic() - t0 < 1.0
        assert topic.stats()["subscribers"] == []
    finally:
        child.kill()
        child.wait(10)


def test_a_publisher_sigkilled_mid_claim_leaves_a_hole_subscribers_skip(make_topic):
    topic = make_topic(8, 32, max_topic_len=1, recover_after=0.05)
    sub = topic.subscribe()
    child = start_stalled_publisher(topic)
    try:
        topic.publisher().publish_bytes(b"k", b"after")
        with pytest.raises(shmring.Empty):
            sub.recv_bytes(timeout=0.2)          # held by the live child's claim
        child.kill()
        child.wait(10)
        t0 = time.monotonic()
        assert sub.recv_bytes(timeout=10) == (b"k", b"after")
        assert time.monotonic() - t0 < 1.0
        assert topic.stats()["holes"] == 1
    finally:
        child.kill()
        child.wait(10)


# ---- records ----

def test_records_topic_publishes_and_receives_arrays(make_topic):
    np = pytest.importorskip("numpy")
    dt = np.dtype([("ts", "<i8"), ("px", "<f8")])
    topic = make_topic(64, dtype=dt, max_topic_len=4)
    assert topic.dtype == dt and topic.msg_size == dt.itemsize
    pub, sub, some = topic.publisher(), topic.subscribe(), topic.subscribe(b"eu")
    arr = np.array([(i, i / 2) for i in range(40)], dt)
    pub.publish_array(arr)
    pub.publish_array(arr[:3], key=b"eu")
    pub.publish(b"eu", (99, 1.5))
    got = sub.recv_array()
    assert got.dtype == dt and got.tolist() == arr.tolist() + arr[:3].tolist() + [(99, 1.5)]
    out = np.zeros(10, dt)
    assert some.recv_array(out=out) == 4 and out[:4].tolist() == arr[:3].tolist() + [(99, 1.5)]
    with pytest.raises(TypeError, match="dtype"):
        pub.publish_array(np.zeros(3, "<i4"))
    read_only = np.zeros(4, dt)
    read_only.flags.writeable = False
    pub.publish_array(arr[:1])
    with pytest.raises(ValueError, match="writable"):
        sub.recv_array(out=read_only)
    assert sub.recv_array().tolist() == arr[:1].tolist()   # nothing was taken by the refused call
    attached = pickle.loads(pickle.dumps(topic))
    try:
        assert attached.dtype == dt
    finally:
        attached.close()


# ---- handles across processes ----

def _child_publishes(topic, ready):
    ready.wait(30)
    topic.publisher().publish(b"from", os.getpid())


def test_a_topic_pickles_to_a_child_of_each_start_method(make_topic, start_method):
    topic = make_topic(16, 64, max_topic_len=8)
    sub = topic.subscribe(b"from")
    ctx = mp.get_context(start_method)
    ready = ctx.Event()
    child = ctx.Process(target=_child_publishes, args=(topic, ready))
    child.start()
    ready.set()
    key, pid = sub.recv(timeout=60)
    child.join(30)
    assert child.exitcode == 0 and key == b"from" and pid == child.pid


def test_publishers_and_subscribers_belong_to_the_process_that_made_them(make_topic):
    topic = make_topic(16, 64, max_topic_len=8)
    pub, sub = topic.publisher(), topic.subscribe()
    pid = os.fork()
    if pid == 0:  # the child: its own topic handle works, the parent's objects refuse
        code = 0
        try:
            for call in (lambda: pub.publish(b"k", 1), lambda: sub.recv(block=False)):
                try:
                    call()
                    code = 1
                except RuntimeError as e:
                    code |= 0 if "belongs to the process that made it" in str(e) else 2
            topic.publisher().publish(b"k", "child")
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sub.recv(timeout=10) == (b"k", "child")
    for obj in (pub, sub):
        with pytest.raises(TypeError, match="is made in the process that uses it: pass the Topic"):
            pickle.dumps(obj)


# ---- errors, waiting, closing ----

def test_bad_input_is_refused_naming_the_value_and_the_rule(make_topic):
    topic = make_topic(8, 16, max_topic_len=4, max_subscribers=2)
    pub = topic.publisher()
    with pytest.raises(shmring.InvalidArgument, match=r"topic key of 5 bytes is longer than this topic's max_topic_len of 4"):
        pub.publish(b"12345", 1)
    with pytest.raises(shmring.MessageTooLarge, match=r"17 bytes, larger than this topic's msg_size of 16"):
        pub.publish_bytes(b"k", b"x" * 17)
    with pytest.raises(TypeError, match="a topic key is bytes or str, got int"):
        pub.publish(5, 1)
    a, b = topic.subscribe(), topic.subscribe()
    with pytest.raises(shmring.TooManyParticipants, match=r"max_subscribers is 2"):
        topic.subscribe()
    b.close()
    topic.subscribe().close()      # closing a subscriber frees its entry
    with pytest.raises(ValueError, match=r"policy must be one of \('block', 'overwrite'\), got 'drop'"):
        shmring.Topic(8, 16, policy="drop")
    with pytest.raises(shmring.InvalidArgument, match=r"max_topic_len must be 0 to 1024 bytes, got 2000"):
        shmring.Topic(8, 16, max_topic_len=2000)
    with pytest.raises(ValueError, match=r"'slow_subscriber_timeout' must be None or a number of seconds"):
        shmring.Topic(8, 16, slow_subscriber_timeout=-1)
    with pytest.raises(TypeError, match="dtype"):
        pub.publish_array([1, 2])
    with pytest.raises(RuntimeError, match="open already"):
        topic.__init__(8, 16)
    a.close()


def test_recv_timeout_is_honoured_and_empty_is_a_queue_empty(make_topic):
    import queue
    topic = make_topic(8, 16)
    sub = topic.subscribe()
    with pytest.raises(queue.Empty):
        sub.recv(timeout=0.0)
    for timeout in (0.01, 0.1):  # the typical call within 20 ms of its timeout (test_blocking.py)
        assert_lateness(timeout, lambda t: sub.recv(timeout=t), queue.Empty)
    assert_lateness(0.05, lambda t: sub.recv_many_bytes(timeout=t), shmring.Empty, runs=3)


def test_publish_timeout_under_block_is_honoured_and_full_is_a_queue_full(make_topic):
    import queue
    topic = make_topic(8, 16, max_topic_len=1)
    stalled = topic.subscribe()  # never reads: it gates the publisher once the ring is full
    pub = topic.publisher()
    for i in range(8):
        pub.publish(b"k", i, timeout=10)
    for timeout in (0.01, 0.1):
        assert_lateness(timeout, lambda t: pub.publish(b"k", 8, timeout=t), queue.Full)
    assert stalled.recv(timeout=1) == (b"k", 0)  # nothing of the timed-out calls was published
    assert [obj for _, obj in stalled.recv_many()] == list(range(1, 8))


def test_a_recv_blocked_in_another_thread_wakes_on_publish_and_close_ends_it(make_topic):
    topic = make_topic(8, 64)
    sub, other = topic.subscribe(), topic.subscribe()
    pub = topic.publisher()
    got = []
    t = threading.Thread(target=lambda: got.append(sub.recv(timeout=30)))
    t.start()
    wait_until(lambda: topic.stats()["readers_waiting"] >= 1, what="the thread asleep")
    pub.publish(b"k", "hi")
    t.join(10)
    assert got == [(b"k", "hi")]
    errors = []

    def blocked():
        try:
            other.recv_many(timeout=30)
            other.recv(timeout=30)
        except Exception as e:
            errors.append(e)
    t = threading.Thread(target=blocked)
    t.start()
    wait_until(lambda: topic.stats()["readers_waiting"] >= 1, what="the thread asleep")
    topic.close()
    t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], shmring.QueueClosed)
    with pytest.raises(shmring.QueueClosed):
        sub.recv(block=False)
    with pytest.raises(shmring.QueueClosed):
        pub.publish(b"k", 1)


CTRL_C_SUBSCRIBER = """
    import sys, time, shmring
    t = shmring.Topic.attach(sys.argv[1])
    sub = t.subscribe()
    print("ready", flush=True)
    try:
        sub.recv()    # timeout=None: as long as it takes
        print("returned", time.monotonic(), flush=True)
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
"""


def assert_interrupted_promptly(topic, code, waiting):
    """Run `code` (it prints "ready", then blocks on topic), SIGINT it once it sleeps
    (stats()[waiting]): it must say "interrupted" within 200 ms of the signal."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), topic.name],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_python_env())
    out, err, sent = interrupt_when_asleep(topic, child, waiting)
    word, when = out.split()
    assert word == "interrupted", err
    assert float(when) - sent < 0.2


def test_ctrl_c_interrupts_a_blocked_recv_promptly(make_topic):
    assert_interrupted_promptly(make_topic(8, 16), CTRL_C_SUBSCRIBER, "readers_waiting")


def test_a_closed_subscriber_refuses_and_iteration_ends_at_shutdown(make_topic):
    topic = make_topic(8, 16)
    pub, sub, done = topic.publisher(), topic.subscribe(), topic.subscribe()
    for i in range(3):
        pub.publish(b"k", i)
    topic.shutdown()
    with pytest.raises(shmring.ShutDown, match="shut down"):
        pub.publish(b"k", 3)
    assert [v for _, v in sub] == [0, 1, 2]
    with pytest.raises(shmring.ShutDown):
        sub.recv(timeout=1)
    done.close()
    with pytest.raises(ValueError, match="closed"):
        done.recv(block=False)
    assert isinstance(shmring.ShutDown("x"), shmring.ShmringError)


IDLE_SUBSCRIBER = """
    import sys, time, shmring
    t = shmring.Topic.attach(sys.argv[1])
    sub = t.subscribe()
    cpu, wall = time.process_time(), time.monotonic()
    try:
        sub.recv(timeout=1.0)
    except shmring.Empty:
        pass
    print(time.process_time() - cpu, time.monotonic() - wall, flush=True)
"""


def test_an_idle_subscriber_sleeps_using_under_two_percent_of_a_core(make_topic):
    topic = make_topic(8, 16)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(IDLE_SUBSCRIBER), topic.name],
                          capture_output=True, text=True, timeout=60, env=child_python_env())
    assert done.returncode == 0, done.stderr
    cpu, wall = map(float, done.stdout.split())
    assert 1.0 <= wall < 1.5 and cpu < 0.02 * wall, (cpu, wall)


def test_a_topic_and_a_queue_refuse_to_attach_as_each_other(make_topic, make_queue):
    topic, q = make_topic(8, 16), make_queue(8, 16)
    with pytest.raises(shmring.SegmentError, match="kind 2 in the header, asked for 1"):
        shmring.Queue.attach(topic.name)
    with pytest.raises(shmring.SegmentError, match="kind 1 in the header, asked for 2"):
        shmring.Topic.attach(q.name)


CTRL_C_PUBLISHER = """
    import sys, time, shmring
    t = shmring.Topic.attach(sys.argv[1])
    pub = t.publisher()
    for i in range(8):
        pub.publish(b"k", i)
    print("ready", flush=True)
    try:
        pub.publish(b"k", 8)    # held by the subscriber that does not read: as long as it takes
        print("returned", time.monotonic(), flush=True)
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
"""


def test_ctrl_c_interrupts_a_publisher_held_by_a_slow_subscriber_and_nothing_is_claimed(make_topic):
    topic = make_topic(8, 16)
    sub = topic.subscribe()
    assert_interrupted_promptly(topic, CTRL_C_PUBLISHER, "writers_waiting")
    assert topic.stats()["published"] == 8 and topic.stats()["holes"] == 0   # the interrupted one claimed nothing
    assert [v for _, v in sub.recv_many()] == list(range(8))


def test_a_subscriber_is_used_by_one_thread_at_a_time(make_topic):
    topic = make_topic(8, 16)
    sub = topic.subscribe()
    got = []
    t = threading.Thread(target=lambda: got.append(sub.recv(timeout=5)))
    t.start()
    wait_until(lambda: topic.stats()["readers_waiting"] >= 1, what="the thread asleep in recv")
    with pytest.raises(RuntimeError, match="in use by another thread"):
        sub.recv(block=False)
    topic.publisher().publish(b"k", 1)
    t.join(10)
    assert not t.is_alive() and got == [(b"k", 1)]
