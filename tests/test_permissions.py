"""Segments are private to their user unless asked otherwise."""
import os
import stat
import subprocess
import sys
import textwrap

import _posixshmem
import pytest

import shmring
from conftest import child_python_env

pytestmark = pytest.mark.timeout(60)


def segment_mode(name):
    fd = _posixshmem.shm_open("/" + name, os.O_RDONLY, 0)
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def test_segments_are_created_mode_0600_by_default(make_queue):
    old = os.umask(0)  # whatever the umask, the default stays private
    try:
        q = make_queue(4)
    finally:
        os.umask(old)
    assert segment_mode(q.name) == 0o600


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS applies the umask to shm objects and refuses fchmod")
def test_mode_shares_a_segment_with_other_users_exactly_as_asked(make_queue):
    old = os.umask(0o077)  # the requested mode wins over a strict umask
    try:
        q = make_queue(4, mode=0o660)
    finally:
        os.umask(old)
    assert segment_mode(q.name) == 0o660


ATTACH_AS_ANOTHER_USER = """
    import os, sys, shmring   # imported first: 'nobody' may not read our files
    if os.getuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    try:
        shmring.Queue.attach(sys.argv[1])
    except PermissionError as e:
        print("PermissionError", e)
    else:
        print("attached")
"""


def test_attaching_without_permission_is_a_permission_error(make_queue):
    # As root, a child drops to 'nobody'; otherwise the segment grants nobody anything.
    q = make_queue(4) if os.getuid() == 0 else make_queue(4, mode=0o000)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(ATTACH_AS_ANOTHER_USER), q.name],
                          capture_output=True, text=True, timeout=30, env=child_python_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("PermissionError"), done.stdout + done.stderr
    assert q.name in done.stdout
