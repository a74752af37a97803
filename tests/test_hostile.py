"""What a hostile user tries: reference cycles, re-initialisation, released
buffers, read-only buffers, undecodable batches, Ctrl-C mid-call, forks, bad
arguments and foreign segments. Nothing may crash, hang, lose or duplicate a
message silently, or run code planted by another user.

Anything that could crash the interpreter runs in a child (`python -c`), so a
segfault is a failed assertion, not a dead test run.
"""
import gc
import json
import math
import multiprocessing as mp
import os
import pickle
import secrets
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import shmring
from conftest import child_python_env, wait_until
from segments import SCHEMA_OFFSET, patch_segment, segment_exists

pytestmark = pytest.mark.timeout(60)

TICK = np.dtype([("ts", "<i8"), ("qty", "<i4")])


def run_python(code, *args, timeout=60):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=child_python_env())


# ---- 1. cycles: a collected reservation is aborted, a collected view released ----

CYCLES = """
    import gc, sys, numpy as np, shmring
    from segments import segment_exists
    tick = np.dtype([("ts", "<i8"), ("qty", "<i4")])
    q = shmring.Queue(8, dtype=tick)
    q.put_array(np.arange(3, dtype="<i8").astype(tick))
    v = q.view(2)                       # claims records 0 and 1
    box = [v]; box.append(box); del v, box
    gc.collect()                        # the view is released: its records were taken
    q.put_array(np.zeros(5, tick))      # this thread holds no claim any more
    r = q.reserve(2)
    r.array["qty"] = 7
    box = [r]; box.append(box); del r, box
    gc.collect()                        # the reservation is aborted: nothing committed
    got = q.get_array(10)
    assert list(got["ts"][:1]) == [2], got
    assert len(got) == 6 and (got["qty"] != 7).all(), got
    try:
        q.get_nowait()                  # skips the aborted slots (holes), finds nothing
    except shmring.Empty:
        pass
    assert q.stats()["lost"] == 0 and q.qsize() == 0
    # the creator's handle in the same cycle as an open reservation: unlinked anyway
    name = q.name
    r = q.reserve(1)
    q.me = r; r2 = r; del r, q, r2
    gc.collect()
    assert not segment_exists(name), "stranded segment"
    print("ok")
"""


def test_reservations_and_views_in_collected_cycles_end_and_nothing_is_stranded():
    done = run_python(CYCLES)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


# ---- 2. arrays over slots never outlive the mapping ----

ARRAY_AFTER_CLOSE = """
    import sys, numpy as np, shmring
    q = shmring.Queue(8, dtype=np.dtype("<i8"))
    q.put_array(np.arange(4, dtype="<i8"))
    with q.view(4) as arr:
        pass
    with q.reserve(2) as res:
        res[:] = 9
    q.close()
    for a in (arr, res):
        base = a.base
        while base is not None and not hasattr(base, "release") and hasattr(base, "base"):
            base = base.base
        assert not hasattr(base, "release"), type(base)   # nothing to release early
        try:
            memoryview(a).release()
        except Exception as e:
            print("memoryview:", e)
        a.sum(); a.copy()            # still mapped: stale data, no fault
    del arr, res                     # the last array gone: now it is unmapped
    print("ok")
"""


def test_arrays_of_a_closed_queue_stay_mapped_whatever_is_done_to_their_base():
    done = run_python(ARRAY_AFTER_CLOSE)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr


def test_reserve_and_view_on_a_closed_queue_raise(make_queue):
    q = make_queue(8, dtype=TICK)
    q.put_array(np.zeros(2, TICK))
    with q.view(1):
        pass                                   # the handle has made its arrays once
    q.close()
    for call in (q.view, q.reserve):
        with pytest.raises(shmring.QueueClosed):
            call(1)


def test_a_view_array_cannot_be_made_writable(make_queue):
    q = make_queue(8, dtype=TICK)
    q.put_array(np.zeros(2, TICK))
    with q.view(2) as arr:
        with pytest.raises(ValueError):
            arr.flags.writeable = True
        with pytest.raises(ValueError):
            arr["qty"] = 1


