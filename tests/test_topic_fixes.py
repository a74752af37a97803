"""Regression tests for the hostile review of shmring.Topic (one per finding; the
C ones are in tests/c/test_topic.c)."""
import pytest

import shmring

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


def test_recv_many_keeps_what_it_took_when_a_later_message_is_corrupt(make_topic):
    # finding 6: a bad slot after the first message lost the ones already taken
    import mmap
    import os
    import struct

    topic = make_topic(8, 64)
    pub, sub = topic.publisher(), topic.subscribe()
    for i in range(3):
        pub.publish_bytes(b"k", b"m%d" % i)
    fd = os.open(f"/dev/shm/{topic.name}", os.O_RDWR)
    try:
        m = mmap.mmap(fd, 0)
    finally:
        os.close(fd)
    try:
        meta = struct.unpack_from("<Q", m, 72)[0]
        struct.pack_into("<I", m, meta + 1 * 8 + 4, 65)  # position 1: length 65 > msg_size 64
    finally:
        m.close()
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
