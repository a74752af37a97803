"""Queue.shutdown(immediate=False): Python 3.13's queue.Queue.shutdown, across processes.

Puts raise ShutDown in every process from then on (blocked producers wake), getters
drain what is there and then raise it (at once with immediate=True, whose leftovers
are discarded and counted done for join()). Children that block set 10 s wait
slices: only the futex wake-up can end their waits within the bounds checked here.
"""
import multiprocessing as mp
import os
import signal
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest

import shmring
from conftest import child_python_env, wait_until
from segments import DRAINING, READ_POS_OFFSET, SHUT, TASKS_DONE_OFFSET, WRITE_POS_OFFSET, patch_segment, read_segment
from shmring import _core

pytestmark = pytest.mark.timeout(60)

CTX = mp.get_context("fork")
WOKEN_WITHIN = 0.25   # seconds from shutdown() to a blocked call's ShutDown (10 s slices)


def _getter(q, conn):
    """Get until ShutDown; report every item, then ("ShutDown", when)."""
    import time

    _core._set_wait_slice(10.0)
    while True:
        try:
            item = q.get(timeout=30)
        except shmring.ShutDown:
            conn.send(("ShutDown", time.monotonic()))
            return
        except BaseException as e:  # noqa: BLE001 - reported, then failed on
            conn.send((type(e).__name__, time.monotonic()))
            return
        conn.send(("item", item))


def _putter(q, conn):
    import time

    _core._set_wait_slice(10.0)
    try:
        q.put("blocked", timeout=30)
    except shmring.ShutDown:
        conn.send(("ShutDown", time.monotonic()))
        return
    except BaseException as e:  # noqa: BLE001
        conn.send((type(e).__name__, time.monotonic()))
        return
    conn.send(("put", time.monotonic()))


def _start(target, *args):
    recv, send = CTX.Pipe(duplex=False)
    p = CTX.Process(target=target, args=(*args, send))
    p.start()
    send.close()
    return p, recv


def _received(conn, timeout=20.0):
    """Everything a child reports until it ends (fails rather than hangs)."""
    out = []
    while True:
        assert conn.poll(timeout), f"child silent for {timeout}s: {out}"
        try:
            out.append(conn.recv())
        except EOFError:
            return out


def _finish(procs):
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join(5)
            pytest.fail(f"child {p.pid} did not end")


def test_blocked_getters_in_other_processes_wake_with_shutdown_after_the_drain(make_queue):
    import time

    q = make_queue(8)
    children = [_start(_getter, q) for _ in range(2)]
    wait_until(lambda: q.stats()["readers_waiting"] >= 2, what="both getters asleep")
    q.put_many(["a", "b", "c"])
    q.put("d")
    wait_until(lambda: q.stats()["got"] == 4 and q.stats()["readers_waiting"] >= 2,
               what="the four taken and both getters asleep again")
    sent = time.monotonic()
    q.shutdown()
    reports = [_received(conn) for _, conn in children]
    _finish([p for p, _ in children])
    items = sorted(item for rep in reports for what, item in rep if what == "item")
    assert items == ["a", "b", "c", "d"]
    ends = [rep[-1] for rep in reports]
    assert [what for what, _ in ends] == ["ShutDown", "ShutDown"]
    assert all(0 <= when - sent < WOKEN_WITHIN for _, when in ends), (sent, ends)
    assert q.stats()["readers_waiting"] == 0


def test_getters_drain_what_is_left_then_raise(make_queue):
    q = make_queue(8)
    q.put_many([1, 2, 3])
    q.shutdown()
    p, conn = _start(_getter, q)
    report = _received(conn)
    _finish([p])
    assert [item for what, item in report if what == "item"] == [1, 2, 3]
    assert report[-1][0] == "ShutDown"
    with pytest.raises(shmring.ShutDown):
        q.get_nowait()
    with pytest.raises(shmring.ShutDown):
        q.get_many(timeout=5)
    assert q.wait_readable(timeout=5) is True  # a get says ShutDown now: nothing to wait for