@pytest.fixture
def own_names(monkeypatch):
    """Queues this test makes without a name get one under a prefix of the test's own;
    returns a function listing what /dev/shm holds under it (segments and lock files).
    A look at all of /dev/shm would see other users' and concurrent runs' segments come
    and go."""
    prefix = f"shmring-h{secrets.token_hex(2)}-"      # + 16 hex digits: 30 characters
    monkeypatch.setattr(shmring.queue, "NAME_PREFIX", prefix)

    def left():
        return sorted(e for e in os.listdir("/dev/shm") if e.startswith(prefix)) if os.path.isdir("/dev/shm") else []
    return left


# ---- 3. a second __init__ ----

def test_calling_init_again_is_refused_and_changes_nothing(make_queue, own_names):
    q = make_queue(4, 64)
    q.put("kept")
    before = own_names()
    other = f"{q.name[:20]}-other"                     # a name only this test uses
    with pytest.raises(RuntimeError, match="open already"):
        q.__init__(4, dtype=TICK)
    with pytest.raises(RuntimeError, match="open already"):
        q._open(other, True, 4, 8)
    assert q.dtype is None and q.msg_size == 64 and q.get() == "kept"
    assert own_names() == before and not segment_exists(other)  # nothing created, nothing leaked


# ---- 4. a call that fails takes nothing ----

def test_get_array_into_a_read_only_array_takes_nothing(make_queue):
    q = make_queue(8, dtype=TICK)
    q.put_array(np.zeros(6, TICK))
    frozen = np.zeros(4, TICK)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        q.get_array(out=frozen)
    with pytest.raises(ValueError, match="C-contiguous"):
        q.get_array(out=np.zeros(8, TICK)[::2])
    with pytest.raises(TypeError):
        q.get_array(out=np.zeros(4, "<i8"))
    assert q.qsize() == 6 and q.stats()["lost"] == 0
    assert len(q.get_array(10)) == 6
    for _ in range(6):
        q.task_done()
    assert q.join(timeout=5)


# ---- 5. nothing held outside the ring; Ctrl-C is never swallowed ----

def test_a_forked_child_gets_nothing_the_parent_already_took(make_queue, start_method):
    q = make_queue(10)
    q.put("a")
    q.put_bytes(b"not a pickle")
    q.put_many(["c", "d"])
    assert q.get_many() == ["a", "c", "d"]
    ctx = mp.get_context(start_method)
    results = ctx.Queue()
    p = ctx.Process(target=_child_takes_what_is_left, args=(q, results))
    p.start()
    assert results.get(timeout=30) == "empty"
    p.join(30)
    with pytest.raises(pickle.UnpicklingError):  # the parent's own error, raised once, by the parent
        q.get_many()


def _child_takes_what_is_left(q, results):
    try:
        results.put(repr(q.get_many(block=False)))
    except shmring.Empty:
        results.put("empty")
    except Exception as e:
        results.put(f"{type(e).__name__}: {e}")


def ctrl_c_now():
    """SIGINT to this process, its handler run before this frame goes on: the interpreter
    checks for signals on returning from a call into Python code (Python 3.10's os.kill,
    called by the unpickler directly, left it pending until after get_many had returned)."""
    os.kill(os.getpid(), signal.SIGINT)


class Interrupts:
    """Unpickling it delivers SIGINT to this process, as Ctrl-C would mid-call."""

    def __reduce__(self):
        return (ctrl_c_now, ())


def test_ctrl_c_while_a_batch_unpickles_is_raised_and_what_it_took_is_counted(make_queue):
    q = make_queue(10)
    q.put_many(["a", Interrupts(), "c"])
    with pytest.raises(KeyboardInterrupt):
        q.get_many()
    st = q.stats()
    assert st["lost"] == 3 and st["got"] == 3  # out of the ring, none handed out: all counted
    assert q.join(timeout=5)                    # lost counts as done
    q.put(Interrupts())
    with pytest.raises(KeyboardInterrupt):
        q.get()
    assert q.stats()["lost"] == 4 and q.join(timeout=5)


