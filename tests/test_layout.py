"""The shared layout is a contract: read a fresh segment with `struct`."""
import os

import pytest

import shmring

from segments import (
    COMMITTED,
    DISCARDED_OFFSET,
    DISCARDING,
    DRAINING,
    EXPIRED_OFFSET,
    EXPIRY_SIZE,
    MULTICAST,
    OVERWRITE,
    SUBSCRIBER_SIZE,
    FIXED_PART,
    FREE,
    LAYOUT_VERSION,
    MAGIC,
    META_SIZE,
    PARTICIPANT_SIZE,
    READ_POS_OFFSET,
    SCHEMA_MAX,
    SCHEMA_OFFSET,
    SEQ16_MIN_CAPACITY,
    SHUT,
    WRITE_POS_OFFSET,
    read_header,
    read_segment,
    slot_state,
    slot_word,
)

pytestmark = pytest.mark.timeout(30)


def align(x, to=128):
    return (x + to - 1) // to * to


@pytest.mark.parametrize("maxsize, msg_size, capacity", [(1, 1, 4), (5, 24, 8), (1000, 64, 1024), (1024, 100, 1024)])
def test_fresh_segment_header_matches_the_documented_layout(make_queue, maxsize, msg_size, capacity):
    q = make_queue(maxsize, msg_size)
    h = read_header(q.name)
    assert h["magic"] == MAGIC
    assert h["layout_version"] == LAYOUT_VERSION == 12
    assert h["kind"] == 1
    assert h["flags"] == 0  # a byte ring
    assert (h["kind_arg0"], h["kind_arg1"]) == (0, 0)  # a topic's parameters
    assert h["header_size"] == FIXED_PART
    assert (h["slot_size"], h["maxsize"], h["capacity"]) == (msg_size, maxsize, capacity)
    assert h["creator_pid"] == os.getpid()
    assert h["participants_offset"] == FIXED_PART
    assert h["participant_size"] == PARTICIPANT_SIZE
    kind_offset = align(FIXED_PART + h["max_participants"] * PARTICIPANT_SIZE)
    # the queue's own area: the expiry line, then an 8-byte deadline per slot
    assert h["meta_offset"] == align(kind_offset + 128 + capacity * 8)
    assert h["payload_offset"] == align(h["meta_offset"] + capacity * META_SIZE)
    assert h["mapped_size"] == h["payload_offset"] + capacity * msg_size
    assert len(read_segment(q.name)) >= h["mapped_size"]


def test_positions_and_slot_sequence_words_move_as_documented(make_queue):
    q = make_queue(5, 8)
    for i in range(3):
        q.put_bytes(bytes([i]) * (i + 1))
    q.get_bytes()
    raw = read_segment(q.name)
    h = read_header(q.name)
    write_pos = int.from_bytes(raw[WRITE_POS_OFFSET:WRITE_POS_OFFSET + 8], "little")
    read_pos = int.from_bytes(raw[READ_POS_OFFSET:READ_POS_OFFSET + 8], "little")
    assert (write_pos, read_pos) == (3, 1)
    meta = h["meta_offset"]

    def slot(i):
        seq = slot_word(raw, h, i)
        length = int.from_bytes(raw[meta + i * META_SIZE + 4:meta + i * META_SIZE + 8], "little")
        payload = raw[h["payload_offset"] + i * 8:h["payload_offset"] + i * 8 + length]
        return seq, length, payload

    # a word is (lap << 2 | code): slot 0 was read, so it is free for position
    # 0 + capacity (lap 1); slots 1, 2 are committed in lap 0; slot 3 is free
    assert slot(0)[0] == slot_state(h, h["capacity"], FREE) == 4
    assert slot(1) == (COMMITTED, 2, b"\x01\x01")
    assert slot(2) == (COMMITTED, 3, b"\x02\x02\x02")
    assert slot(3)[0] == FREE
    # payload slots are contiguous: slot i at payload_offset + i * slot_size
    assert raw[h["payload_offset"] + 8:h["payload_offset"] + 10] == b"\x01\x01"


def test_a_records_ring_has_a_schema_and_dense_slot_words(make_queue):
    np = pytest.importorskip("numpy")
    dt = np.dtype([("ts", "<i8"), ("qty", "<i4")])
    q = make_queue(10, dtype=dt)
    h = read_header(q.name)
    raw = read_segment(q.name)
    assert h["flags"] == 1 and h["slot_size"] == dt.itemsize == 12
    schema = raw[SCHEMA_OFFSET:SCHEMA_OFFSET + SCHEMA_MAX].split(b"\0")[0]
    assert b'"names":["ts","qty"]' in schema
    assert h["payload_offset"] == align(h["meta_offset"] + h["capacity"] * 4)  # 32-bit words
    q.put_array(np.array([(7, 1), (8, 2)], dt))
    raw = read_segment(q.name)
    assert [slot_word(raw, h, i) for i in range(3)] == [COMMITTED, COMMITTED, FREE]
    payload = raw[h["payload_offset"]:h["payload_offset"] + 24]
    assert np.frombuffer(payload, dt).tolist() == [(7, 1), (8, 2)]


