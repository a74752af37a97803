import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import shmring
from segments import segment_exists
from shmring._core import inspect

# The suite travels: it runs from a source checkout, and copied out of one against an
# installed wheel (tools/build_wheels.sh, cibuildwheel's test-sources). So what pytest
# needs to know is said here, beside the tests, not in pyproject.toml: the markers, and
# a timeout for every test that does not set its own.
ROOT = Path(__file__).resolve().parent.parent   # the checkout, where there is one
DEFAULT_TIMEOUT = 120                             # seconds, for tests without a timeout mark


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long stress/soak runs (run in CI, bounded in time)")
    if not config.pluginmanager.hasplugin("timeout"):
        raise pytest.UsageError("the shmring tests need pytest-timeout: every test that can block has a "
                                "timeout (pip install 'shmring[test]')")


def pytest_collection_modifyitems(config, items):
    if config.getoption("timeout", None) is None and not config.getini("timeout"):
        for item in items:  # no --timeout and no ini setting: the tests' own default
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


def source_tree(*paths):
    """Mark for tests that need files of a source checkout (paths from its root): they
    skip, saying which file is missing, where the tests run against an installed package."""
    missing = [path for path in paths if not (ROOT / path).exists()]
    return pytest.mark.skipif(bool(missing), reason=f"needs the source tree ({', '.join(missing)} "
                                                    "not beside tests/): run from a checkout")


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


STALLED_PUBLISHER = """
    import signal, sys, shmring
    from shmring import _core
    signal.signal(signal.SIGUSR1, lambda *a: None)  # ends the hook's stall (nanosleep: EINTR)
    t = shmring.Topic.attach(sys.argv[1])
    pub = t.publisher()
    _core._set_test_hook(sys.argv[2], 600)
    print("claiming", flush=True)
    pub.publish_bytes(b"k", b"stalled")
"""


def start_stalled_publisher(topic, at="put_claimed"):
    """A child process that claims the topic's next position and stalls, alive, at
    test hook `at`: "put_claimed" (claimed, not written), or "put_committing"
    (written and marked, not committed). Its claim is made when this returns.
    Kill it, or let it go on with release_stalled_publisher."""
    published = topic.stats()["published"]
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(STALLED_PUBLISHER), topic.name, at],
                             stdout=subprocess.PIPE, text=True, env=child_python_env())
    try:
        assert child.stdout.readline().strip() == "claiming"
        wait_until(lambda: topic.stats()["published"] == published + 1, what="the stalled child's claim")
    except BaseException:
        child.kill()
        child.wait(10)
        raise
    return child


def release_stalled_publisher(child):
    """Let a stalled child go on and finish (a signal sent before its stall is repeated)."""
    while child.poll() is None:
        child.send_signal(signal.SIGUSR1)
        try:
            child.wait(0.05)
        except subprocess.TimeoutExpired:
            pass
    assert child.returncode == 0


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