# ---- 6. liveness that pids cannot fool: a peer in another pid namespace ----

OTHER_NAMESPACE = """
    import os, sys, shmring
    from shmring import _core
    q = shmring.Queue.attach(sys.argv[1])
    _core._set_test_hook("put_claimed", 600)   # claim, then stall until killed
    print("claiming", flush=True)
    q.put_bytes(b"never committed")
"""


def test_a_peer_killed_in_another_pid_namespace_is_recovered(make_queue, tmp_path):
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("needs Linux and root to make a pid namespace")
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a pid namespace here: {probe.stderr.decode().strip()}")
    q = make_queue(8, 64, recover_after=0.05)
    child = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                              sys.executable, "-c", textwrap.dedent(OTHER_NAMESPACE), q.name],
                             stdout=subprocess.PIPE, text=True, env=child_python_env())
    try:
        assert child.stdout.readline().strip() == "claiming"
        wait_until(lambda: q.stats()["put"] == 1, what="the claim")
        q.put_bytes(b"after")
        assert q.stats()["participants"] == 2
        child.kill()  # unshare dies, and with it (--kill-child) the peer in its namespace
        child.wait(10)
        wait_until(lambda: q.stats()["participants"] == 1, what="the peer to be judged dead")
        assert q.get_bytes(timeout=10) == b"after"   # the dead claim was skipped
        assert q.stats()["lost"] == 1
    finally:
        child.kill()
        child.wait(10)


# ---- 7. a consumer killed in its sleep ----

def _sleep_in_get(q):
    q.get()


def test_a_sleeper_killed_in_its_sleep_stops_costing_wake_calls(make_queue):
    q = make_queue(8, 64)
    p = mp.get_context("fork").Process(target=_sleep_in_get, args=(q,))
    p.start()
    wait_until(lambda: q.stats()["readers_waiting"] == 1, what="the child asleep in get()")
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)

    def put_get_and_look():
        q.put_bytes(b"x")
        q.get_bytes()
        return q.stats()["readers_waiting"] == 0
    wait_until(put_get_and_look, what="the dead sleeper's bit to be cleared")
    assert q.stats()["participants"] == 1


# ---- 8. a FIFO where a segment should be ----

@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm")
def test_attaching_a_fifo_is_an_error_not_a_hang():
    name = f"shmring-fifo-{os.getpid()}"
    os.mkfifo(f"/dev/shm/{name}")
    try:
        done = run_python("""
            import sys, shmring
            from shmring import _core
            for attach in (shmring.Queue.attach, _core.inspect):
                try:
                    attach(sys.argv[1])
                except shmring.SegmentError as e:
                    print("SegmentError:", e)
        """, name, timeout=20)
    finally:
        os.unlink(f"/dev/shm/{name}")
    assert done.stdout.count("not a regular file") == 2, done.stdout + done.stderr


# ---- 9. creators in multiprocessing children leave nothing behind ----

_KEPT = []  # a handle still alive when the child ends: only exit hooks can unlink it


def _create_and_report(results, how):
    q = shmring.Queue(4)
    _KEPT.append(q)
    results.put(q.name)
    if how == "raise":
        raise SystemExit(3)


@pytest.mark.parametrize("how", ["return", "raise"])
def test_a_queue_made_in_a_multiprocessing_child_is_unlinked_when_it_ends(start_method, how):
    ctx = mp.get_context(start_method)
    results = ctx.Queue()
    p = ctx.Process(target=_create_and_report, args=(results, how))
    p.start()
    name = results.get(timeout=30)
    p.join(30)
    assert p.exitcode == (3 if how == "raise" else 0)
    assert not segment_exists(name), f"{start_method} child left {name}"


# ---- 10. pickles from segments others can write ----

PLANT = """
    import os, sys, pickle, shmring   # imported first: 'nobody' may not read our files
    os.setgid(65534); os.setuid(65534)
    q = shmring.Queue(4, 256, name=sys.argv[1], mode=int(sys.argv[2], 8))
    q.put_bytes(pickle.dumps(("planted", os.getuid())))
    print("planted", flush=True)
    sys.stdin.read()   # keep the segment until told
"""


