"""Attaching to broken, foreign or truncated segments: a Python exception, never a signal.

Every case runs in a child process so that a crash would show as a signal.
"""
import subprocess
import sys
import textwrap

import pytest

from conftest import child_python_env
from segments import (
    HEADER,
    HEADER_FIELDS,
    LOST_OFFSET,
    READ_POS_OFFSET,
    TASKS_DONE_OFFSET,
    WRITE_POS_OFFSET,
    read_segment,
    unlink,
    write_segment,
)

pytestmark = pytest.mark.timeout(60)

ATTACH = """
    import sys, shmring
    try:
        shmring.Queue.attach(sys.argv[1])
    except Exception as e:
        print(type(e).__name__, "|", e)
    else:
        print("attached")
"""


def forged(good, field=None, value=None, at=None, size=None):
    raw = bytearray(good)
    if field is not None:
        values = list(HEADER.unpack_from(raw))
        values[HEADER_FIELDS.index(field)] = value
        HEADER.pack_into(raw, 0, *values)
    if at is not None:
        raw[at:at + 8] = value.to_bytes(8, "little")
    return bytes(raw[:size] if size is not None else raw)


CASES = {
    # name: (forge arguments, expected words in the message)
    "magic zero": (dict(field="magic", value=0), "never initialised"),
    "foreign magic": (dict(field="magic", value=0x1234), "not a shmring segment"),
    "older layout version": (dict(field="layout_version", value=4), "layout version"),
    "newer layout version": (dict(field="layout_version", value=13), "layout version"),
    "kind": (dict(field="kind", value=7), "different kind"),
    "header size": (dict(field="header_size", value=100), "header size"),
    "slot size zero": (dict(field="slot_size", value=0), "slot size"),
    "slot size huge": (dict(field="slot_size", value=1 << 40), "slot size"),
    "capacity": (dict(field="capacity", value=2048), "capacity"),
    "maxsize zero": (dict(field="maxsize", value=0), "maxsize"),
    "maxsize over capacity": (dict(field="maxsize", value=5000), "capacity"),
    "maxsize huge": (dict(field="maxsize", value=1 << 60), "maxsize"),
    "mapped size": (dict(field="mapped_size", value=1 << 20), "mapped size"),
    "participants offset": (dict(field="participants_offset", value=64), "offsets"),
    "no participants": (dict(field="max_participants", value=0), "participant table"),
    "many participants": (dict(field="max_participants", value=1 << 31), "participant table"),
    "participant size": (dict(field="participant_size", value=64), "participant table"),
    "meta offset": (dict(field="meta_offset", value=1 << 40), "offsets"),
    "payload offset": (dict(field="payload_offset", value=128), "offsets"),
    "unknown flags": (dict(field="flags", value=8), "reserved"),
    "a topic's flag on a queue": (dict(field="flags", value=2), "reserved"),
    "records flag without schema": (dict(field="flags", value=1), "schema"),
    "schema on a byte ring": (dict(at=1280, value=0x41), "schema"),
    "reserved bytes": (dict(at=120, value=7), "reserved"),
    "creator pid zero": (dict(field="creator_pid", value=0), "creator"),
    "creator pid negative": (dict(field="creator_pid", value=-5), "creator"),
    "created at epoch": (dict(field="created_unix_ns", value=0), "creator"),
    "created in the future": (dict(field="created_unix_ns", value=1 << 63), "creator"),
    "read ahead of write": (dict(at=READ_POS_OFFSET, value=10), "position"),
    "tasks done ahead of write": (dict(at=TASKS_DONE_OFFSET, value=10), "position"),
    "lost more than written": (dict(at=LOST_OFFSET, value=10), "position"),
    "write too far ahead": (dict(at=WRITE_POS_OFFSET, value=1 << 50), "position"),
    "truncated body": (dict(size=-65536), "truncated"),  # beyond macOS page rounding
    "truncated header": (dict(size=100), "truncated"),
    "empty": (dict(size=0), "truncated"),
}


@pytest.fixture(scope="module")
def good_segment():
    import shmring

    q = shmring.Queue(1000, 64)
    q.put_many(range(5))   # counters that the cases below push out of line
    q.get_many(max_items=3)
    raw = read_segment(q.name)
    q.close()
    return raw


@pytest.fixture(scope="module")
def good_records_segment():
    import numpy as np

    import shmring

    q = shmring.Queue(100, dtype=np.dtype([("a", "<i8"), ("b", "<f4")]))
    raw = read_segment(q.name)
    q.close()
    return raw


def schema_of(raw, text):
    raw = bytearray(raw)
    raw[1280:1280 + 1024] = text.ljust(1024, b"\0")[:1024]
    return bytes(raw)


RECORDS_CASES = {
    "schema not json": (b"{not json", "unreadable record schema"),
    "schema of another size": (b'{"numpy":"<f8"}', "itemsize"),
    "schema with objects": (b'{"numpy":"|O"}', "unreadable record schema"),
    "schema unterminated": (b"x" * 1024, "schema"),
}


def run_attach(name, data):
    unlink(name)
    write_segment(name, data)
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(ATTACH), name],
                              capture_output=True, text=True, timeout=30, env=child_python_env())
    finally:
        unlink(name)
    assert done.returncode == 0, f"child died (signal {-done.returncode}): {done.stderr}"
    kind, _, message = done.stdout.partition(" | ")
    return kind, message, done


@pytest.mark.parametrize("case", sorted(RECORDS_CASES))
def test_a_broken_record_schema_raises_a_python_exception(good_records_segment, case):
    text, expected = RECORDS_CASES[case]
    kind, message, done = run_attach("shmring-test-badrec-" + str(sorted(RECORDS_CASES).index(case)),
                                     schema_of(good_records_segment, text))
    assert kind == "SegmentError", done.stdout + done.stderr
    assert expected in message, message


@pytest.mark.parametrize("case", sorted(CASES))
def test_attaching_a_broken_segment_raises_a_python_exception(good_segment, case):
    forge, expected = CASES[case]
    kind, message, done = run_attach("shmring-test-bad-" + str(sorted(CASES).index(case)),
                                     forged(good_segment, **forge))
    assert kind == "SegmentError", done.stdout + done.stderr
    assert expected in message, message


@pytest.mark.parametrize("which", ["byte ring", "records ring"])
def test_the_unbroken_copies_attach(good_segment, good_records_segment, which):
    data = good_segment if which == "byte ring" else good_records_segment
    kind, _, done = run_attach("shmring-test-good-copy", data)
    assert kind.strip() == "attached", done.stderr