def test_shutdown_immediate_makes_getters_raise_at_once_and_discards_what_is_left(make_queue):
    import time

    q = make_queue(8)
    p, conn = _start(_getter, q)
    wait_until(lambda: q.stats()["readers_waiting"] >= 1, what="the getter asleep")
    sent = time.monotonic()
    q.shutdown(immediate=True)
    report = _received(conn)
    _finish([p])
    assert report[-1][0] == "ShutDown" and report[-1][1] - sent < WOKEN_WITHIN, (sent, report)

    q = make_queue(8)
    q.put_many(["x", "y", "z"])
    assert q.get() == "x"  # handed out before: still needs its task_done()
    code = ("import sys, shmring\n"
            "q = shmring.Queue.attach(sys.argv[1])\n"
            "q.shutdown(immediate=True)\n")
    ran = subprocess.run([sys.executable, "-c", code, q.name], env=child_python_env(), timeout=30,
                         capture_output=True, text=True)  # shut down by another process
    assert ran.returncode == 0, ran.stderr
    with pytest.raises(shmring.ShutDown):
        q.get_nowait()
    with pytest.raises(shmring.ShutDown):
        q.get(timeout=5)
    st = q.stats()
    assert st["discarded"] == 2 and st["shut_down_immediate"] and q.qsize() == 0
    assert st["tasks_done"] == 2 and st["lost"] == 0
    assert q.join(timeout=0.05) is False  # "x" is still being processed
    q.task_done()
    assert q.join(timeout=5) is True


def test_blocked_putters_in_other_processes_wake_with_shutdown(make_queue):
    import time

    q = make_queue(1)
    q.put("first")
    children = [_start(_putter, q) for _ in range(2)]
    wait_until(lambda: q.stats()["writers_waiting"] >= 2, what="both putters asleep")
    sent = time.monotonic()
    q.shutdown()
    reports = [_received(conn) for _, conn in children]
    _finish([p for p, _ in children])
    assert [rep[-1][0] for rep in reports] == ["ShutDown", "ShutDown"]
    assert all(0 <= rep[-1][1] - sent < WOKEN_WITHIN for rep in reports), (sent, reports)
    assert q.get(timeout=5) == "first"  # what was in the queue is still there
    with pytest.raises(shmring.ShutDown):
        q.get(timeout=5)


PUTS = """
import sys, numpy as np, shmring
q, rec = shmring.Queue.attach(sys.argv[1]), shmring.Queue.attach(sys.argv[2])
calls = {
    "put": lambda: q.put(1), "put_nowait": lambda: q.put_nowait(1), "put_bytes": lambda: q.put_bytes(b"1"),
    "put_many": lambda: q.put_many([1, 2]), "put_many_bytes": lambda: q.put_many_bytes([b"1"]),
    "put_array": lambda: rec.put_array(np.zeros(3, rec.dtype)), "reserve": lambda: rec.reserve(2),
    "records put_many": lambda: rec.put_many([(1, 2.0)]),
}
for name, call in calls.items():
    try:
        call()
    except shmring.ShutDown:
        print(name, "ShutDown")
    else:
        print(name, "accepted")
"""