@pytest.mark.parametrize("mode", ["666", "660"])
def test_a_world_writable_segment_of_another_user_is_refused_unless_trusted(mode):
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    name = f"shmring-planted-{os.getpid()}-{mode}"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(PLANT), name, mode],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_python_env())
    try:
        assert child.stdout.readline().strip() == "planted"
        if mode == "666":
            with pytest.raises(shmring.UntrustedSegment, match="allow_world_writable"):
                shmring.Queue.attach(name)
            q = shmring.Queue.attach(name, allow_world_writable=True)
            assert pickle.loads(pickle.dumps(q)).get() == ("planted", 65534)  # the trust travels with it
        else:  # group sharing, as documented
            q = shmring.Queue.attach(name)
            assert q.get() == ("planted", 65534)
        q.close()
    finally:
        child.stdin.close()
        child.wait(30)


# ---- validation: a clear error naming the value and the rule; nothing created ----

BAD_ARGUMENTS = {
    "empty name": (dict(name=""), ValueError, "segment name"),
    "dot": (dict(name="."), ValueError, "not . or .."),
    "dot dot": (dict(name=".."), ValueError, "not . or .."),
    "NUL in name": (dict(name="a\0b"), ValueError, "segment name"),
    "slash": (dict(name="a/b"), ValueError, "segment name"),
    "long name": (dict(name="x" * 31), ValueError, "1-30 characters"),
    "mode bits": (dict(mode=0o4755), ValueError, "permission bits"),
    "negative mode": (dict(mode=-1), ValueError, "permission bits"),
    "mode as str": (dict(mode="0600"), TypeError, "mode"),
    "recover_after inf": (dict(recover_after=math.inf), ValueError, "recover_after"),
    "recover_after nan": (dict(recover_after=math.nan), ValueError, "recover_after"),
    "recover_after huge": (dict(recover_after=1e300), ValueError, "recover_after"),
    "recover_after zero": (dict(recover_after=0), ValueError, "recover_after"),
    "recover_after negative": (dict(recover_after=-1), ValueError, "recover_after"),
    "no participants": (dict(max_participants=0), ValueError, "max_participants must be 1 to 1024, got 0"),
    "too many participants": (dict(max_participants=5000), ValueError, "max_participants must be 1 to 1024, got 5000"),
    "huge maxsize": (dict(maxsize=2**40), ValueError, "maxsize must be 1 to 1073741824 messages, got 1099511627776"),
    "huge msg_size": (dict(msg_size=2**31), ValueError, "msg_size must be 1 to 1073741824 bytes, got 2147483648"),
    "float maxsize": (dict(maxsize=1.5), TypeError, "maxsize"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_bad_arguments_are_refused_clearly_and_create_nothing(case, own_names):
    kwargs, error, message = BAD_ARGUMENTS[case]
    kwargs = {"maxsize": 4, **kwargs}
    with pytest.raises(error) as e:
        shmring.Queue(**kwargs)
    assert message in str(e.value)
    bad = next(iter(v for k, v in kwargs.items() if k != "maxsize" or case == "huge maxsize" or
                    case == "float maxsize"), None)
    if isinstance(bad, str) and bad:
        assert repr(bad) in str(e.value) or bad in str(e.value)
    assert own_names() == []  # nothing created under a generated name
    if kwargs.get("name"):
        assert not os.path.isdir("/dev/shm") or not [e for e in os.listdir("/dev/shm") if e.startswith(f"{kwargs['name']}~")]


SCHEMAS = {
    "not UTF-8": b"\xff\xfe{}",
    "not JSON": b"{numpy",
    "nested absurdly": b'{"numpy":' + b'{"base":' * 40 + b'"<i8"' + b',"shape":[1]}' * 40 + b"}",
    "not a dtype": b'{"numpy":{"names":["a"],"formats":[7],"offsets":[0],"itemsize":8}}',
}


@pytest.mark.parametrize("case", sorted(SCHEMAS))
def test_a_records_schema_planted_in_a_segment_is_a_segment_error(make_queue, case):
    q = make_queue(4, dtype=np.dtype("<i8"))
    raw = SCHEMAS[case]
    assert len(raw) < 1024
    patch_segment(q.name, SCHEMA_OFFSET, raw + b"\0" * (1024 - len(raw)))
    with pytest.raises(shmring.SegmentError, match="record schema"):
        shmring.Queue.attach(q.name)


def test_the_json_schema_of_a_real_dtype_still_reads_back(make_queue):
    dt = np.dtype([("a", "<i4"), ("b", [("c", "<f8", (2, 3))])], align=True)
    q = make_queue(4, dtype=dt)
    assert json.loads(shmring._core.inspect(q.name)["schema"])["numpy"]["aligned"] is True
    assert shmring.Queue.attach(q.name).dtype == dt


# ---- the memory a queue takes, as the README states it ----

def test_memory_is_what_the_readme_says(make_queue):
    for maxsize, msg_size, dtype in ((1000, 1024, None), (5, 64, None), (70000, None, TICK)):
        q = make_queue(maxsize, msg_size, dtype=dtype)
        capacity = 1 << max(2, (maxsize - 1).bit_length())        # maxsize rounded up to a power of two
        slot = q.msg_size + (8 if dtype is None else (2 if capacity >= 65536 else 4)) + 8  # + its deadline
        expected = capacity * slot + 2304 + 256 * 128 + 128         # README: capacity x (msg_size + 16) + 34 KiB
        assert shmring._core.inspect(q.name)["bytes"] == pytest.approx(expected, abs=256)


# ---- ls / stat on a ring one may only read ----

READ_ONLY_LOOK = """
    import gettext, io, json, locale, os, shutil, sys, shmring   # imported first: 'nobody' may not read
    from shmring import cli                              # our files (argparse wants gettext)
    os.setgid(65534); os.setuid(65534)
    out = io.StringIO()
    assert cli.main(["stat", sys.argv[1]], out) == 0, out.getvalue()
    print(out.getvalue())
    if os.path.isdir("/dev/shm"):
        out = io.StringIO()
        assert cli.main(["ls", "--json"], out) == 0
        print([r for r in json.loads(out.getvalue()) if r["name"] == sys.argv[1]])
"""


def test_stat_and_ls_read_a_ring_the_caller_may_only_read(make_queue):
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    q = make_queue(8, 64, mode=0o644)
    q.put_bytes(b"one")
    done = run_python(READ_ONLY_LOOK, q.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fill            1 / 8" in done.stdout and "1 alive of 1 registered" in done.stdout
    if os.path.isdir("/dev/shm"):
        assert "'participants_alive': 1" in done.stdout


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError), ("8", TypeError),
                                        (True, TypeError)])
