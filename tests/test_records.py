"""Records queues: numpy dtypes moved in batches, with zero-copy reservations and views."""
import gc
import hashlib
import multiprocessing as mp
import random
import threading
import tracemalloc

import numpy as np
import numpy.lib.recfunctions as rfn
import pytest

import shmring

pytestmark = pytest.mark.timeout(120)

CTX = mp.get_context("fork")

TICK = np.dtype([("ts", "<M8[ns]"), ("price", "<f8"), ("qty", "<i4"), ("side", "u1"), ("venue", "S3")])
MIXED = np.dtype([("id", "<u8"), ("ok", "?"), ("pos", "<f4", (3,)), ("tag", "S5"), ("n", "<i2")], align=True)
DTYPES = {
    "structured": MIXED,
    "float64": np.dtype("<f8"),
    "uint8 vectors": np.dtype([("v", "u1", (16,))]),
}


def packed(records):
    """The bytes of every field, without padding: what a records queue must keep exact."""
    return rfn.repack_fields(records).tobytes()


def make_records(dtype, n, seed):
    """Deterministic records of any of the dtypes above (raw random bytes, so every field varies)."""
    raw = np.random.default_rng(seed).integers(0, 256, size=n * dtype.itemsize, dtype=np.uint8)
    records = raw.view(dtype).copy()
    if dtype.names is None:  # keep floats comparable: no NaN bit patterns
        records = np.arange(n, dtype=dtype) * 1.5
    return records


# ---- basics and errors ----

def test_single_records_round_trip_as_numpy_scalars(make_queue):
    q = make_queue(8, dtype=TICK)
    assert q.msg_size == TICK.itemsize and q.dtype == TICK
    q.put((np.datetime64(5, "ns"), 101.5, 7, 1, b"XNY"))
    got = q.get()
    assert isinstance(got, np.void) and got.dtype == TICK
    assert got["price"] == 101.5 and got["venue"] == b"XNY"
    f = make_queue(4, dtype="f8")
    f.put(2.5)
    value = f.get_nowait()
    assert isinstance(value, np.float64) and value == 2.5


def test_put_array_get_array_keep_records_exact_and_in_order(make_queue):
    q = make_queue(1000, dtype=MIXED)
    records = make_records(MIXED, 700, 1)
    q.put_array(records[:300])
    q.put_array(records[300:])
    got = np.concatenate([q.get_array(250), q.get_array()])
    assert got.dtype == MIXED and packed(got) == packed(records)
    assert q.empty()


def test_wrong_dtypes_and_shapes_are_clear_errors_and_put_nothing(make_queue):
    q = make_queue(10, dtype="<f8")
    with pytest.raises(TypeError, match="float32"):
        q.put_array(np.zeros(3, "f4"))
    with pytest.raises(ValueError, match="dimensions"):
        q.put_array(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="numpy array"):
        q.put_array([1.0, 2.0])
    with pytest.raises(TypeError, match="int32"):
        q.put(np.int32(3))
    with pytest.raises(ValueError, match="one record"):
        q.put([1.0, 2.0])
    with pytest.raises(TypeError, match="float32"):
        q.get_array(out=np.zeros(3, "f4"))
    with pytest.raises(ValueError, match="contiguous"):
        q.get_array(out=np.zeros(6)[::2])
    assert q.qsize() == 0
    q.put_array(np.arange(6.0)[::2])  # not contiguous: copied, documented
    assert q.get_array().tolist() == [0.0, 2.0, 4.0]
    with pytest.raises(TypeError, match="records queue"):
        make_queue(4).put_array(np.zeros(2))
    with pytest.raises(TypeError, match="objects"):
        shmring.Queue(4, dtype=object)
    with pytest.raises(ValueError, match="itemsize"):
        shmring.Queue(4, 16, dtype="f8")


def test_a_records_handle_pickles_and_attaches_with_its_dtype(make_queue):
    import pickle

    q = make_queue(10, dtype=TICK)
    clone = pickle.loads(pickle.dumps(q))
    other = shmring.Queue.attach(q.name)
    assert clone.dtype == TICK == other.dtype
    clone.put_array(np.zeros(2, TICK))
    assert len(other.get_array()) == 2
    clone.close()
    other.close()


# ---- wrap-around, long arrays, out= ----

@pytest.mark.parametrize("offset", range(8))
def test_batches_wrap_round_the_ring_at_every_offset(make_queue, offset):
    q = make_queue(7, dtype="<i8")  # capacity 8
    if offset:  # move the positions round to this offset
        q.put_array(np.arange(offset, dtype="<i8"))
        assert q.get_array(out=np.empty(offset, "<i8")) == offset
    for k in range(1, 8):
        batch = np.arange(100 * k, 100 * k + k, dtype="<i8")
        q.put_array(batch)
        assert q.get_array().tolist() == batch.tolist()
        with q.reserve(k) as arr:  # a reservation never crosses the end of the ring
            arr[:] = np.arange(len(arr))
        with q.view() as view:
            assert view.tolist() == list(range(len(arr)))
        assert q.empty()


