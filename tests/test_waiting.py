"""Primitives for layers built in Python (asyncio, worker pools, a bridge):
wait_readable / wait_writable, and raw batches of bytes that are never decoded."""
import multiprocessing as mp
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import shmring
from conftest import child_python_env, interrupt_when_asleep, wait_until
from shmring import _core

pytestmark = pytest.mark.timeout(60)

WORST_SLACK = 0.100


@pytest.fixture
def long_slices():
    """Make every C wait 10 s long: then only a real wake-up ends one early."""
    _core._set_wait_slice(10.0)
    yield
    _core._set_wait_slice(0.05)


def in_thread(fn, *args):
    """Run fn in a thread; return (thread, box) where box gets ("ok", value) or ("err", exc)."""
    box = []

    def run():
        try:
            box.append(("ok", fn(*args)))
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box.append(("err", e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


# ---- wait_readable / wait_writable ----

def test_wait_readable_is_true_at_once_when_a_message_is_there(make_queue):
    q = make_queue(4)
    q.put("x")
    t0 = time.monotonic()
    assert q.wait_readable(timeout=0) is True
    assert q.wait_readable() is True
    assert time.monotonic() - t0 < 1
    assert q.get_nowait() == "x"          # waiting took nothing


def test_wait_writable_is_true_at_once_when_there_is_room(make_queue):
    q = make_queue(2)
    assert q.wait_writable(timeout=0) is True
    q.put(1)
    assert q.wait_writable(timeout=0) is True
    assert q.qsize() == 1


@pytest.mark.parametrize("timeout", [0, 0.01, 0.1])
def test_wait_readable_on_an_empty_queue_times_out_with_false(make_queue, timeout):
    q = make_queue(4)
    t0 = time.monotonic()
    assert q.wait_readable(timeout=timeout) is False
    late = time.monotonic() - t0 - timeout
    assert 0 <= late < WORST_SLACK


@pytest.mark.parametrize("timeout", [0, 0.01, 0.1])
def test_wait_writable_on_a_full_queue_times_out_with_false(make_queue, timeout):
    q = make_queue(1)
    q.put("fill")
    t0 = time.monotonic()
    assert q.wait_writable(timeout=timeout) is False
    late = time.monotonic() - t0 - timeout
    assert 0 <= late < WORST_SLACK
    assert q.get() == "fill"


def test_wait_readable_wakes_when_another_thread_puts(make_queue, long_slices):
    q = make_queue(4)
    t, box = in_thread(q.wait_readable, 30)
    wait_until(lambda: q.stats()["readers_waiting"] == 1, what="the waiter asleep")
    t0 = time.monotonic()
    q.put("wake")
    t.join(10)
    assert box == [("ok", True)]
    assert time.monotonic() - t0 < 2     # woken, not the end of a 10 s slice
    assert q.get_nowait() == "wake"


def test_wait_writable_wakes_when_another_thread_gets(make_queue, long_slices):
    q = make_queue(1)
    q.put("fill")
    t, box = in_thread(q.wait_writable, 30)
    wait_until(lambda: q.stats()["writers_waiting"] == 1, what="the waiter asleep")
    t0 = time.monotonic()
    assert q.get() == "fill"
    t.join(10)
    assert box == [("ok", True)]
    assert time.monotonic() - t0 < 2


@pytest.mark.parametrize("which", ["readable", "writable"])
def test_close_ends_a_wait_with_queue_closed(make_queue, long_slices, which):
    q = make_queue(1)
    if which == "writable":
        q.put("fill")
    t, box = in_thread(getattr(q, "wait_" + which), 30)
    wait_until(lambda: q.stats()[f"{'readers' if which == 'readable' else 'writers'}_waiting"] == 1,
               what="the waiter asleep")
    q.close()
    t.join(10)
    assert not t.is_alive()
    assert len(box) == 1 and box[0][0] == "err" and isinstance(box[0][1], shmring.QueueClosed), box
    with pytest.raises(shmring.QueueClosed):
        q.wait_readable(0)


def test_a_bad_timeout_is_refused_naming_it(make_queue):
    q = make_queue(1)
    with pytest.raises(ValueError, match="got -1"):
        q.wait_readable(-1)
    with pytest.raises(ValueError, match="got nan"):
        q.wait_writable(float("nan"))


CTRL_C_WAITER = """
    import sys, time, shmring
    shmring._core._set_wait_slice(float(sys.argv[3]))
    q = shmring.Queue.attach(sys.argv[1])
    print("ready", flush=True)
    try:
        getattr(q, "wait_" + sys.argv[2])()    # timeout=None: as long as it takes
        print("returned", time.monotonic(), flush=True)
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
"""


@pytest.mark.parametrize("which", ["readable", "writable"])
@pytest.mark.parametrize("slice_s", ["0.05", "10.0"])
def test_ctrl_c_interrupts_a_wait_without_timeout_promptly(make_queue, which, slice_s):
    q = make_queue(1)
    if which == "writable":
        q.put("fill")
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CTRL_C_WAITER), q.name, which, slice_s],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_python_env())
    out, err, sent = interrupt_when_asleep(q, child, "readers_waiting" if which == "readable" else "writers_waiting")
    word, when = out.split()
    assert word == "interrupted", err
    assert float(when) - sent < 0.2   # ~50 ms at most on a quiet machine; slack for a loaded one