def test_a_large_records_ring_has_16_bit_slot_words_that_count_laps(make_queue):
    np = pytest.importorskip("numpy")
    q = make_queue(SEQ16_MIN_CAPACITY, dtype=np.dtype("<u2"))
    h = read_header(q.name)
    assert h["capacity"] == SEQ16_MIN_CAPACITY
    assert h["payload_offset"] == align(h["meta_offset"] + h["capacity"] * 2)
    lap = np.arange(h["capacity"], dtype="<u2")
    q.put_array(lap)
    assert q.get_array(out=np.empty_like(lap)) == len(lap)
    q.put_array(lap[:2])
    q.get_array(1)
    raw = read_segment(q.name)
    # slot 0: read in lap 1, free for lap 2; slot 1: committed in lap 1; slot 2: read in lap 0
    words = [slot_word(raw, h, i) for i in range(3)]
    assert words == [slot_state(h, 2 * h["capacity"], FREE), slot_state(h, h["capacity"] + 1, COMMITTED),
                     slot_state(h, h["capacity"] + 2, FREE)] == [8, 5, 4]


@pytest.mark.parametrize("policy, records", [("block", False), ("overwrite", False), ("block", True)])
def test_a_topic_has_its_parameters_its_own_area_and_byte_ring_slot_words(policy, records):
    np = pytest.importorskip("numpy") if records else None
    dtype = np.dtype([("a", "<i8")]) if records else None
    t = shmring.Topic(100, None if records else 48, dtype=dtype, policy=policy, max_subscribers=5, max_topic_len=13)
    try:
        h = read_header(t.name)
        assert h["kind"] == 2 and h["layout_version"] == 12
        assert h["flags"] == MULTICAST | (OVERWRITE if policy == "overwrite" else 0) | (1 if records else 0)
        assert (h["kind_arg0"], h["kind_arg1"]) == (5, 13)
        assert (h["maxsize"], h["capacity"]) == (100, 128)
        kind_offset = align(FIXED_PART + h["max_participants"] * PARTICIPANT_SIZE)
        key_stride = (4 + 13 + 7) // 8 * 8
        assert h["meta_offset"] == align(kind_offset + 5 * SUBSCRIBER_SIZE + 128 * key_stride)
        assert h["payload_offset"] == align(h["meta_offset"] + 128 * META_SIZE)  # seq + length, records too
        assert h["mapped_size"] == h["payload_offset"] + 128 * h["slot_size"]
        t.publisher().publish_bytes(b"k.1", b"x" * h["slot_size"])
        raw = read_segment(t.name)
        assert slot_word(raw, h, 0) == COMMITTED and int.from_bytes(raw[WRITE_POS_OFFSET:WRITE_POS_OFFSET + 8], "little") == 1
        key = raw[kind_offset + 5 * SUBSCRIBER_SIZE:][:key_stride]
        assert int.from_bytes(key[:4], "little") == 3 and key[4:7] == b"k.1"
    finally:
        t.close()


def test_a_shut_down_queue_flags_its_position_counters_as_documented(make_queue):
    q = make_queue(8, 8)
    q.put_many_bytes([b"a", b"b", b"c"])
    q.get_bytes()

    def counters():
        raw = read_segment(q.name)
        return tuple(int.from_bytes(raw[off:off + 8], "little")
                     for off in (WRITE_POS_OFFSET, READ_POS_OFFSET, DISCARDED_OFFSET))

    assert counters() == (3, 1, 0)
    q.shutdown()
    assert counters() == (SHUT | 3, DRAINING | 1, 0)
    q.shutdown(immediate=True)  # the two left are discarded: claimed, read_pos keeps its flags
    assert counters() == (SHUT | 3, DISCARDING | DRAINING | 3, 2)


def test_a_queue_keeps_message_deadlines_in_its_own_area_as_documented(make_queue):
    q = make_queue(4, 8)
    h = read_header(q.name)
    area = align(FIXED_PART + h["max_participants"] * PARTICIPANT_SIZE)

    def word(off):
        return int.from_bytes(read_segment(q.name)[off:off + 8], "little")

    def entry(pos):
        return word(area + 128 + (pos % h["capacity"]) * EXPIRY_SIZE)

    q.put_bytes(b"a")
    assert word(area) == 0 and entry(0) == 0  # no deadline yet: the area stays untouched
    q.put_bytes(b"b", deadline=2e8)  # about 6 years of uptime: still ahead
    q.put_bytes(b"c", deadline=1.0)  # passed long ago
    assert word(area) & 0xFFFFFFFF == 1  # expiring: on for good
    assert (entry(1), entry(2)) == (2 * 10**17, 10**9)
    q.put_bytes(b"d")
    assert entry(3) == 0
    assert q.get_many_bytes(timeout=5) == [b"a", b"b", b"d"]  # c dropped between two claims
    assert word(EXPIRED_OFFSET) == 1
    q.put_bytes(b"e")  # position 4: slot 0 again
    q.put_bytes(b"f")  # position 5: slot 1, whose deadline of the last lap is cleared
    assert (entry(4), entry(5)) == (0, 0)
    assert q.get_many_bytes(timeout=5) == [b"e", b"f"] and word(EXPIRED_OFFSET) == 1
