import os
import select
import signal
import time

import pytest

import shmring
from segments import segment_exists
from shmring._core import inspect


def wait_until(predicate, timeout=10.0, what="condition"):
    """Poll `predicate` until true; fail (not hang) after `timeout` seconds.

    For conditions nothing can signal to us (e.g. "the child is now asleep in
    get()"), read from the ring's own counters.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.001)


def _made_and_removed(cls):
    """make(...) creates rings of cls that are closed, and checked unlinked, after the test."""
    made = []

    def make(*args, **kwargs):
        ring = cls(*args, **kwargs)
        made.append((ring, inspect(ring.name)["lock_file"]))
        return ring

    yield make
    for ring, _ in made:
        ring.close()
    left = [name for ring, lock_file in made for name in (ring.name, lock_file) if name and segment_exists(name)]
    assert not left, f"segments left behind: {left}"


@pytest.fixture
def make_queue():
    """Create queues that are closed, and checked unlinked, after the test."""
    yield from _made_and_removed(shmring.Queue)


@pytest.fixture
def make_topic():
    """Create topics that are closed, and checked unlinked, after the test."""
    yield from _made_and_removed(shmring.Topic)


@pytest.fixture(params=["fork", "spawn", "forkserver"])
def start_method(request):
    import multiprocessing as mp

    if request.param not in mp.get_all_start_methods():
        pytest.skip(f"start method {request.param} not available here")
    return request.param


def child_python_env():
    """Environment for `python -c` children: same interpreter, same import path."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests_dir, env.get("PYTHONPATH")]))
    return env


def interrupt_when_asleep(q, child, waiting):
    """Wait for `child` (a process that prints "ready", then blocks on q) to sleep
    in q (stats()[waiting] >= 1), send it SIGINT, and return (out, err, sent):
    its output and when the signal went. The child is killed in any case."""
    try:
        assert select.select([child.stdout], [], [], 30)[0], "child did not start"
        assert child.stdout.readline().strip() == "ready"
        wait_until(lambda: q.stats()[waiting] >= 1, what="child asleep in the wait")
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=10)
    finally:
        child.kill()
        child.wait(10)
    return out, err, sent