def test_counts_are_integers_of_at_least_one_and_nothing_is_taken(make_queue, bad, error):
    q = make_queue(8, 64)
    r = make_queue(8, dtype=TICK)
    q.put("kept")
    r.put_array(np.zeros(2, TICK))
    for call in (lambda: q.get_many(max_items=bad), lambda: r.get_array(bad), lambda: r.view(bad),
                 lambda: r.reserve(bad), lambda: r.get_many(max_items=bad)):
        with pytest.raises(error, match=repr(bad) if error is TypeError else str(bad)):
            call()
    assert q.qsize() == 1 and r.qsize() == 2
    assert len(r.get_array(2**70)) == 2  # a huge count is just "as many as there are"


# ---- what the hostile review of this hardening found ----

OVERFLOW = """
    import struct, sys, numpy as np, shmring
    from segments import patch_segment, read_header, slot_state, COMMITTED
    dt = np.dtype([("x", "u1", (65536,))])      # big records: an overflow would run far
    q = shmring.Queue(5, dtype=dt)             # maxsize 5, capacity 8
    q.put_array(np.zeros(5, dt))
    h = read_header(q.name)
    for p in range(5, 8):                      # a writer marks 3 more slots committed
        patch_segment(q.name, h["meta_offset"] + 4 * p, struct.pack("<I", slot_state(h, p, COMMITTED)))
    print(len(q.get_array(max_items=8)))       # room for what is there: 5, never more
"""


