"""Message deadlines: put's ttl= / deadline=, Queue(default_ttl=), get's expired=.

The clock is CLOCK_MONOTONIC (time.monotonic() on Linux), so the tests control
it by choosing deadlines: PAST has passed long ago, FUTURE is an hour ahead.
"""
import multiprocessing as mp
import pickle
import re
import random
import threading
import time

import pytest

import shmring
from conftest import wait_until

PAST = 1.0


def future():
    return time.monotonic() + 3600


def test_an_expired_message_is_never_returned_and_counted_once(make_queue):
    q = make_queue(8)
    q.put("late", deadline=PAST)
    q.put("kept", deadline=future())
    q.put("plain")
    assert q.qsize() == 3  # expired messages hold their slot until a get meets them
    assert [q.get(timeout=5), q.get(timeout=5)] == ["kept", "plain"]
    assert q.stats()["expired"] == 1
    with pytest.raises(shmring.Empty):
        q.get_nowait()
    assert q.stats()["expired"] == 1


def test_ttl_counts_from_the_put(make_queue):
    q = make_queue(8)
    q.put("zero", ttl=0)  # its deadline is the put's own instant: passed by any later get
    q.put("hour", ttl=3600)
    q.put_bytes(b"short", ttl=0.05)
    q.put_bytes(b"long", ttl=3600)
    start = time.monotonic()
    while time.monotonic() < start + 0.06:  # the clock itself, not a peer, is waited for
        time.sleep(0.01)
    assert q.get(timeout=5) == "hour"
    assert q.get_bytes(timeout=5) == b"long"
    assert q.stats()["expired"] == 2


@pytest.mark.parametrize("getter", ["get", "get_many", "get_bytes", "get_many_bytes"])
def test_mixed_deadlines_in_batches_drop_exactly_the_expired(make_queue, getter):
    rng = random.Random(7)
    q = make_queue(64)
    live, expired = [], 0
    for round_ in range(40):
        n = rng.randint(1, 12)
        chosen = [rng.choice([PAST, None, future()]) for _ in range(n)]
        items = [f"{round_}.{i}" for i in range(n)]
        expired += chosen.count(PAST)
        live += [item for item, d in zip(items, chosen) if d != PAST]
        if getter.endswith("bytes"):
            q.put_many_bytes([item.encode() for item in items], deadline=chosen)
        else:
            q.put_many(items, deadline=chosen)
        got = []
        while True:
            try:
                if getter in ("get", "get_bytes"):
                    got.append(getattr(q, getter)(block=False))
                else:
                    got += getattr(q, getter)(block=False)
            except shmring.Empty:
                break
        got = [g.decode() if isinstance(g, bytes) else g for g in got]
        assert got == [item for item, d in zip(items, chosen) if d != PAST]
    assert q.stats()["expired"] == expired and expired > 0 and len(live) > 0


def test_one_deadline_for_a_batch(make_queue):
    q = make_queue(8)
    q.put_many(["a", "b", "c"], deadline=PAST)
    q.put_many(["d", "e"], ttl=3600)
    assert q.get_many(timeout=5) == ["d", "e"]
    assert q.stats()["expired"] == 3


def test_expired_return_hands_them_back_marked_and_uncounted(make_queue):
    q = make_queue(8)
    q.put({"order": 1}, deadline=PAST)
    q.put({"order": 2}, deadline=future())
    first = q.get(timeout=5, expired="return")
    assert isinstance(first, shmring.Expired)
    assert first.message == {"order": 1} and first.deadline == PAST
    assert q.get(timeout=5, expired="return") == {"order": 2}
    q.put_many([1, 2, 3], deadline=[None, PAST, None])
    got = q.get_many(timeout=5, expired="return")
    assert got[0] == 1 and got[2] == 3 and isinstance(got[1], shmring.Expired) and got[1].message == 2
    q.put_bytes(b"x", deadline=PAST)
    raw = q.get_bytes(timeout=5, expired="return")
    assert isinstance(raw, shmring.Expired) and raw.message == b"x"
    q.put_many_bytes([b"y"], deadline=PAST)
    assert [e.message for e in q.get_many_bytes(timeout=5, expired="return")] == [b"y"]
    assert q.stats()["expired"] == 0


def test_a_caller_that_drops_an_expired_message_counts_it(make_queue):
    q = make_queue(8)
    q._count_expired(1)  # the worker pool's count of what it drops before the handler
    assert q.stats()["expired"] == 1


def test_expired_messages_are_done_for_join(make_queue):
    q = make_queue(8)
    q.put_many(["x", "y"], deadline=PAST)
    q.put("z")
    assert q.get(timeout=5) == "z"
    q.task_done()
    done = threading.Event()
    t = threading.Thread(target=lambda: (q.join(), done.set()), daemon=True)
    t.start()
    assert q.join(timeout=5) is True  # the drop of x and y counts them done
    t.join(timeout=5)
    assert done.is_set() and q.stats()["expired"] == 2


