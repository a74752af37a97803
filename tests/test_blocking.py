"""Blocking calls: timeouts honoured, Ctrl-C delivered, GIL released, idle CPU low."""
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import shmring
from conftest import child_python_env, wait_until

pytestmark = pytest.mark.timeout(60)

# How late a timed-out call may return (the bound).
TIMEOUT_SLACK = 0.020


@pytest.mark.parametrize("timeout", [0.01, 0.1, 0.25])
def test_get_timeout_is_honoured_within_20ms(make_queue, timeout):
    q = make_queue(4)
    t0 = time.monotonic()
    with pytest.raises(shmring.Empty):
        q.get(timeout=timeout)
    elapsed = time.monotonic() - t0
    assert timeout <= elapsed < timeout + TIMEOUT_SLACK


@pytest.mark.parametrize("timeout", [0.01, 0.1, 0.25])
def test_put_timeout_is_honoured_within_20ms(make_queue, timeout):
    q = make_queue(1)
    q.put(0)
    t0 = time.monotonic()
    with pytest.raises(shmring.Full):
        q.put(1, timeout=timeout)
    elapsed = time.monotonic() - t0
    assert timeout <= elapsed < timeout + TIMEOUT_SLACK


def test_get_many_and_join_timeouts_are_honoured(make_queue):
    q = make_queue(4)
    t0 = time.monotonic()
    with pytest.raises(shmring.Empty):
        q.get_many(timeout=0.1)
    assert 0.1 <= time.monotonic() - t0 < 0.1 + TIMEOUT_SLACK
    q.put(1)
    t0 = time.monotonic()
    assert q.join(timeout=0.1) is False
    assert 0.1 <= time.monotonic() - t0 < 0.1 + TIMEOUT_SLACK


def test_a_blocked_get_releases_the_gil_and_wakes_for_a_put(make_queue):
    q = make_queue(4)
    result = []
    t = threading.Thread(target=lambda: result.append(q.get(timeout=30)))
    t.start()
    # This thread runs while the other is blocked: it must not hold the GIL.
    wait_until(lambda: q.stats()["readers_waiting"] >= 1, what="reader asleep")
    q.put("wake up")
    t.join(timeout=30)
    assert result == ["wake up"]


def test_a_blocked_put_wakes_when_space_frees(make_queue):
    q = make_queue(1)
    q.put("first")
    t = threading.Thread(target=q.put, args=("second",), kwargs={"timeout": 30})
    t.start()
    wait_until(lambda: q.stats()["writers_waiting"] >= 1, what="writer asleep")
    assert q.get() == "first"
    t.join(timeout=30)
    assert q.get(timeout=5) == "second"


def test_close_wakes_a_blocked_thread_with_queue_closed():
    q = shmring.Queue(4)
    errors = []

    def blocked():
        try:
            q.get()
        except Exception as e:  # noqa: BLE001 - we check the type below
            errors.append(e)

    t = threading.Thread(target=blocked)
    t.start()
    wait_until(lambda: q.stats()["readers_waiting"] >= 1, what="reader asleep")
    q.close()
    t.join(timeout=5)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], shmring.QueueClosed)
    assert q.closed


# ---- in a child process: Ctrl-C and CPU while idle ----

def run_child(code, *args):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_python_env(),
    )


CTRL_C_CHILD = """
    import sys, time, shmring
    q = shmring.Queue.attach(sys.argv[1])
    print("ready", flush=True)
    try:
        if sys.argv[2] == "get":
            q.get()                  # timeout=None: blocks forever
        else:
            q.put("more")            # the queue is full: blocks forever
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
"""


@pytest.mark.parametrize("op", ["get", "put"])
def test_ctrl_c_interrupts_a_call_blocked_forever_within_200ms(make_queue, op):
    q = make_queue(1)
    if op == "put":
        q.put("fill")
    child = run_child(CTRL_C_CHILD, q.name, op)
    try:
        assert child.stdout.readline().strip() == "ready"
        waiting = "readers_waiting" if op == "get" else "writers_waiting"
        wait_until(lambda: q.stats()[waiting] >= 1, what="child asleep in the call")
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=10)
    finally:
        child.kill()
    word, when = out.split()
    assert word == "interrupted", err
    assert float(when) - sent < 0.2


IDLE_CHILD = """
    import sys, time, shmring
    q = shmring.Queue.attach(sys.argv[1])
    cpu0, wall0 = time.process_time(), time.monotonic()
    try:
        q.get(timeout=float(sys.argv[2]))
    except shmring.Empty:
        pass
    print(time.process_time() - cpu0, time.monotonic() - wall0)
"""


def test_an_idle_blocked_consumer_uses_under_2_percent_of_a_core(make_queue):
    q = make_queue(4)
    child = run_child(IDLE_CHILD, q.name, "2.0")
    out, err = child.communicate(timeout=30)
    cpu, wall = map(float, out.split())
    assert wall >= 2.0, err
    assert cpu / wall < 0.02
