"""Kernel-lock liveness and the ring's lock file (csrc/liveness.c): who may touch
the locks that say a participant lives, and what a lock file that is not the
ring's own can and cannot do."""
import fcntl
import os
import struct
import subprocess
import sys
import textwrap

import pytest

import shmring
from conftest import child_python_env, wait_until
from shmring._core import inspect
from segments import FIXED_PART, PARTICIPANT_SIZE, read_header, read_segment
from test_hostile import run_python

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(fcntl, "F_OFD_SETLK"),
                       reason="lock files exist where OFD locks do (Linux)"),
]

LIVENESS_OFFSET = 40            # in an entry (csrc/layout.h)
LIVENESS_PID, LIVENESS_LOCK = 1, 2
ACTIVE = 2


def lock_path(name):
    return "/dev/shm/" + inspect(name)["lock_file"]


def active_liveness(name):
    """The liveness kind of every ACTIVE entry, in table order."""
    raw, h = read_segment(name), read_header(name)
    kinds = []
    for i in range(h["max_participants"]):
        at = FIXED_PART + i * PARTICIPANT_SIZE
        if struct.unpack_from("<I", raw, at)[0] & 0xFF == ACTIVE:
            kinds.append(struct.unpack_from("<I", raw, at + LIVENESS_OFFSET)[0])
    return kinds


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (to act as another user)")


@pytest.mark.parametrize("mode, lock_mode", [(0o600, 0o600), (0o644, 0o600), (0o640, 0o600), (0o660, 0o660),
                                             (0o664, 0o660), (0o666, 0o666), (0o444, 0o600), (0o622, 0o666)])
def test_the_lock_file_opens_to_exactly_the_rings_writers_and_goes_with_it(make_queue, mode, lock_mode):
    q = make_queue(4, 8, mode=mode)
    path = lock_path(q.name)
    h = read_header(q.name)
    assert path == f"/dev/shm/{q.name}~{h['lock_token']:016x}"
    st = os.stat(path)
    assert st.st_mode & 0o7777 == lock_mode and h["lock_ino"] == st.st_ino
    q.put_bytes(b"x")
    assert active_liveness(q.name) == [LIVENESS_LOCK]
    q.close()
    assert not os.path.exists(path)


def test_each_ring_of_a_name_gets_a_lock_file_nobody_could_name_before(make_queue):
    """A name fixed by the ring's name could be taken by anyone watching /dev/shm
    between the segment appearing and the lock file being made."""
    names = set()
    for _ in range(3):
        q = make_queue(4, 8, name="shmring-test-relock")
        names.add(lock_path(q.name))
        q.close()
    assert len(names) == 3


READER = """
    import errno, fcntl, os, struct, sys, threading, shmring
    name, lock_path = sys.argv[1:]
    r, w = os.pipe()
    hold, _ = os.pipe()                            # never written: the reader waits on it until killed
    pid = os.fork()
    if pid == 0:                                   # a user who may only read the ring
        os.setgid(65534); os.setuid(65534)
        fd = os.open("/dev/shm/" + name, os.O_RDONLY)
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 0, 0, 0))  # every byte
        try:
            os.open(lock_path, os.O_RDONLY)
            os.write(w, b"opened the lock file")
        except PermissionError:
            os.write(w, b"x")
        os.read(hold, 1); os._exit(0)
    os.close(w)                                    # a child that fails says nothing: b""
    said = os.read(r, 100)
    q = shmring.Queue.attach(name)
    t = threading.Thread(target=q.put, args=("from a new thread",)); t.start(); t.join()
    print(said.decode(), q.get())
    os.kill(pid, 9); os.waitpid(pid, 0)
"""


def test_a_reader_cannot_push_joiners_off_kernel_lock_liveness(make_queue):
    needs_root()
    q = make_queue(8, 64, max_participants=4, mode=0o644)
    done = run_python(READER, q.name, lock_path(q.name))
    assert done.returncode == 0 and done.stdout.split() == ["x", "from", "a", "new", "thread"], \
        done.stdout + done.stderr
    # the creator and the attacher's thread joined with locks despite the reader's read locks
    assert read_header(q.name)["max_participants"] == 4
    assert LIVENESS_PID not in active_liveness(q.name)


KILLED_PEER = """
    import os, sys, shmring
    q = shmring.Queue.attach(sys.argv[1])
    q.put("from the peer")
    os.write(1, b"joined\\n")
    os.read(0, 1)                                  # until killed
"""


def test_a_lock_file_swapped_under_the_ring_cannot_make_live_participants_look_dead(make_queue):
    """A prober must ask the lock file the ring's participants lock: another file
    under that name has no locks, and would make every live participant dead."""
    q = make_queue(8, 64)
    q.put("creator's")                             # the creator holds entry 0's lock
    planted = lock_path(q.name)
    os.unlink(planted)
    os.close(os.open(planted, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    assert inspect(q.name)["participants_alive"] == 1
    peer = shmring.Queue.attach(q.name)
    assert peer.get() == "creator's"
    with pytest.raises(shmring.Empty):
        peer.get(timeout=0.3)                      # blocked past recover_after: recovery ran
    assert peer.stats()["participants"] == 2 and len(active_liveness(q.name)) == 2
    peer.close()
    assert inspect(q.name)["participants_alive"] == 1
    q.close()
    assert os.path.exists(planted)                 # not the ring's: close leaves it
    os.unlink(planted)


def test_closing_a_ring_whose_name_was_taken_by_another_removes_only_its_own_files(make_queue):
    first = make_queue(4, 8, name="shmring-test-renamed")
    first_lock = lock_path(first.name)
    os.unlink("/dev/shm/" + first.name)              # removed by hand; the name is free again
    second = make_queue(4, 16, name="shmring-test-renamed")
    second_lock = lock_path(second.name)
    first.close()
    assert not os.path.exists(first_lock)
    assert os.path.exists("/dev/shm/" + second.name) and os.path.exists(second_lock)
    second.put_bytes(b"still here")
    assert shmring.Queue.attach(second.name).get_bytes() == b"still here"


def test_a_peer_killed_with_its_lock_is_dead_at_once_for_every_writer(make_queue):
    q = make_queue(8, 64, mode=0o660)
    peer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_PEER), q.name],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_python_env())
    try:
        assert peer.stdout.readline() == b"joined\n"
        assert q.stats()["participants"] == 2
        assert sorted(active_liveness(q.name)) == [LIVENESS_LOCK, LIVENESS_LOCK]
        peer.kill()
        peer.wait(timeout=30)
        wait_until(lambda: inspect(q.name)["participants_alive"] == 1, what="the peer judged dead")
        assert q.get() == "from the peer"
    finally:
        peer.kill()
        peer.wait(timeout=30)