def test_join_waits_for_expired_messages_nobody_has_met(make_queue):
    q = make_queue(8)
    q.put("x", deadline=PAST)
    assert q.join(timeout=0.05) is False  # still in the ring: not yet known to be expired
    with pytest.raises(shmring.Empty):
        q.get_nowait()
    assert q.join(timeout=5) is True


def test_a_sleeping_getter_skips_an_expired_message_and_waits_on(make_queue):
    q = make_queue(8)
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=30)), daemon=True)
    t.start()
    wait_until(lambda: q.stats()["readers_waiting"] >= 1, what="reader asleep")
    q.put("stale", deadline=PAST)
    wait_until(lambda: q.stats()["expired"] == 1, what="the stale message dropped")
    assert got == [] and t.is_alive()
    q.put("fresh")
    t.join(timeout=30)
    assert got == ["fresh"]


def test_slots_of_earlier_laps_never_lend_their_deadline(make_queue):
    q = make_queue(4)  # capacity 4: every slot is reused 50 times
    for lap in range(50):
        q.put_bytes(b"old", deadline=PAST)
        q.put_bytes(b"new")
        assert q.get_bytes(timeout=5) == b"new"
    assert q.stats()["expired"] == 50 and q.qsize() == 0


@pytest.mark.parametrize("put", ["put", "put_bytes", "put_many", "put_many_bytes"])
def test_a_deadline_for_every_slot_replaces_an_earlier_laps(make_queue, put):
    # A put with one deadline for all claims without clearing (its caller
    # writes every claimed slot's): none may keep the passed deadline of before.
    q = make_queue(4)
    items = [b"m0"] if put in ("put", "put_bytes") else [b"m0", b"m1", b"m2"]
    send = (lambda dl: getattr(q, put)(items[0], deadline=dl)) if len(items) == 1 else (
        lambda dl: getattr(q, put)(items, deadline=dl))
    get = q.get_bytes if put.endswith("bytes") else q.get
    for lap in range(30):
        send(PAST)
        with pytest.raises(shmring.Empty):
            q.get_nowait()  # drops them, leaving their deadlines in the slots
        send(future())
        assert [get(timeout=5) for _ in items] == items
        q.put_bytes(b"plain")  # one position more a lap: every slot meets both deadlines
        assert q.get_bytes(timeout=5) == b"plain"
    assert q.stats()["expired"] == 30 * len(items) and q.qsize() == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("put", ["put", "put_bytes"])
def test_a_put_that_waited_for_room_replaces_a_passed_deadline(make_queue, put):
    # the binding's claim after a wait (not the C fast path) also claims with
    # EXPIRY_SET: the slot it gets held a passed deadline
    q = make_queue(4)
    for i in range(4):
        q.put_bytes(b"old", deadline=PAST)
    done = []
    t = threading.Thread(target=lambda: done.append(getattr(q, put)(b"new", deadline=future(), timeout=30)))
    t.start()
    wait_until(lambda: q.stats()["writers_waiting"] >= 1, 10, "the put to wait for room")
    with pytest.raises(shmring.Empty):
        q.get_nowait()  # drops the four: room, in a slot that held a passed deadline
    t.join(10)
    assert done == [None]
    assert (q.get_bytes if put == "put_bytes" else q.get)(timeout=5) == b"new"
    assert q.stats()["expired"] == 4 and q.qsize() == 0


@pytest.mark.parametrize("bad, rule", [
    (dict(ttl=-1), "'ttl' must be a number of seconds from 0 to 3e+08, got -1"),
    (dict(ttl=float("nan")), "'ttl' must be a number of seconds from 0 to 3e+08, got nan"),
    (dict(ttl="1"), "'ttl' must be a number of seconds, got '1'"),
    (dict(ttl=True), "'ttl' must be a number of seconds, got True"),
    (dict(deadline=float("inf")), "'deadline' must be a CLOCK_MONOTONIC time in seconds"),
    (dict(deadline=time.time()), "a time.time() value?"),
    (dict(ttl=10**400), "'ttl' must be a number of seconds, got 1000"),
    (dict(deadline=None, ttl=[1]), "'ttl' has 1 values for 2 messages"),
    (dict(ttl=1, deadline=2), "give ttl= or deadline=, not both"),
])
def test_bad_deadlines_raise_and_put_nothing(make_queue, bad, rule):
    q = make_queue(8)
    for put in (lambda: q.put_many(["a", "b"], **bad), lambda: q.put_many_bytes([b"a", b"b"], **bad)):
        with pytest.raises((TypeError, ValueError), match=re.escape(rule)):
            put()
    if "[1]" not in repr(bad):
        with pytest.raises((TypeError, ValueError)):
            q.put("a", **bad)
        with pytest.raises((TypeError, ValueError)):
            q.put_bytes(b"a", **bad)
    assert q.qsize() == 0 and q.stats()["put"] == 0


