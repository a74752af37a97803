"""Segment lifetime: the creator unlinks (close, GC, exit); nobody else does."""
import gc
import subprocess
import sys
import textwrap

import pytest

import shmring
from conftest import child_python_env
from segments import segment_exists

pytestmark = pytest.mark.timeout(60)


def run_script(code, *args):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=60, env=child_python_env(),
    )


def test_close_leaves_no_segment_behind():
    q = shmring.Queue(4)
    name = q.name
    assert segment_exists(name)
    q.close()
    assert not segment_exists(name)


def test_garbage_collection_of_the_creator_handle_unlinks():
    q = shmring.Queue(4)
    name = q.name
    del q
    gc.collect()
    assert not segment_exists(name)


CREATOR_EXITS = """
    import multiprocessing as mp, sys, shmring

    def child(q):
        q.put("from a %s child" % mp.get_start_method())

    if __name__ == "__main__":
        q = shmring.Queue(8)
        print(q.name, flush=True)
        for method in ("fork", "spawn", "forkserver"):
            if method in mp.get_all_start_methods():
                p = mp.get_context(method).Process(target=child, args=(q,))
                p.start()
                p.join()
                assert p.exitcode == 0
                assert q.get(timeout=30) == "from a %s child" % method
        # exits without close()
"""


def test_a_creator_that_exits_without_close_leaves_nothing_and_warns_nothing(tmp_path):
    script = tmp_path / "creator.py"
    script.write_text(textwrap.dedent(CREATOR_EXITS))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env=child_python_env())
    assert done.returncode == 0, done.stderr
    name = done.stdout.split()[0]
    assert not segment_exists(name)
    assert "resource_tracker" not in done.stderr and "leaked" not in done.stderr
    assert done.stderr == ""


ATTACHER = """
    import sys, shmring
    q = shmring.Queue.attach(sys.argv[1])
    q.put("attached and leaving")
    if sys.argv[2] == "close":
        q.close()
    # else: exit with the handle open
"""


@pytest.mark.parametrize("how", ["close", "exit"])
def test_an_attached_process_never_unlinks(make_queue, how):
    q = make_queue(4)
    done = run_script(ATTACHER, q.name, how)
    assert done.returncode == 0, done.stderr
    assert segment_exists(q.name)
    assert q.get(timeout=5) == "attached and leaving"


FORKS_A_CHILD = """
    import os, sys, shmring
    from segments import segment_exists
    q = shmring.Queue(4)
    pid = os.fork()
    if pid == 0:
        q.put("child was here")
        del q
        sys.exit(0)            # a normal exit: atexit handlers and GC run in the child
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert segment_exists(q.name), "the forked child unlinked its parent's segment"
    assert q.get(timeout=5) == "child was here"
    print("ok")
"""


def test_a_forked_child_that_exits_normally_does_not_unlink():
    done = run_script(FORKS_A_CHILD)
    assert done.stdout.strip() == "ok", done.stderr


def test_attached_handles_keep_working_after_the_creator_closes():
    q = shmring.Queue(4)
    other = shmring.Queue.attach(q.name)
    q.put("still here")
    q.close()
    assert not segment_exists(other.name)   # the name is gone ...
    assert other.get(timeout=5) == "still here"  # ... the mapping is not
    other.put("again")
    assert other.get() == "again"
    other.close()