def test_wait_readable_recovers_from_a_producer_killed_in_its_put(make_queue):
    q = make_queue(8, 64, recover_after=0.05)
    code = """
        import sys, shmring
        from shmring import _core
        q = shmring.Queue.attach(sys.argv[1])
        _core._set_test_hook("put_claimed", 600)
        print("claiming", flush=True)
        q.put_bytes(b"never committed")
    """
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), q.name],
                             stdout=subprocess.PIPE, text=True, env=child_python_env())
    try:
        assert child.stdout.readline().strip() == "claiming"
        wait_until(lambda: q.stats()["put"] == 1, what="the claim")
        q.put_bytes(b"after")
        assert q.wait_readable(timeout=0) is False   # the next message is the dead one's
        child.kill()
        child.wait(10)
        t0 = time.monotonic()
        assert q.wait_readable(timeout=20) is True
        assert time.monotonic() - t0 < 10
        assert q.get_bytes(timeout=10) == b"after"
        assert q.stats()["lost"] == 1
    finally:
        child.kill()
        child.wait(10)


def _wait_then_get(q, results):
    ok = q.wait_readable(timeout=30)
    results.put((ok, q.get_nowait()))


def test_wait_readable_across_processes(make_queue, start_method):
    q = make_queue(4)
    ctx = mp.get_context(start_method)
    results = ctx.Queue()
    p = ctx.Process(target=_wait_then_get, args=(q, results))
    p.start()
    try:
        wait_until(lambda: q.stats()["readers_waiting"] == 1, timeout=30, what="the child waiting")
        q.put({"n": 1})
        assert results.get(timeout=30) == (True, {"n": 1})
    finally:
        p.join(30)
        if p.is_alive():
            p.kill()
    assert p.exitcode == 0