def test_every_put_call_raises_shutdown_in_another_process(make_queue):
    q = make_queue(8)
    rec = make_queue(8, dtype=np.dtype([("a", "i4"), ("b", "f8")]))
    q.shutdown()
    rec.shutdown()
    ran = subprocess.run([sys.executable, "-c", PUTS, q.name, rec.name], env=child_python_env(), timeout=30,
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.split("\n")[:-1]
    assert len(lines) == 8 and all(line.endswith(" ShutDown") for line in lines), ran.stdout
    assert q.stats()["put"] == 0 and rec.stats()["put"] == 0


def _reserver(q, go, conn):
    span = q.reserve(2, timeout=10)
    conn.send("reserved")
    assert go.poll(20)
    span.array["a"] = [7, 8]
    span.commit()
    conn.send("committed")


def test_a_claim_held_across_shutdown_still_commits_and_is_received(make_queue):
    q = make_queue(8, dtype=np.dtype([("a", "i4")]))
    go_recv, go_send = CTX.Pipe(duplex=False)
    recv, send = CTX.Pipe(duplex=False)
    p = CTX.Process(target=_reserver, args=(q, go_recv, send))
    p.start()
    send.close()
    assert recv.poll(20) and recv.recv() == "reserved"
    q.shutdown()
    with pytest.raises(shmring.ShutDown):
        q.put_array(np.zeros(1, q.dtype))
    with pytest.raises(shmring.Empty):
        q.get_array(timeout=0.01)  # the claim is not committed yet: not drained either
    go_send.send("go")
    assert recv.poll(20) and recv.recv() == "committed"
    _finish([p])
    assert q.get_array(timeout=5)["a"].tolist() == [7, 8]
    with pytest.raises(shmring.ShutDown):
        q.get_array(timeout=5)
    assert q.stats()["lost"] == 0


def _joiner(q, conn):
    import time

    _core._set_wait_slice(10.0)
    conn.send(("joining", time.monotonic()))
    conn.send((q.join(timeout=30), time.monotonic()))


def test_join_returns_after_an_immediate_shutdown(make_queue):
    import time

    q = make_queue(8, recover_after=30)  # the joiner recovers nothing meanwhile: only the wake ends its wait
    q.put_many(range(5))
    assert q.get() == 0
    q.task_done()
    p, conn = _start(_joiner, q)
    assert conn.poll(20) and conn.recv()[0] == "joining"
    assert q.join(timeout=0.05) is False  # four unfinished
    sent = time.monotonic()
    q.shutdown(immediate=True)
    joined, when = conn.recv() if conn.poll(20) else (None, None)
    _finish([p])
    assert joined is True and when - sent < WOKEN_WITHIN
    assert q.join(timeout=5) is True
    assert q.stats()["discarded"] == 4
    with pytest.raises(ValueError):
        q.task_done()  # the discarded were counted done: no task_done() is owed


ATTACHED = """
import sys, shmring
q = shmring.Queue.attach(sys.argv[1])
print(q.stats()["shut_down"], q.stats()["shut_down_immediate"])
try:
    q.put(3)
except shmring.ShutDown:
    print("put ShutDown")
print(q.get(timeout=5))
try:
    q.get(timeout=5)
except shmring.ShutDown:
    print("get ShutDown")
"""


def test_an_attach_after_shutdown_sees_it(make_queue):
    q = make_queue(8)
    q.put("left")
    q.shutdown()
    ran = subprocess.run([sys.executable, "-c", ATTACHED, q.name], env=child_python_env(), timeout=30,
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n")[:-1] == ["True False", "put ShutDown", "left", "get ShutDown"]
    # a forked child, and a handle unpickled there, see it too
    p, conn = _start(_getter, q)
    assert _received(conn)[-1][0] == "ShutDown"
    _finish([p])
    again = shmring.Queue.attach(q.name)
    try:
        with pytest.raises(shmring.ShutDown):
            again.put(1)
    finally:
        again.close()


def test_stats_and_shmring_stat_show_the_shutdown(make_queue):
    q = make_queue(8)
    st = q.stats()
    assert st["shut_down"] is False and st["shut_down_immediate"] is False and st["discarded"] == 0
    q.put_many([1, 2])
    q.shutdown()
    st = q.stats()
    assert st["shut_down"] is True and st["shut_down_immediate"] is False and st["put"] == 2
    assert _core.inspect(q.name)["shut_down"] is True
    done = subprocess.run([sys.executable, "-m", "shmring", "stat", q.name], capture_output=True, text=True,
                          timeout=30, env=child_python_env())
    assert done.returncode == 0, done.stderr
    assert "shut down       puts refuse, gets drain what is left" in done.stdout
    q.shutdown(immediate=True)
    st = q.stats()
    assert st["shut_down_immediate"] is True and st["discarded"] == 2 and st["got"] == 2
    done = subprocess.run([sys.executable, "-m", "shmring", "stat", q.name], capture_output=True, text=True,
                          timeout=30, env=child_python_env())
    assert "shut down       at once (immediate): gets refuse, 2 messages discarded" in done.stdout


def test_shutdown_is_idempotent(make_queue):
    q = make_queue(8)
    q.put_many([1, 2, 3])
    q.shutdown()
    q.shutdown()
    assert q.get() == 1
    q.shutdown(immediate=True)
    q.shutdown(immediate=True)
    q.shutdown()  # never undoes immediate
    st = q.stats()
    assert st["discarded"] == 2 and st["shut_down_immediate"] and st["tasks_done"] == 2 and st["got"] == 3
    with pytest.raises(shmring.ShutDown):
        q.get_nowait()


def _stalled_producer(q):
    q.put("committed")
    _core._set_test_hook("put_claimed", 60.0)
    q.put("claimed, never committed")


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_then_sigkill_of_a_producer_mid_claim_then_recovery(make_queue, immediate):
    q = make_queue(8, recover_after=0.05)
    p = CTX.Process(target=_stalled_producer, args=(q,))
    p.start()
    wait_until(lambda: q.stats()["put"] == 2, what="the producer to hold its claim")
    q.shutdown(immediate=immediate)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    if not immediate:
        assert q.get(timeout=5) == "committed"
        q.task_done()
    with pytest.raises(shmring.ShutDown):
        q.get(timeout=10)  # stuck behind the dead claim until recovery made it a hole
    assert q.join(timeout=10) is True
    st = q.stats()
    assert st["lost"] == 1 and st["discarded"] == (1 if immediate else 0) and st["tasks_done"] == 2
    # the ring still recovers the dead: a consumer killed holding messages (below)


def _stalled_discarder(q):
    _core._set_test_hook("get_claimed", 60.0)
    q.shutdown(immediate=True)


def test_a_process_killed_while_discarding_leaves_a_consistent_queue(make_queue):
    q = make_queue(8, recover_after=0.05)
    q.put_many(["a", "b", "c", "d"])
    p = CTX.Process(target=_stalled_discarder, args=(q,))
    p.start()
    wait_until(lambda: q.stats()["got"] == 4, what="the discarder to hold its claim")
    assert q.stats()["discarded"] == 0
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    with pytest.raises(shmring.ShutDown):
        q.get_nowait()
    with pytest.raises(shmring.ShutDown):
        q.put(1)
    assert q.join(timeout=10) is True  # recovery counts the dead discarder's claim lost, and done
    st = q.stats()
    assert st["lost"] == 4 and st["discarded"] == 0 and st["tasks_done"] == 4 and st["recoveries"] == 1
    again = shmring.Queue.attach(q.name)  # and attach accepts it
    try:
        assert again.stats()["shut_down_immediate"] is True
    finally:
        again.close()


def _stalled_consumer(q):
    _core._set_test_hook("get_claimed", 60.0)
    q.get_many()


def test_a_consumer_killed_holding_messages_after_shutdown_is_recovered(make_queue):
    q = make_queue(8, recover_after=0.05)
    q.put_many(["a", "b"])
    p = CTX.Process(target=_stalled_consumer, args=(q,))
    p.start()
    wait_until(lambda: q.stats()["got"] == 2, what="the consumer to hold its claim")
    q.shutdown()
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    with pytest.raises(shmring.ShutDown):
        q.get_nowait()
    assert q.join(timeout=10) is True
    assert q.stats()["lost"] == 2


# ---- review findings ----


def _counters_consistent(q):
    """tasks_done never passes put, and attach and inspect accept the segment."""
    st = q.stats()
    assert st["tasks_done"] <= st["put"], st
    assert _core.inspect(q.name)["tasks_done"] == st["tasks_done"]
    again = shmring.Queue.attach(q.name)
    again.close()


def test_an_early_task_done_then_an_immediate_shutdown_keeps_tasks_done_within_put(make_queue):
    q = make_queue(8)
    q.put_many([1, 2, 3])
    q.task_done()  # before any get: allowed, as queue.Queue allows it
    q.shutdown(immediate=True)
    st = q.stats()
    assert st["discarded"] == 3 and st["tasks_done"] == 3  # capped at put, as queue.Queue clamps at 0
    for _ in range(3):
        with pytest.raises(ValueError, match="too many times"):
            q.task_done()
    assert q.stats()["tasks_done"] == 3
    _counters_consistent(q)
    assert q.join(timeout=5) is True


def test_early_task_dones_then_holes_keep_tasks_done_within_put(make_queue):
    q = make_queue(8, dtype=np.dtype([("a", "i4")]))
    span = q.reserve(2)
    t = threading.Thread(target=lambda: (q.task_done(), q.task_done()))  # two claimed: two allowed
    t.start()
    t.join(20)
    assert q.stats()["tasks_done"] == 2
    span.commit(0)  # both holes, counted done too
    assert q.stats()["tasks_done"] == 2
    with pytest.raises(ValueError):
        q.task_done()
    _counters_consistent(q)


def test_a_dead_consumer_whose_messages_had_an_early_task_done_keeps_tasks_done_within_put(make_queue):
    q = make_queue(8, recover_after=0.05)
    q.put_many(["a", "b"])
    q.task_done()  # early, for "a"
    p = CTX.Process(target=_stalled_consumer, args=(q,))
    p.start()
    wait_until(lambda: q.stats()["got"] == 2, what="the consumer to hold its claim")
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    assert q.join(timeout=10) is True  # recovery counts both lost: done, capped at put
    st = q.stats()
    assert st["lost"] == 2 and st["tasks_done"] == 2 and st["recoveries"] == 1, st
    with pytest.raises(ValueError):
        q.task_done()
    _counters_consistent(q)


def _reserver_then_commit(q, go, conn):
    import time

    span = q.reserve(1, timeout=10)
    conn.send(("reserved", time.monotonic()))
    assert go.poll(20)
    span.array["a"] = [7]
    span.commit()
    conn.send(("committed", time.monotonic()))


def test_a_waiting_join_wakes_at_a_commit_after_an_immediate_shutdown(make_queue):
    q = make_queue(8, dtype=np.dtype([("a", "i4")]), recover_after=30)
    go_recv, go_send = CTX.Pipe(duplex=False)
    recv, send = CTX.Pipe(duplex=False)
    r = CTX.Process(target=_reserver_then_commit, args=(q, go_recv, send))
    r.start()
    send.close()
    assert recv.poll(20) and recv.recv()[0] == "reserved"
    j, joined = _start(_joiner, q)
    assert joined.poll(20) and joined.recv()[0] == "joining"
    q.shutdown(immediate=True)
    # the joiner discarded nothing (the claim is not committed) and waits again,
    # on not_empty, where the commit wakes it (10 s slices, no recovery for 30 s)
    wait_until(lambda: q.stats()["readers_waiting"] >= 1, what="the joiner asleep after the shutdown")
    assert not joined.poll(0)
    go_send.send("go")
    assert recv.poll(20)
    what, committed = recv.recv()
    assert what == "committed"
    assert joined.poll(20)
    done, when = joined.recv()
    _finish([r, j])
    assert done is True and when - committed < WOKEN_WITHIN, (committed, when)
    st = q.stats()
    assert st["discarded"] == 1 and st["tasks_done"] == 1 and st["lost"] == 0


@pytest.mark.parametrize("call", ["put_many", "put_many_bytes", "put_array"])
def test_a_batch_put_refused_by_a_shutdown_midway_says_how_many_went_in(make_queue, call):
    q = make_queue(4, dtype=np.dtype([("a", "i4")])) if call == "put_array" else make_queue(4)
    calls = {"put_many": lambda: q.put_many(list(range(10)), timeout=20),
             "put_many_bytes": lambda: q.put_many_bytes([b"%d" % i for i in range(10)], timeout=20),
             "put_array": lambda: q.put_array(np.arange(10, dtype="i4").view(q.dtype), timeout=20)}
    out = {}

    def producer():
        try:
            calls[call]()
        except shmring.ShutDown as e:
            out["exc"] = e

    t = threading.Thread(target=producer)
    t.start()
    wait_until(lambda: q.stats()["put"] == 4 and q.stats()["writers_waiting"] >= 1, what="the producer blocked")
    q.shutdown()
    t.join(20)
    assert not t.is_alive()
    e = out["exc"]
    assert e.count == 4 and "puts refused" in str(e)
    assert q.qsize() == 4
    with pytest.raises(shmring.ShutDown) as single:
        q.put_bytes(b"x") if call != "put_array" else q.put_array(np.zeros(1, q.dtype))
    assert single.value.count == 0


def test_shutdown_is_pickled_with_its_count():
    import pickle
    import queue

    back = pickle.loads(pickle.dumps(shmring.ShutDown("queue 'x' is shut down: puts refused", 3)))
    assert back.count == 3 and str(back) == "queue 'x' is shut down: puts refused"
    assert shmring.ShutDown().count == 0
    if hasattr(queue, "ShutDown"):
        assert isinstance(back, queue.ShutDown)


def _patch_counter(name, offset, value):
    patch_segment(name, offset, struct.pack("<Q", value))


def _counter(name, offset):
    return struct.unpack_from("<Q", read_segment(name), offset)[0]


@pytest.mark.parametrize("write_pos", [(1 << 61), (1 << 62) - 4, DRAINING | 3, SHUT | DRAINING | 3])
def test_attach_refuses_a_queue_whose_positions_reach_the_flags(make_queue, write_pos):
    q = make_queue(8)
    _patch_counter(q.name, WRITE_POS_OFFSET, write_pos)
    _patch_counter(q.name, READ_POS_OFFSET, write_pos & ~(SHUT | DRAINING))  # consistent but for write_pos
    with pytest.raises(shmring.SegmentError, match=r"write_pos 0x[0-9a-f]+ \(positions stay below 2\^61"):
        shmring.Queue.attach(q.name)
    with pytest.raises(shmring.SegmentError):
        _core.inspect(q.name)


def test_attach_accepts_a_queue_just_below_the_limit(make_queue):
    q = make_queue(8)
    p = (1 << 61) - 1
    for off in (WRITE_POS_OFFSET, READ_POS_OFFSET, TASKS_DONE_OFFSET):
        _patch_counter(q.name, off, p)
    _patch_counter(q.name, WRITE_POS_OFFSET, p | SHUT)
    again = shmring.Queue.attach(q.name)
    again.close()


@pytest.mark.parametrize("write_pos", [(1 << 62) + 1, (1 << 62) | (1 << 61), 1 << 61, SHUT | (1 << 61)])
def test_attach_refuses_a_topic_whose_end_reaches_the_flags(make_topic, write_pos):
    t = make_topic(16, 64)
    _patch_counter(t.name, WRITE_POS_OFFSET, write_pos)
    with pytest.raises(shmring.SegmentError, match="counters inconsistent"):
        shmring.Topic.attach(t.name)


def test_queue_shutdown_messages_name_the_queue_and_what_was_refused(make_queue):
    q = make_queue(8)
    q.put(1)
    q.shutdown()
    with pytest.raises(shmring.ShutDown, match=rf"^queue '{q.name}' is shut down: puts refused$"):
        q.put(2)
    assert q.get() == 1
    with pytest.raises(shmring.ShutDown, match=rf"^queue '{q.name}' is shut down and drained$"):
        q.get()
    r = make_queue(8)
    r.put(1)
    r.shutdown(immediate=True)
    with pytest.raises(shmring.ShutDown, match=rf"^queue '{r.name}' is shut down and drained$"):
        r.get_many(timeout=5)


def test_a_plain_shutdown_is_allowed_while_this_thread_holds_a_claim(make_queue):
    q = make_queue(8, dtype=np.dtype([("a", "i4")]))
    span = q.reserve(1)
    with pytest.raises(RuntimeError, match=r"shutdown\(immediate=True\) discards.*holds a claim.*without immediate"):
        q.shutdown(immediate=True)
    assert q.stats()["shut_down"] is False  # refused before doing anything
    q.shutdown()  # claims nothing
    span.array["a"] = [5]
    span.commit()  # the claim made before still commits
    with pytest.raises(shmring.ShutDown):
        q.put_array(np.zeros(1, q.dtype))
    assert q.get_array(timeout=5)["a"].tolist() == [5]
    with pytest.raises(shmring.ShutDown):
        q.get_array(timeout=5)


def _stalled_releasing_discarder(q):
    _core._set_test_hook("get_releasing", 60.0)
    q.shutdown(immediate=True)


def _join_a_participant(q):
    """A new thread's first call joins the participant table (a full one: recovery first, members.c)."""
    out = {}

    def call():
        try:
            q.get_nowait()
        except BaseException as e:  # noqa: BLE001 - ShutDown expected
            out["exc"] = e

    t = threading.Thread(target=call)
    t.start()
    t.join(20)
    assert not t.is_alive()
    return out.get("exc")


def test_a_discarder_killed_after_counting_is_not_counted_again_by_recovery(make_queue):
    q = make_queue(8, max_participants=2, recover_after=30)
    q.put_many(list("abcd"))
    p = CTX.Process(target=_stalled_releasing_discarder, args=(q,))
    p.start()
    wait_until(lambda: q.stats()["discarded"] == 4, what="the discarder to count, then stall releasing")
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    assert isinstance(_join_a_participant(q), shmring.ShutDown)
    st = q.stats()
    # recovered (D5 said counted: it releases the rest and counts nothing)
    assert st["recoveries"] == 1, st
    assert st["lost"] == 0 and st["discarded"] == 4 and st["tasks_done"] == 4, st
    assert q.join(timeout=5) is True
    _counters_consistent(q)


def test_wait_writable_after_a_shutdown_killed_between_its_two_stores(make_queue):
    q = make_queue(2)
    q.put_many([1, 2])  # full
    # read_pos flagged, write_pos not: a shutdown killed after D1 (nothing was woken)
    _patch_counter(q.name, READ_POS_OFFSET, _counter(q.name, READ_POS_OFFSET) | DRAINING)
    assert q.wait_writable(timeout=10) is True  # a put says ShutDown now: nothing to wait for
    with pytest.raises(shmring.ShutDown):
        q.put(3, timeout=10)
    assert _counter(q.name, WRITE_POS_OFFSET) & SHUT  # that put sealed it
