"""Codecs (codec.py) composed with the binding (shmring._core.QueueHandle):
the bytes codec, and the binding on its own, without the Queue policy on top."""
import os
import pickle

import pytest

import shmring
from shmring import _core

pytestmark = pytest.mark.timeout(60)


# ---- the bytes codec ----

def test_the_bytes_codec_puts_bytes_like_objects_as_they_are(make_queue):
    q = make_queue(8, 16, codec="bytes")
    q.put(b"abc")
    q.put(bytearray(b"de"))
    q.put_many([b"f", memoryview(b"gh")])
    assert q.get() == b"abc" and q.get_nowait() == b"de"
    assert q.get_many() == [b"f", b"gh"]
    with pytest.raises(TypeError):
        q.put(5)              # not 5 zero bytes
    with pytest.raises(TypeError):
        q.put("text")
    assert q.qsize() == 0


def test_the_bytes_codec_travels_with_a_pickled_handle(make_queue):
    q = make_queue(8, 16, codec="bytes")
    q.put(b"\x80\x05not a pickle")
    r = pickle.loads(pickle.dumps(q))
    try:
        assert r.get(timeout=5) == b"\x80\x05not a pickle"
    finally:
        r.close()


def test_an_unknown_codec_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"codec must be one of \['bytes', 'pickle'\].*got 'json'"):
        shmring.Queue(4, codec="json")
    np = pytest.importorskip("numpy")
    with pytest.raises(ValueError, match="no other codec"):
        shmring.Queue(4, dtype=np.int64, codec="bytes")


# ---- the binding on its own: no codec, bad callables, a second open ----

def test_a_bare_binding_handle_moves_bytes_and_refuses_objects():
    h = _core.QueueHandle()
    with pytest.raises(shmring.QueueClosed):
        h.put_bytes(b"x")
    h._open("shmring-test-bare-" + os.urandom(4).hex(), True, 4, 16, 0o600, 8)
    try:
        h.put_bytes(b"raw")
        with pytest.raises(TypeError, match="no codec"):
            h.get()
        with pytest.raises(TypeError, match="no codec"):
            h.put_many([1])
        assert h.get_bytes() == b"raw"
        with pytest.raises(TypeError, match="callable"):
            h._set_codec(None, pickle.loads)
        with pytest.raises(TypeError, match="needs a records queue"):
            h.view(1)
        with pytest.raises(RuntimeError, match="open already"):
            h._open("shmring-test-bare-2", True, 4, 16, 0o600, 8)
    finally:
        h.close()
    assert h.closed


def test_a_codec_that_returns_no_bytes_is_a_type_error_not_a_crash():
    q = _core.QueueHandle()
    q._open("shmring-test-nobytes-" + os.urandom(4).hex(), True, 4, 16, 0o600, 8)
    try:
        q._set_codec(lambda obj: obj, bytes)     # hands the binding whatever it got
        with pytest.raises(TypeError):
            q.put(12345)
        with pytest.raises(TypeError):
            q.put_many([b"ok", 3.5])
        q.put(b"bytes-like")
        assert q.get() == b"bytes-like" and q.qsize() == 0
    finally:
        q.close()


def test_a_live_queues_codec_and_records_are_set_once(make_queue):
    np = pytest.importorskip("numpy")
    q = make_queue(4, 64)
    with pytest.raises(RuntimeError, match="set once"):
        q._set_codec(lambda obj: obj, bytes)
    q.put(("still", "pickled"))
    assert q.get() == ("still", "pickled")
    r = make_queue(4, dtype=np.int64)
    with pytest.raises(RuntimeError, match="set once"):
        r._set_records(check=len, new=len, trim=len, array_of=len, array_type=int, dtype=np.dtype("S64"),
                       make_slots=len, seal=len)
    r.put_array(np.arange(3))
    assert r.get_array().tolist() == [0, 1, 2]


def test_records_put_many_and_get_many_move_one_array(make_queue):
    np = pytest.importorskip("numpy")
    q = make_queue(16, dtype=np.float64)
    q.put_many(np.arange(3))                       # cast as numpy casts, as before the codecs
    q.put_many([np.float32(1.5)])
    got = q.get_many()
    assert [float(x) for x in got] == [0.0, 1.0, 2.0, 1.5]
    with pytest.raises(ValueError):
        q.put_many([np.zeros(2)])                  # rows of two: not one record each
    assert q.qsize() == 0


def test_a_records_buffer_must_be_whole_records_and_writable(make_queue):
    np = pytest.importorskip("numpy")
    q = make_queue(8, dtype=np.int64)
    with pytest.raises(ValueError, match="not a whole number of 8-byte records"):
        q._put_records(b"12345")
    with pytest.raises(ValueError, match="writable"):
        q._get_records(b"x" * 64, 1)
    with pytest.raises(ValueError, match="no room for 4 records"):
        q._get_records(bytearray(16), 4)
    assert q.qsize() == 0
    q._put_records(np.arange(3, dtype=np.int64).tobytes())
    out = bytearray(24)
    assert q._get_records(out, 3, fill=True) == 3
    assert np.frombuffer(out, np.int64).tolist() == [0, 1, 2]
