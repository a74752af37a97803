"""Semantics of every Queue method within one process."""
import array
import math
import os
import pickle
import queue
import threading

import pytest

import shmring
from conftest import wait_until
from segments import COMMITTED, READ_POS_OFFSET, patch_segment, read_header, segment_exists, slot_meta_offset, slot_state

pytestmark = pytest.mark.timeout(30)


# ---- put / get ----

def test_put_get_is_fifo_and_round_trips_objects(make_queue):
    q = make_queue(100)
    items = [1, "two", 3.0, (4, [5]), {"six": b"7"}, None, b"x" * 500]
    for item in items:
        q.put(item)
    assert [q.get() for _ in items] == items


def test_full_and_empty_are_the_stdlib_exceptions(make_queue):
    q = make_queue(2, 64)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(shmring.Empty):
        q.get(block=False)
    q.put_nowait(1)
    q.put(2, block=False)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(shmring.Full):
        q.put(3, timeout=0)
    assert issubclass(shmring.Full, queue.Full) and issubclass(shmring.Empty, queue.Empty)


@pytest.mark.parametrize("maxsize", [1, 5, 1000, 1024])
def test_maxsize_is_exact_whatever_the_internal_capacity(make_queue, maxsize):
    q = make_queue(maxsize, 16)
    for i in range(maxsize):
        q.put_bytes(i.to_bytes(4, "little"), block=False)
    assert q.full() and q.qsize() == maxsize
    with pytest.raises(shmring.Full):
        q.put_bytes(b"more", block=False)
    q.get_bytes()
    q.put_bytes(b"last", block=False)
    with pytest.raises(shmring.Full):
        q.put_bytes(b"more", block=False)


def test_nonpositive_maxsize_gives_the_documented_default(make_queue):
    assert make_queue(0).maxsize == shmring.DEFAULT_MAXSIZE
    assert make_queue(-5).maxsize == shmring.DEFAULT_MAXSIZE
    assert make_queue().msg_size == shmring.DEFAULT_MSG_SIZE


@pytest.mark.parametrize("bad", [0, -1])
def test_msg_size_below_one_is_refused(bad):
    with pytest.raises(ValueError, match="msg_size"):
        shmring.Queue(4, bad)