def test_a_poll_loop_on_wait_readable_gets_every_message_once(make_queue):
    """What an event loop does: wait, then take what is there without blocking."""
    q = make_queue(16)
    n = 2000
    producer, _ = in_thread(lambda: [q.put(i, timeout=30) for i in range(n)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        if q.wait_readable(timeout=1):
            try:
                got.extend(q.get_many(block=False))
            except shmring.Empty:  # allowed: another consumer (none here) or a spurious True
                pass
    producer.join(30)
    assert got == list(range(n))


# ---- raw batches: bytes in, bytes out, never decoded ----

def test_put_many_bytes_and_get_many_bytes_move_bytes_in_order(make_queue):
    q = make_queue(8, 32)
    items = [b"a", bytearray(b"bb"), memoryview(b"ccc"), b"", b"x" * 32]
    q.put_many_bytes(items)
    got = q.get_many_bytes()
    assert got == [b"a", b"bb", b"ccc", b"", b"x" * 32]
    assert all(type(b) is bytes for b in got)


def test_get_many_bytes_never_unpickles(make_queue):
    q = make_queue(8)
    hostile = pickle.dumps(InterruptsIfUnpickled(), protocol=5)
    q.put(InterruptsIfUnpickled())
    q.put_bytes(b"not a pickle")
    assert q.get_many_bytes(max_items=10) == [hostile, b"not a pickle"]
    assert q.stats()["lost"] == 0


class InterruptsIfUnpickled:
    def __reduce__(self):
        return (os.kill, (os.getpid(), signal.SIGINT))


def test_bytes_of_a_pickled_batch_bridge_to_another_queue_unchanged(make_queue):
    a, b = make_queue(8), make_queue(8)
    a.put_many([1, "two", {"three": 3}])
    b.put_many_bytes(a.get_many_bytes())        # a bridge: never unpickles, never re-pickles
    assert b.get_many() == [1, "two", {"three": 3}]


def test_get_many_bytes_takes_at_most_max_items_and_what_is_there(make_queue):
    q = make_queue(16, 8)
    q.put_many_bytes([bytes([i]) for i in range(10)])
    assert q.get_many_bytes(max_items=3) == [b"\0", b"\1", b"\2"]
    assert len(q.get_many_bytes(max_items=100)) == 7
    with pytest.raises(shmring.Empty):
        q.get_many_bytes(block=False)
    t0 = time.monotonic()
    with pytest.raises(shmring.Empty):
        q.get_many_bytes(timeout=0.05)
    assert time.monotonic() - t0 < 0.05 + WORST_SLACK


def test_put_many_bytes_checks_every_item_before_putting_any(make_queue):
    q = make_queue(8, 4)
    with pytest.raises(shmring.MessageTooLarge, match="is 5 bytes"):
        q.put_many_bytes([b"ok", b"12345"])
    with pytest.raises(TypeError, match="item 1 is a int, not a bytes-like object"):
        q.put_many_bytes([b"ok", 7])
    with pytest.raises(TypeError, match="item 0 is a str"):
        q.put_many_bytes(["text"])
    assert q.qsize() == 0
    items = [b"ok"]
    q.put_many_bytes(items)
    assert items == [b"ok"] and q.get_bytes() == b"ok"   # the caller's list is left alone


def test_put_many_bytes_that_times_out_says_how_many_went_in(make_queue):
    q = make_queue(3, 8)
    with pytest.raises(shmring.Full) as info:
        q.put_many_bytes([b"1", b"2", b"3", b"4", b"5"], timeout=0.05)
    assert info.value.count == 3
    assert q.get_many_bytes() == [b"1", b"2", b"3"]
    with pytest.raises(shmring.Full) as info:
        q.put_many_bytes([b"1", b"2", b"3", b"4"], block=False)
    assert info.value.count == 3


def test_put_many_bytes_of_a_non_contiguous_buffer_copies_it(make_queue):
    np = pytest.importorskip("numpy")
    q = make_queue(4, 16)
    strided = np.arange(8, dtype=np.uint8)[::2]
    q.put_many_bytes([strided])
    assert q.get_bytes() == bytes([0, 2, 4, 6])


def test_a_corrupt_slot_in_a_raw_batch_loses_nothing_else(make_queue):
    from segments import patch_segment, read_header
    q = make_queue(8, 16)
    q.put_many_bytes([b"first", b"bad", b"third"])
    h = read_header(q.name)
    # slot word of position 1: seq (32 bits) + length (32 bits); make the length impossible
    patch_segment(q.name, h["meta_offset"] + 8 * 1 + 4, struct.pack("<I", 1 << 20))
    assert q.get_many_bytes() == [b"first", b"third"]
    with pytest.raises(shmring.SegmentError):
        q.get_many_bytes(block=False)          # the deferred error, raised once
    with pytest.raises(shmring.Empty):
        q.get_many_bytes(block=False)