def test_get_array_never_takes_more_than_it_made_room_for():
    done = run_python(OVERFLOW)
    assert done.returncode == 0 and done.stdout.split() == ["5"], done.stdout + done.stderr


def test_records_of_a_subarray_dtype_keep_their_shape_everywhere(make_queue):
    q = make_queue(8, dtype=np.dtype((np.float64, 3)))
    for rec in ([1, 2, 3], [4, 5, 6], [7, 8, 9]):
        q.put_bytes(np.array(rec, dtype=np.float64).tobytes())
    with q.view(2) as v:
        assert v.tolist() == [[1, 2, 3], [4, 5, 6]]
    with q.reserve(1) as a:
        a[:] = 10
    out = q.get_array()
    assert out.shape == (2, 3) and out.tolist() == [[7, 8, 9], [10, 10, 10]]
    assert q.stats()["lost"] == 0 and q.qsize() == 0


def test_get_array_on_a_large_ring_allocates_for_what_is_there(make_queue):
    q = make_queue(1 << 20, dtype=np.dtype("<i8"))   # 8 MiB of records
    q.put(7)
    done = run_python("""
        import resource, sys, shmring
        q = shmring.Queue.attach(sys.argv[1])
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (size + (4 << 20), hard))  # less than the ring
        print(q.get_array().tolist())
    """, q.name)
    if "statm" in done.stderr:
        pytest.skip("needs /proc/self/statm")
    assert done.returncode == 0 and done.stdout.strip() == "[7]", done.stdout + done.stderr


SMALL_STACK = """
    import os, signal, sys, threading, shmring
    from conftest import wait_until
    q = shmring.Queue(64, 64)
    pid = os.fork()
    if pid == 0:
        q.get(); os._exit(0)
    wait_until(lambda: q.stats()["readers_waiting"] == 1, what="the child asleep")
    os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)   # its sleeper bit stays set
    # recovery runs inside this put, on the smallest stack the platform allows (32 KiB on
    # x86-64; glibc's PTHREAD_STACK_MIN is 128 KiB on aarch64, which refuses less)
    threading.stack_size(max(32768, os.sysconf("SC_THREAD_STACK_MIN")))
    t = threading.Thread(target=lambda: print(q.put("x") or "ok")); t.start(); t.join()
"""


def test_a_put_that_reaps_a_dead_sleeper_runs_on_a_small_thread_stack():
    done = run_python(SMALL_STACK)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


NEW_PID_NAMESPACE_CHILD = """
    import ctypes, os, sys, threading, shmring
    assert os.getpid() == 1
    q = shmring.Queue(8)
    q.put("parent's")
    joined, stop = threading.Event(), threading.Event()
    def worker():                              # a second participant, in another thread
        q.put("thread's"); joined.set(); stop.wait()
    t = threading.Thread(target=worker); t.start(); joined.wait()
    assert ctypes.CDLL(None, use_errno=True).unshare(0x20000000) == 0  # CLONE_NEWPID
    if os.fork() == 0:                         # pid 1 as well, in the new namespace
        q.put("child's")
        q.close()
        os._exit(0)
    os.wait()
    print(os.path.exists("/dev/shm/" + q.name), q.stats()["participants"], q.get(), q.get(), q.get())
    stop.set(); t.join()
"""


def test_a_child_with_its_parents_pid_is_still_a_child(tmp_path):
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("needs Linux and root to make pid namespaces")
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                           textwrap.dedent(NEW_PID_NAMESPACE_CHILD)],
                          capture_output=True, text=True, timeout=60, env=child_python_env())
    if done.returncode != 0 and "unshare" in done.stderr and "Traceback" not in done.stderr:
        pytest.skip(f"cannot make a pid namespace here: {done.stderr.strip()}")
    assert done.stdout.split() == ["True", "2", "parent's", "thread's", "child's"], done.stdout + done.stderr