def test_bytes_payload_sizes_at_the_edges_round_trip(make_queue):
    q = make_queue(8, 100)
    for size in (0, 1, 99, 100):
        payload = bytes(range(size % 256)) * (size // 256) + bytes(range(size % 256))
        q.put_bytes(payload)
        assert q.get_bytes() == payload


def test_oversize_message_names_both_sizes_and_leaves_the_queue_usable(make_queue):
    q = make_queue(4, 100)
    q.put("before")
    with pytest.raises(shmring.MessageTooLarge) as e:
        q.put_bytes(b"x" * 101)
    assert isinstance(e.value, ValueError)
    assert "101" in str(e.value) and "100" in str(e.value)
    with pytest.raises(ValueError, match="100 bytes"):
        q.put(b"y" * 200)
    q.put("after")
    assert [q.get(), q.get()] == ["before", "after"]
    assert q.qsize() == 0


def test_put_bytes_accepts_any_buffer(make_queue):
    q = make_queue(8, 64)
    q.put_bytes(bytearray(b"ba"))
    q.put_bytes(memoryview(b"mview"))
    q.put_bytes(array.array("i", [1, 2]))
    q.put_bytes(memoryview(b"abcdef")[::2])  # not contiguous: copied in order
    assert q.get_bytes() == b"ba"
    assert q.get_bytes() == b"mview"
    assert q.get_bytes() == array.array("i", [1, 2]).tobytes()
    assert q.get_bytes() == b"ace"
    with pytest.raises(TypeError):
        q.put_bytes("a str is not bytes")


def test_get_returns_objects_independent_of_ring_memory(make_queue):
    q = make_queue(1, 64)  # one slot: the next put overwrites it
    q.put_bytes(b"first")
    first = q.get_bytes()
    q.put(bytearray(b"second"))
    second = q.get()
    q.put_bytes(b"third!")
    assert first == b"first"
    second[0:1] = b"S"
    assert second == bytearray(b"Second")
    assert q.get_bytes() == b"third!"


# ---- timeouts ----

@pytest.mark.parametrize("bad", [-1, -0.001, math.nan])
def test_negative_or_nan_timeout_is_a_value_error(make_queue, bad):
    q = make_queue(2)
    with pytest.raises(ValueError, match="timeout"):
        q.get(timeout=bad)
    with pytest.raises(ValueError, match="timeout"):
        q.put(1, timeout=bad)
    with pytest.raises(ValueError, match="timeout"):
        q.get_many(timeout=bad)
    assert q.qsize() == 0  # nothing was put by the refused call


def test_timeout_is_ignored_without_blocking_as_in_the_stdlib(make_queue):
    q = make_queue(2)
    q.put(1, block=False, timeout=-1)
    assert q.get(block=False, timeout=-1) == 1


# ---- batches ----

def test_put_many_get_many_keep_order(make_queue):
    q = make_queue(1000)
    q.put_many(range(600))
    got = q.get_many(max_items=250)
    assert got == list(range(250))
    rest = q.get_many()
    assert got + rest == list(range(600))


def test_get_many_blocking_returns_what_is_there_up_to_max_items(make_queue):
    q = make_queue(100)
    q.put_many(["a", "b", "c"])
    assert q.get_many(max_items=10, timeout=5) == ["a", "b", "c"]
    q.put("d")
    assert q.get_many(max_items=1) == ["d"]


def test_get_many_that_times_out_raises_empty(make_queue):
    q = make_queue(4)
    with pytest.raises(queue.Empty):
        q.get_many(timeout=0.01)
    with pytest.raises(queue.Empty):
        q.get_many(block=False)
    with pytest.raises(ValueError):
        q.get_many(max_items=0)


def test_put_many_longer_than_the_queue_reports_how_many_went_in(make_queue):
    q = make_queue(5)
    with pytest.raises(shmring.Full) as e:
        q.put_many(range(8), timeout=0.01)
    assert e.value.count == 5
    assert q.get_many() == [0, 1, 2, 3, 4]
    q.put_many(range(3), block=False)
    with pytest.raises(shmring.Full) as e:
        q.put_many(range(3, 6), block=False)
    assert e.value.count == 2
    assert q.get_many() == [0, 1, 2, 3, 4]


def test_get_many_hands_out_messages_around_one_that_cannot_be_unpickled(make_queue):
    q = make_queue(10)
    q.put("a")
    q.put_bytes(b"not a pickle")
    q.put_many(["c", "d"])
    assert q.get_many() == ["a", "c", "d"]  # the others are delivered at once ...
    assert q.empty() and q.qsize() == 0     # ... and nothing is held back outside the ring
    with pytest.raises(pickle.UnpicklingError):
        q.get_many()                        # the bad one raises in the next call
    with pytest.raises(shmring.Empty):
        q.get_many(block=False)
    q.put_bytes(b"alone and bad")
    with pytest.raises(pickle.UnpicklingError):
        q.get_many()                        # alone in its batch: at once
    assert q.stats()["lost"] == 0


def test_get_many_hands_out_messages_around_a_corrupt_slot(make_queue):
    q = make_queue(10)
    q.put_many(["a", "b", "c"])
    patch_segment(q.name, slot_meta_offset(q.name, 1) + 4, (10**6).to_bytes(4, "little"))  # its length word
    assert q.get_many() == ["a", "c"]
    with pytest.raises(shmring.SegmentError, match="length"):
        q.get_many()
    assert q.empty()
    q.put("still usable")
    assert q.get() == "still usable"


@pytest.mark.parametrize("where, value", [
    ("seq", None),            # the head slot claims a later lap than read_pos
    ("read_pos", 10**6),      # readers ahead of writers
])
def test_counters_contradicting_the_slots_raise_instead_of_spinning(make_queue, where, value):
    q = make_queue(4)
    q.put(1)
    if where == "seq":
        h = read_header(q.name)
        later = slot_state(h, h["capacity"], COMMITTED)  # committed, but a lap later
        patch_segment(q.name, slot_meta_offset(q.name, 0), later.to_bytes(4, "little"))
        with pytest.raises(shmring.SegmentError, match="corrupt"):
            q.get_nowait()
    else:
        patch_segment(q.name, READ_POS_OFFSET, value.to_bytes(8, "little"))
        with pytest.raises(shmring.SegmentError, match="corrupt"):
            for i in range(q.maxsize):  # noticed at the latest when the cached read_pos is refreshed
                q.put_nowait(i)


def test_put_many_with_an_oversize_item_puts_nothing(make_queue):
    q = make_queue(10, 64)
    with pytest.raises(shmring.MessageTooLarge):
        q.put_many([1, 2, b"x" * 100, 4])
    assert q.qsize() == 0
    q.put_many([])
    assert q.empty()


def test_put_many_streams_through_a_small_queue_with_a_consumer(make_queue):
    q = make_queue(7)
    received = []
    consumer = threading.Thread(target=lambda: received.extend(q.get() for _ in range(1000)))
    consumer.start()
    q.put_many(range(1000), timeout=20)
    consumer.join(timeout=20)
    assert received == list(range(1000))


# ---- sizes, join, close ----

def test_qsize_empty_full_follow_the_contents(make_queue):
    q = make_queue(3)
    assert (q.qsize(), q.empty(), q.full()) == (0, True, False)
    q.put(1)
    assert (q.qsize(), q.empty(), q.full()) == (1, False, False)
    q.put_many([2, 3])
    assert (q.qsize(), q.empty(), q.full()) == (3, False, True)


def test_task_done_and_join(make_queue):
    q = make_queue(10)
    assert q.join(timeout=0) is True  # nothing put yet
    q.put_many([1, 2, 3])
    assert q.join(timeout=0.01) is False
    for _ in range(3):
        q.get()
    q.task_done()
    q.task_done()
    assert q.join(timeout=0.01) is False
    q.task_done()
    assert q.join(timeout=1) is True
    assert q.join() is True
    with pytest.raises(ValueError, match="too many"):
        q.task_done()


def test_join_waits_for_task_done_from_another_thread(make_queue):
    q = make_queue(10)
    q.put("job")

    def worker():
        q.get()
        q.task_done()

    t = threading.Thread(target=worker)
    t.start()
    assert q.join(timeout=10) is True
    t.join()


ALL_METHODS = [
    ("put", (1,)), ("get", ()), ("put_nowait", (1,)), ("get_nowait", ()),
    ("put_bytes", (b"x",)), ("get_bytes", ()), ("put_many", ([1],)), ("get_many", ()),
    ("qsize", ()), ("empty", ()), ("full", ()), ("task_done", ()), ("join", ()), ("stats", ()),
]


@pytest.mark.parametrize("method, args", ALL_METHODS)
def test_a_closed_queue_raises_a_clear_error(method, args):
    q = shmring.Queue(4)
    q.put(1)
    q.close()
    with pytest.raises(shmring.QueueClosed, match="closed"):
        getattr(q, method)(*args)
    assert issubclass(shmring.QueueClosed, ValueError)
    q.close()  # idempotent


def test_close_unlinks_and_context_manager_closes(make_queue):
    with shmring.Queue(4) as q:
        name = q.name
        assert segment_exists(name)
    assert q.closed and not segment_exists(name)
    assert "closed" in repr(q)


def test_repr_and_properties(make_queue):
    q = make_queue(12, 48, name="shmring-test-repr")
    assert q.name == "shmring-test-repr"
    assert (q.maxsize, q.msg_size) == (12, 48)
    assert repr(q) == "<shmring.Queue name='shmring-test-repr' maxsize=12 msg_size=48 qsize~0>"


def test_default_names_are_random_and_prefixed(make_queue):
    a, b = make_queue(1), make_queue(1)
    assert a.name.startswith("shmring-") and a.name != b.name


@pytest.mark.parametrize("name", ["", "a/b", "x" * 31, "sp ace", "é"])
def test_invalid_names_are_refused(name):
    with pytest.raises(ValueError, match="name"):
        shmring.Queue(1, name=name)


def test_creating_an_existing_name_fails(make_queue):
    q = make_queue(1, name="shmring-test-dup")
    with pytest.raises(FileExistsError):
        shmring.Queue(1, name=q.name)


# ---- handles ----

def test_attach_by_name_shares_the_ring(make_queue):
    q = make_queue(10)
    other = shmring.Queue.attach(q.name)
    other.put("from the other handle")
    assert q.get() == "from the other handle"
    other.close()
    assert segment_exists(q.name), "an attached handle never unlinks"
    q.put(1)
    assert q.get() == 1


def test_attach_to_a_missing_segment_raises(make_queue):
    with pytest.raises(shmring.SegmentNotFound):
        shmring.Queue.attach("shmring-does-not-exist")
    assert issubclass(shmring.SegmentNotFound, FileNotFoundError)


def test_pickled_handle_attaches_at_unpickling(make_queue):
    q = make_queue(10, 64)
    data = pickle.dumps(q)
    clone = pickle.loads(data)
    assert (clone.name, clone.maxsize, clone.msg_size) == (q.name, 10, 64)
    clone.put("hi")
    assert q.get() == "hi"
    clone.close()
    q.close()
    with pytest.raises(shmring.SegmentNotFound):
        pickle.loads(data)  # the segment is gone: pickle.loads itself raises
    with pytest.raises(ValueError, match="closed"):
        pickle.dumps(q)


def test_unpickling_a_handle_whose_name_was_reused_raises(make_queue):
    q = make_queue(10, 64, name="shmring-test-reuse")
    data = pickle.dumps(q)
    q.close()
    make_queue(20, 64, name="shmring-test-reuse")
    with pytest.raises(shmring.SegmentError, match="reused"):
        pickle.loads(data)


# ---- threads ----

@pytest.mark.timeout(60)
def test_threads_of_one_process_share_a_queue_safely(make_queue):
    q = make_queue(64, 32)
    n_threads, per_thread = 4, 5000
    got = []
    lock = threading.Lock()

    def produce(tid):
        for i in range(per_thread):
            q.put((tid, i), timeout=30)

    def consume():
        mine = [q.get(timeout=30) for _ in range(per_thread)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(n_threads)]
    threads += [threading.Thread(target=consume) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(got) == sorted((t, i) for t in range(n_threads) for i in range(per_thread))


def test_each_thread_is_a_participant_until_it_ends(make_queue):
    q = make_queue(4)
    n = 5
    started, finish = threading.Barrier(n + 1, timeout=30), threading.Event()

    def worker():
        q.qsize()          # no participant needed to look
        q.put_nowait(1)    # the first operation registers this thread
        q.get_nowait()
        started.wait()
        finish.wait(30)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    started.wait()
    assert q.stats()["participants"] == 1 + n
    finish.set()
    for t in threads:
        t.join(timeout=30)
    wait_until(lambda: q.stats()["participants"] == 1, what="ended threads to leave the table")


def test_entries_of_exited_processes_are_reused(make_queue):
    q = make_queue(4, max_participants=8)
    for i in range(40):      # five times the table size
        pid = os.fork()
        if pid == 0:
            try:
                q.put(i)     # joins the table; exits without leaving it
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert q.get(timeout=10) == i
    assert q.stats()["participants"] == 1
