"""Micro-benchmarks (pytest-benchmark): the cost of single calls, beside the peers.

    pip install '.[bench]' && python -m pytest bench/ --benchmark-only

Not part of the test suite (pytest's testpaths is tests/). These time calls in
one process (plus a round trip to a second one), which is what a change to a hot
path moves; `shmring bench` is the user-facing side-by-side run between processes.
Pub/sub rows join when shmring's pub/sub lands.
"""
import multiprocessing as mp
import queue

import pytest

import shmring

np = pytest.importorskip("numpy")

PAYLOAD = b"x" * 64
BATCH = 256
RECORDS = 4096
TICK = np.dtype([("ts", "<i8"), ("price", "<f8"), ("qty", "<i4"), ("flags", "<u4")])


def shmring_queue():
    return shmring.Queue(8192, msg_size=1024)


def mp_queue():
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn").Queue(8192)


def faster_fifo_queue():
    faster_fifo = pytest.importorskip("faster_fifo")
    return faster_fifo.Queue(max_size_bytes=8 * 1024 * 1024)


def make_queue(kind):
    return {"shmring": shmring_queue, "multiprocessing.Queue": mp_queue, "faster-fifo": faster_fifo_queue,
            "queue.Queue": queue.Queue}[kind]()


def closing(q):
    if hasattr(q, "close"):
        q.close()
    if hasattr(q, "join_thread"):
        q.join_thread()


@pytest.fixture(params=["shmring", "multiprocessing.Queue", "faster-fifo", "queue.Queue"])
def any_queue(request):
    q = make_queue(request.param)
    yield q
    closing(q)


@pytest.fixture
def ring():
    q = shmring_queue()
    yield q
    q.close()


# ---- single messages: one put and one get, objects pickled ----

def test_put_get_object(benchmark, any_queue):
    item = ("order", 12345, 99.5)

    def once():
        any_queue.put(item)
        return any_queue.get()

    assert benchmark(once) == item


def test_put_get_bytes(benchmark, ring):
    def once():
        ring.put_bytes(PAYLOAD)
        return ring.get_bytes()

    assert benchmark(once) == PAYLOAD


def test_put_get_bytes_zeroq(benchmark):
    zeroq = pytest.importorskip("zeroq")
    import secrets
    q = zeroq.Queue("bench-zeroq-" + secrets.token_hex(8), element_size=len(PAYLOAD), capacity=8192)
    try:
        def once():
            q.put(PAYLOAD)
            return q.get()

        assert bytes(benchmark(once)) == PAYLOAD
    finally:
        q.close()


# ---- batches ----

def test_put_many_get_many(benchmark, ring):
    items = [PAYLOAD] * BATCH

    def once():
        ring.put_many(items)
        return ring.get_many(BATCH)

    assert benchmark(once) == items


def test_put_many_get_many_faster_fifo(benchmark):
    q = faster_fifo_queue()
    items = [PAYLOAD] * BATCH

    def once():
        q.put_many(items)
        return q.get_many(max_messages_to_get=BATCH)

    assert benchmark(once) == items
    closing(q)


# ---- numpy records ----

def ticks():
    chunk = np.zeros(RECORDS, TICK)
    chunk["ts"] = np.arange(RECORDS)
    chunk["price"] = chunk["ts"] * 0.25
    return chunk


@pytest.fixture
def records():
    q = shmring.Queue(65536, dtype=TICK)
    yield q
    q.close()


def test_put_array_get_array(benchmark, records):
    chunk = ticks()

    def once():
        records.put_array(chunk)
        return records.get_array(RECORDS)

    assert (benchmark(once) == chunk).all()


def test_put_array_get_array_out(benchmark, records):
    chunk = ticks()
    out = np.empty(RECORDS, TICK)

    def once():
        records.put_array(chunk)
        return records.get_array(out=out)

    assert benchmark(once) == RECORDS and (out == chunk).all()


def test_put_array_view(benchmark, records):
    chunk = ticks()

    def once():
        records.put_array(chunk)
        with records.view(RECORDS) as arr:
            return len(arr)

    assert benchmark(once) == RECORDS


# ---- latency: a round trip through a second process ----

def echo(requests, replies):
    while (message := requests.get_bytes()) != b"":
        replies.put_bytes(message)


@pytest.fixture
def echo_pair():
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    requests, replies = shmring.Queue(64, msg_size=128), shmring.Queue(64, msg_size=128)
    child = ctx.Process(target=echo, args=(requests, replies))
    child.start()
    yield requests, replies
    requests.put_bytes(b"")
    child.join(30)
    requests.close()
    replies.close()


def test_round_trip_bytes(benchmark, echo_pair):
    requests, replies = echo_pair

    def once():
        requests.put_bytes(PAYLOAD)
        return replies.get_bytes(timeout=10)

    assert benchmark(once) == PAYLOAD