def test_an_array_longer_than_the_ring_streams_through(make_queue):
    q = make_queue(100, dtype=TICK)
    records = make_records(TICK, 10_000, 2)
    received = []

    def consume():
        n = 0
        while n < len(records):
            chunk = q.get_array(256, timeout=30)
            received.append(chunk)
            n += len(chunk)

    t = threading.Thread(target=consume)
    t.start()
    q.put_array(records, timeout=30)
    t.join(timeout=60)
    assert packed(np.concatenate(received)) == packed(records)


def test_put_array_that_times_out_says_how_many_records_went_in(make_queue):
    q = make_queue(5, dtype="<i4")
    with pytest.raises(shmring.Full) as e:
        q.put_array(np.arange(8, dtype="<i4"), timeout=0.01)
    assert e.value.count == 5
    assert q.get_array().tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(shmring.Empty):
        q.get_array(timeout=0.01)


def test_get_array_into_out_fills_it_and_allocates_nothing(make_queue):
    q = make_queue(64, dtype=MIXED)
    out = np.empty(32, MIXED)
    records = make_records(MIXED, 32, 3)
    q.put_array(records)  # warm-up round, then measure
    assert q.get_array(out=out) == 32
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(200):
            q.put_array(records)
            assert q.get_array(out=out) == 32
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    assert grown < 4096, f"get_array(out=) allocated {grown} bytes"
    assert packed(out) == packed(records)


# ---- zero-copy reservations and views ----

def test_a_reservation_is_committed_on_exit_and_then_read_only(make_queue):
    q = make_queue(16, dtype=TICK)
    with q.reserve(4) as arr:
        assert arr.flags.writeable and len(arr) == 4
        arr["qty"] = [1, 2, 3, 4]
    with pytest.raises(ValueError):
        arr["qty"] = 9  # committed: no longer ours to write
    assert q.get_array()["qty"].tolist() == [1, 2, 3, 4]


def test_a_reservation_that_raises_is_skipped_and_counts_as_done(make_queue):
    q = make_queue(16, dtype="<i8")
    with pytest.raises(RuntimeError):
        with q.reserve(3) as arr:
            arr[:] = 7
            raise RuntimeError("changed my mind")
    r = q.reserve(4)
    r.array[:] = [10, 11, 12, 13]
    r.commit(2)  # only the first two
    q.put(99)
    assert q.get_array().tolist() == [10, 11]
    assert q.get_array().tolist() == [99]
    assert q.join(timeout=0.01) is False  # 3 delivered, not yet task_done
    for _ in range(3):
        q.task_done()
    assert q.join(timeout=5) is True  # the 5 skipped ones count as done


def test_a_forgotten_reservation_is_aborted_not_leaked(make_queue):
    q = make_queue(8, dtype="<i8")
    r = q.reserve(2)
    r.array[:] = 1
    del r
    gc.collect()
    q.put(5)
    assert q.get() == 5 and q.empty()


def test_a_view_is_released_on_exit_and_its_slots_reused(make_queue):
    q = make_queue(4, dtype="<i8")
    q.put_array(np.arange(4, dtype="<i8"))
    with q.view(4) as arr:
        assert not arr.flags.writeable and arr.tolist() == [0, 1, 2, 3]
        with pytest.raises(shmring.Full):  # the viewed slots are still ours
            _put_from_another_thread(q, np.arange(1, dtype="<i8"))
    _put_from_another_thread(q, np.arange(10, 14, dtype="<i8"))  # released: room again
    # documented: after release the array shows whatever the ring holds by then
    assert arr.tolist() == [10, 11, 12, 13]
    assert q.get_array().tolist() == [10, 11, 12, 13]


def _put_from_another_thread(q, records):
    errors = []
    t = threading.Thread(target=lambda: _try(errors, q.put_array, records, False))
    t.start()
    t.join(30)
    if errors:
        raise errors[0]


def _try(errors, fn, *args):
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - re-raised in the caller
        errors.append(e)


def test_while_a_view_is_open_the_thread_cannot_claim_again(make_queue):
    q = make_queue(4, dtype="<i8")
    q.put_array(np.arange(3, dtype="<i8"))
    v = q.peek_array(1)
    with pytest.raises(RuntimeError, match="commit or release"):
        q.get()
    v.release()
    with pytest.raises(ValueError, match="already released"):
        v.release()
    assert q.get_array().tolist() == [1, 2]


def test_a_view_kept_after_close_never_faults(make_queue):
    q = shmring.Queue(4, dtype="<i8")
    q.put_array(np.array([41, 42], dtype="<i8"))
    v = q.peek_array(2)
    arr = v.array
    v.release()
    q.close()
    assert arr.tolist() == [41, 42]  # still mapped while the array lives
    del arr, v
    gc.collect()


