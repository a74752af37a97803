"""Every shmring exception is a ShmringError and keeps its stdlib base; every
message names the value and the rule it broke."""
import errno
import os
import pickle
import queue
import re
import struct

import pytest

import shmring
from segments import patch_segment
from shmring import _core, errors

pytestmark = pytest.mark.timeout(60)

STDLIB_BASES = {
    "Full": queue.Full,
    "Empty": queue.Empty,
    "MessageTooLarge": ValueError,
    "QueueClosed": ValueError,
    "SegmentError": ValueError,
    "SegmentNotFound": FileNotFoundError,
    "TooManyParticipants": RuntimeError,
    "UntrustedSegment": PermissionError,
    "InvalidArgument": ValueError,
    "SegmentExists": FileExistsError,
    "PermissionDenied": PermissionError,
    "OutOfMemory": MemoryError,
    "SystemCallError": OSError,
    "PoolBroken": RuntimeError,
}


@pytest.mark.parametrize("name", sorted(STDLIB_BASES))
def test_every_exception_is_a_shmring_error_and_keeps_its_stdlib_base(name):
    cls = getattr(shmring, name)
    assert cls is getattr(errors, name)
    assert issubclass(cls, shmring.ShmringError)
    assert issubclass(cls, STDLIB_BASES[name])


def test_the_package_exports_every_exception_once():
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, BaseException)
               and v.__module__ == errors.__name__]
    assert sorted(c.__name__ for c in classes) == sorted(errors.__all__)
    assert set(errors.__all__) <= set(shmring.__all__)
    assert len(shmring.__all__) == len(set(shmring.__all__))
    assert shmring.ShmringError.__bases__ == (Exception,)


def test_a_system_call_error_keeps_its_errno():
    e = shmring.SystemCallError(errno.EIO, "x")
    assert e.errno == errno.EIO and isinstance(e, OSError)


def test_a_ring_too_large_for_memory_says_how_much_it_asked_for():
    with pytest.raises(shmring.OutOfMemory) as info:
        shmring.Queue(maxsize=2**29, msg_size=2**30)
    text = str(info.value)
    assert isinstance(info.value, MemoryError)
    assert "maxsize 536870912" in text and "msg_size 1073741824" in text
    assert str(2**59) in text and "512 PiB" in text


def test_a_ring_rounded_up_to_a_power_of_two_says_so():
    with pytest.raises(MemoryError, match=r"maxsize 805306368 \(rounded up to 1073741824 slots\)"):
        shmring.Queue(maxsize=3 * 2**28, msg_size=2**30)


@pytest.mark.parametrize("kwargs, message", [
    (dict(msg_size=2**31), "msg_size must be 1 to 1073741824 bytes, got 2147483648"),
    (dict(msg_size=0), "msg_size must be 1 to 1073741824 bytes, got 0"),
    (dict(maxsize=2**40), "maxsize must be 1 to 1073741824 messages, got 1099511627776"),
    (dict(max_participants=5000), "max_participants must be 1 to 1024, got 5000"),
    (dict(max_participants=0), "max_participants must be 1 to 1024, got 0"),
    (dict(mode=0o1777), "mode must be permission bits, 0o000 to 0o777, got 0o1777"),
    (dict(recover_after=0), "'recover_after' must be a number of seconds above 0 and at most 86400, got 0"),
    (dict(recover_after=float("nan")), "'recover_after' must be .* got nan"),
])
def test_a_bad_argument_names_the_value_and_the_rule(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message) if ".*" not in message else message):
        shmring.Queue(**{"maxsize": 4, **kwargs})


def test_a_range_error_found_in_python_is_a_shmring_error_too():
    with pytest.raises(shmring.InvalidArgument):
        shmring.Queue(maxsize=2**40)


@pytest.mark.parametrize("name", ["bad/name", "x" * 31, ".", ""])
def test_a_bad_segment_name_names_it_and_the_rule(name):
    with pytest.raises(shmring.InvalidArgument) as info:
        shmring.Queue(4, name=name)
    assert repr(name) in str(info.value) and "1-30 characters" in str(info.value)


