"""Raw access to POSIX shared-memory segments for tests (Linux and macOS alike).

Uses the interpreter's own shm_open binding (_posixshmem), so tests can look at
a ring's bytes, or forge broken segments, without going through shmring.
"""
import mmap
import os
import struct

import _posixshmem

# struct formats of the header, mirroring csrc/layout.h (which static_asserts the offsets)
HEADER = struct.Struct("<QIIIIQQQQQIIQQqQQQII")
HEADER_FIELDS = (
    "magic layout_version kind flags header_size slot_size capacity maxsize mapped_size "
    "participants_offset max_participants participant_size meta_offset payload_offset "
    "creator_pid created_unix_ns lock_ino lock_token kind_arg0 kind_arg1"
).split()
MAGIC = 0x31474E49524D4853
FIXED_PART = 2304         # header, hot lines, wait queues, schema: sizeof(struct shmring_segment)
PARTICIPANT_SIZE = 128
LAYOUT_VERSION = 12
META_SIZE = 8             # per slot in byte rings: seq (32 bit) + length (32 bit)
SEQ16_MIN_CAPACITY = 1 << 16  # records rings this large have 16-bit slot words, smaller ones 32-bit
FREE, COMMITTED, HOLE = 0, 1, 2  # slot word codes (csrc/layout.h)
SCHEMA_OFFSET = 1280
SCHEMA_MAX = 1024
WRITE_POS_OFFSET = 128
READ_POS_OFFSET = 256
TASKS_DONE_OFFSET = 896
LOST_OFFSET = 1152
DISCARDED_OFFSET = 1176   # stats line: lost, recoveries, detached, discarded
EXPIRED_OFFSET = 1184     # stats line: messages dropped at dequeue, their deadline passed
EXPIRY_SIZE = 8           # a queue's deadline per slot: CLOCK_MONOTONIC ns, 0 for none
SHUT = 1 << 63            # write_pos: shut down (queue and topic)
DRAINING, DISCARDING = 1 << 62, 1 << 63  # a queue's read_pos: shut down; at once (immediate)
SUBSCRIBER_SIZE = 128     # a topic's subscriber entry (csrc/layout.h)
MULTICAST, OVERWRITE = 2, 4  # a topic's header flags


def segment_exists(name):
    try:
        fd = _posixshmem.shm_open("/" + name, os.O_RDONLY, 0)
    except FileNotFoundError:
        return False
    os.close(fd)
    return True


def read_segment(name):
    fd = _posixshmem.shm_open("/" + name, os.O_RDONLY, 0)
    try:
        size = os.fstat(fd).st_size
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
            return bytes(m)
    finally:
        os.close(fd)


def read_header(name):
    return dict(zip(HEADER_FIELDS, HEADER.unpack_from(read_segment(name))))


def write_segment(name, data, create=True):
    """Create (or overwrite) a segment holding exactly `data`."""
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
    fd = _posixshmem.shm_open("/" + name, flags, 0o600)
    try:
        if create and len(data):
            os.ftruncate(fd, len(data))
        if len(data):
            with mmap.mmap(fd, len(data)) as m:
                m[:] = data
    finally:
        os.close(fd)


def patch_segment(name, offset, data):
    """Overwrite bytes of a live segment in place (white-box tests)."""
    fd = _posixshmem.shm_open("/" + name, os.O_RDWR, 0)
    try:
        with mmap.mmap(fd, os.fstat(fd).st_size) as m:
            m[offset:offset + len(data)] = data
    finally:
        os.close(fd)


def meta_size(h):
    """Bytes of slot meta per slot in the ring whose header is h."""
    if not h["flags"] & 1 or h["flags"] & MULTICAST:  # byte rings and topics: seq + length
        return META_SIZE
    return 2 if h["capacity"] >= SEQ16_MIN_CAPACITY else 4


def slot_state(h, position, code):
    """The slot word that says `position` is in state `code`: its lap, then the code."""
    return ((position // h["capacity"]) << 2 | code) % (1 << (8 * min(meta_size(h), 4)))


def slot_word(raw, h, slot):
    """The sequence word of slot index `slot` in the segment bytes raw."""
    at = h["meta_offset"] + slot * meta_size(h)
    return int.from_bytes(raw[at:at + min(meta_size(h), 4)], "little")


def slot_meta_offset(name, position):
    h = read_header(name)
    return h["meta_offset"] + (position % h["capacity"]) * meta_size(h)


def unlink(name):
    try:
        _posixshmem.shm_unlink("/" + name)
    except FileNotFoundError:
        pass