# ---- across processes ----

def _produce(q, dtype_name, n, seed, chunk):
    records = make_records(DTYPES[dtype_name], n, seed)
    rng = random.Random(seed)
    i = 0
    while i < n:
        k = min(rng.randint(1, chunk), n - i)
        if rng.random() < 0.5:
            q.put_array(records[i:i + k], timeout=60)
        else:
            with q.reserve(k, timeout=60) as arr:
                arr[:] = records[i:i + len(arr)]
                k = len(arr)
        i += k


def _consume_hash(q, n, results, chunk):
    h = hashlib.sha256()
    got = 0
    out = np.empty(chunk, q.dtype)
    while got < n:
        if got % 3:
            k = q.get_array(out=out, timeout=60)
            h.update(packed(out[:k]))
        else:
            with q.view(chunk, timeout=60) as arr:
                k = len(arr)
                h.update(packed(arr))
        got += k
    results.put(h.hexdigest())


# 65536: the smallest records ring with 16-bit slot words (csrc/layout.h)
@pytest.mark.parametrize("dtype_name, maxsize", [(name, 4096) for name in sorted(DTYPES)] + [("structured", 65536)])
def test_a_million_records_cross_processes_exactly(dtype_name, maxsize):
    n, seed = 1_000_000, 7
    q = shmring.Queue(maxsize, dtype=DTYPES[dtype_name])
    results = CTX.Queue()
    procs = [CTX.Process(target=_produce, args=(q, dtype_name, n, seed, 4096)),
             CTX.Process(target=_consume_hash, args=(q, n, results, 3000))]
    try:
        for p in procs:
            p.start()
        digest = results.get(timeout=110)
        for p in procs:
            p.join(30)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        q.close()
    assert digest == hashlib.sha256(packed(make_records(DTYPES[dtype_name], n, seed))).hexdigest()


RECORD = np.dtype([("producer", "<u4"), ("seq", "<u4")])


def _stress_produce(q, producer, count, seed):
    rng = random.Random(seed)
    i = 0
    while i < count:
        k = min(rng.randint(1, 64), count - i)
        if rng.random() < 0.5:
            batch = np.empty(k, RECORD)
            batch["producer"], batch["seq"] = producer, np.arange(i, i + k)
            q.put_array(batch, timeout=60)
        else:
            with q.reserve(k, timeout=60) as arr:
                k = len(arr)
                arr["producer"], arr["seq"] = producer, np.arange(i, i + k)
        i += k


def _stress_consume(q, stop, results, n_producers, count):
    seen = np.zeros((n_producers, count), np.uint8)
    last = np.full(n_producers, -1, np.int64)
    errors = 0
    while not (stop.is_set() and q.empty()):
        try:
            if random.random() < 0.5:
                batch = q.get_array(64, timeout=0.05)
            else:
                with q.view(64, timeout=0.05) as arr:
                    batch = arr.copy()
        except shmring.Empty:
            continue
        for producer in np.unique(batch["producer"]):
            seqs = batch["seq"][batch["producer"] == producer].astype(np.int64)
            errors += int(seqs[0] <= last[producer]) + int((np.diff(seqs) <= 0).sum())
            last[producer] = seqs[-1]
        np.add.at(seen, (batch["producer"], batch["seq"]), 1)
    results.put((errors, seen))


@pytest.mark.parametrize("maxsize", [512, 65536])
def test_mpmc_stress_with_record_batches_no_loss_no_duplicate_in_order(maxsize):
    n_producers, n_consumers, count = 3, 3, 100_000
    q = shmring.Queue(maxsize, dtype=RECORD)
    stop, results = CTX.Event(), CTX.Queue()
    producers = [CTX.Process(target=_stress_produce, args=(q, p, count, p)) for p in range(n_producers)]
    consumers = [CTX.Process(target=_stress_consume, args=(q, stop, results, n_producers, count))
                 for _ in range(n_consumers)]
    try:
        for p in consumers + producers:
            p.start()
        for p in producers:
            p.join(100)
            assert p.exitcode == 0
        stop.set()
        reports = [results.get(timeout=60) for _ in consumers]
    finally:
        for p in consumers + producers:
            if p.is_alive():
                p.kill()
        q.close()
    assert sum(errors for errors, _ in reports) == 0, "a consumer saw a producer's records out of order"
    total = sum(seen.astype(np.int64) for _, seen in reports)
    assert total.min() == 1, "a record was lost"
    assert total.max() == 1, "a record was delivered twice"


def test_a_records_queue_reports_its_size(make_queue):
    q = make_queue(3, dtype="<i8")
    q.put_array(np.arange(3, dtype="<i8"))
    assert q.full() and q.qsize() == 3
    assert q.get_many(2) == [0, 1]
    q.put_many([5.0, 6.0])
    assert q.get_array().tolist() == [2, 5, 6]