def test_a_missing_segment_names_it():
    with pytest.raises(shmring.SegmentNotFound, match="'shmring-test-no-such'"):
        shmring.Queue.attach("shmring-test-no-such")


def test_a_name_taken_is_a_segment_exists_error(make_queue):
    q = make_queue(4)
    with pytest.raises(shmring.SegmentExists, match=re.escape(repr(q.name))):
        shmring.Queue(4, name=q.name)


def test_a_negative_timeout_names_the_value(make_queue):
    q = make_queue(4)
    with pytest.raises(ValueError, match=r"'timeout' must be a non-negative number of seconds or None, got -1"):
        q.get(timeout=-1)
    with pytest.raises(ValueError, match="got nan"):
        q.put(1, timeout=float("nan"))


def test_a_message_too_large_names_both_sizes(make_queue):
    q = make_queue(4, 16)
    with pytest.raises(shmring.MessageTooLarge, match="is 17 bytes, larger than this queue's msg_size of 16"):
        q.put_bytes(b"x" * 17)


def test_a_count_past_a_reservation_names_it(make_queue):
    np = pytest.importorskip("numpy")
    q = make_queue(8, dtype=np.int64)
    r = q.reserve(4)
    with pytest.raises(ValueError, match=r"count must be within 0\.\.4 \(the records reserved\), got 5"):
        r.commit(5)
    r.commit(0)


def test_shmring_error_catches_what_the_c_layer_refused():
    caught = []
    for make in (lambda: shmring.Queue.attach("shmring-test-no-such"),
                 lambda: shmring.Queue(4, name="bad/name"),
                 lambda: shmring.Queue(maxsize=2**29, msg_size=2**30)):
        try:
            make()
        except shmring.ShmringError as e:
            caught.append(type(e).__name__)
    assert caught == ["SegmentNotFound", "InvalidArgument", "OutOfMemory"]
    assert not [n for n in os.listdir("/dev/shm") if n.startswith("shmring-test-no-such")]


@pytest.mark.parametrize("offset, value, reason", [
    (40, 0, "maxsize 0 in the header is out of range 1..1073741824"),
    (24, 2**31, "msg_size 2147483648 in the header is out of range 1..1073741824"),
    (8, 4, "layout version 4 in the header, this build's is 12"),
])
def test_a_corrupt_header_names_the_field_and_the_limit(make_queue, offset, value, reason):
    q = make_queue(8, 16)
    size = 4 if offset == 8 else 8
    patch_segment(q.name, offset, struct.pack("<I" if size == 4 else "<Q", value))
    with pytest.raises(shmring.SegmentError) as info:
        shmring.Queue.attach(q.name)
    assert str(info.value).endswith(reason)
    assert q.name in str(info.value)


def test_a_refused_create_keeps_the_c_layers_reason():
    handle = _core.QueueHandle()
    with pytest.raises(shmring.ShmringError, match="msg_size 2147483648 is over the largest slot, 1073741824 bytes"):
        handle._open("shmring-test-bad-slot", True, 4, 2**31)
    assert not os.path.exists("/dev/shm/shmring-test-bad-slot")


@pytest.mark.parametrize("code, stdlib", [(errno.EINTR, InterruptedError), (errno.EAGAIN, BlockingIOError),
                                          (errno.EIO, OSError)])
def test_a_system_call_error_is_the_oserror_subclass_of_its_errno(code, stdlib):
    e = errors.system_call_error(code, "what failed")
    assert isinstance(e, stdlib) and isinstance(e, errors.SystemCallError) and e.errno == code
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is type(e) and back.args == e.args


def test_exceptions_with_fields_survive_pickling():
    back = pickle.loads(pickle.dumps(errors.MessageTooLarge(2000, 1024)))
    assert (back.size, back.msg_size, str(back)) == (2000, 1024, str(errors.MessageTooLarge(2000, 1024)))
    full = pickle.loads(pickle.dumps(errors.Full("queue 'x' is full", 3)))
    assert full.count == 3 and isinstance(full, queue.Full)