def test_bad_expired_and_default_ttl_are_refused(make_queue):
    q = make_queue(8)
    q.put("kept")
    with pytest.raises(ValueError, match="'expired' must be 'drop' or 'return', got 'keep'"):
        q.get(expired="keep")
    with pytest.raises(ValueError, match="'expired' must be 'drop' or 'return', got array"):
        q.get_many(expired=__import__("array").array("b", [1, 2]))
    assert q.qsize() == 1
    for bad in (0, -1, float("nan"), "1"):
        with pytest.raises((TypeError, ValueError), match="'default_ttl'"):
            shmring.Queue(4, default_ttl=bad)
    with pytest.raises(ValueError, match="'default_ttl'"):
        shmring.Queue.attach(q.name, default_ttl=-1)


def _put_with_default(q):
    q.put("from child")
    q.put("from child, kept", ttl=3600)


def test_default_ttl_applies_and_travels_with_the_handle(make_queue):
    q = make_queue(8, default_ttl=0.02)
    assert q.default_ttl == 0.02 and pickle.loads(pickle.dumps(q)).default_ttl == 0.02
    p = mp.get_context("spawn").Process(target=_put_with_default, args=(q,))
    p.start()
    p.join(timeout=60)
    assert p.exitcode == 0
    start = time.monotonic()
    while time.monotonic() < start + 0.03:  # past the child's default deadline, whenever it put
        time.sleep(0.01)
    assert q.get(timeout=5) == "from child, kept"
    assert q.stats()["expired"] == 1
    other = shmring.Queue.attach(q.name, default_ttl=3600)
    try:
        assert other.default_ttl == 3600
        other.put("attached")
        assert q.get(timeout=5) == "attached"
    finally:
        other.close()


def _put_deadlines_in_a_child(q):
    q.put_many_bytes([b"past", b"future"], deadline=[PAST, time.monotonic() + 3600])


def test_the_clock_is_shared_by_processes(make_queue):
    q = make_queue(8)
    p = mp.get_context("spawn").Process(target=_put_deadlines_in_a_child, args=(q,))
    p.start()
    p.join(timeout=60)
    assert p.exitcode == 0
    assert q.get_many_bytes(timeout=5) == [b"future"] and q.stats()["expired"] == 1


def test_records_drop_expired_records_in_every_get(make_queue):
    np = pytest.importorskip("numpy")
    q = make_queue(16, dtype=np.int64)
    q.put_array(np.arange(6), deadline=[PAST, None, PAST, None, future(), PAST])
    got = []
    while True:
        try:
            got += q.get_array(block=False).tolist()
        except shmring.Empty:
            break
    assert got == [1, 3, 4] and q.stats()["expired"] == 3
    with q.reserve(3, deadline=PAST) as arr:
        arr[:] = 7
    with q.reserve(2) as arr:
        arr[:] = 8
    view = q.view(timeout=5)
    try:
        assert view.array.tolist() == [8, 8]
    finally:
        view.release()
    q.put_array(np.arange(3), ttl=3600)
    assert q.get_many(timeout=5) == [0, 1, 2]
    assert q.stats()["expired"] == 6
    with pytest.raises(ValueError, match="expired='return'"):
        q.get_many(expired="return")
    out = np.zeros(4, np.int64)
    q.put_array(np.arange(4), deadline=[None, PAST, None, None])
    count = 0
    while count < 3:
        count += q.get_array(out=out[count:], timeout=5)
    assert out[:3].tolist() == [0, 2, 3] and q.stats()["expired"] == 7


def test_an_expired_message_handed_back_travels_like_any_message(make_queue):
    q = make_queue(8)
    q.put({"order": 7}, deadline=PAST)
    got = q.get(timeout=5, expired="return")
    again = pickle.loads(pickle.dumps(got))
    assert again == got and again is not got and again.message == {"order": 7}
    assert got != shmring.Expired({"order": 7}, PAST + 1) and got != {"order": 7}
    q.put(got)  # through a queue, pickled
    assert q.get(timeout=5) == got


def test_a_get_of_one_message_drops_a_backlog_of_expired_ones(make_queue):
    q = make_queue(20_000)
    q.put_many_bytes([b"old"] * 19_999, deadline=PAST)
    q.put_bytes(b"new")
    assert q.get_bytes(timeout=5) == b"new"
    assert q.stats()["expired"] == 19_999 and q.qsize() == 0


def test_records_batches_return_the_live_records_around_an_expired_one(make_queue):
    np = pytest.importorskip("numpy")
    q = make_queue(16, dtype=np.int64)
    q.put_array(np.arange(6), deadline=[None, PAST, None, None, PAST, None])
    assert q.get_array(timeout=5).tolist() == [0, 2, 3, 5]
    q.put_array(np.arange(4), deadline=[None, PAST, None, None])
    assert q.get_many(timeout=5) == [0, 2, 3]
    assert q.stats()["expired"] == 3


def test_shmring_stat_shows_the_expired_count(make_queue):
    import io

    from shmring import cli

    q = make_queue(8)
    q.put_many_bytes([b"a", b"b"], deadline=PAST)
    with pytest.raises(shmring.Empty):
        q.get_bytes(block=False)
    out = io.StringIO()
    assert cli.main(["stat", q.name], out) == 0
    assert "expired         2 messages" in out.getvalue()
