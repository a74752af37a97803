"""Codecs: what a message of a queue is, and how it becomes the bytes of a slot.

- ``PickleCodec`` (the default): any picklable object, pickle protocol 5.
- ``BytesCodec``: bytes-like objects as they are (``get`` returns ``bytes``); for
  peers that must not run each other's code.
- ``RecordsCodec``: numpy records of one dtype, the queue's slot size; arrays in
  and out (``put_array``, ``get_array``), and zero-copy reservations and views.

A codec is installed on a handle of the binding (``shmring._core.QueueHandle``)
once, when the queue is opened. The single-message paths stay in Cython: the
codec hands the binding its callables (``pickle.dumps`` with the protocol as a
second argument, ``pickle.loads``), which the binding's put/get/put_many/get_many
call without a Python frame in between. Records work the same way: the codec
hands over its check of an array, how to allocate and trim one, and how to make
the arrays over the slots; arrays of the dtype it vouches for skip the check.
"""
import pickle

from shmring.records import check_dtype

__all__ = ["Codec", "PickleCodec", "BytesCodec", "RecordsCodec", "CODECS", "codec_named"]

PICKLE_PROTOCOL = 5


class Codec:
    """What every codec says: its name (pickled handles carry it) and how it
    installs itself on a handle."""

    name = None

    def install(self, q):
        raise NotImplementedError


class PickleCodec(Codec):
    """Objects, pickled with protocol 5 (whoever can write the ring decides what
    this process unpickles, that is, what code it runs)."""

    name = "pickle"

    def install(self, q):
        # pickle.dumps(obj, 5): a functools.partial(pickle.dumps, protocol=5) costs
        # ~500 ns more a call (its keyword is merged into a new dict each time)
        q._set_codec(pickle.dumps, pickle.loads, PICKLE_PROTOCOL)


class BytesCodec(Codec):
    """Bytes-like objects as they are; ``get`` returns ``bytes``."""

    name = "bytes"

    def install(self, q):
        # memoryview refuses what is not bytes-like (bytes(5) would be 5 zero bytes);
        # bytes(b) of a bytes object is that object
        q._set_codec(memoryview, bytes)


CODECS = {c.name: c for c in (PickleCodec, BytesCodec)}


def codec_named(name):
    """The codec class called `name` ("pickle", "bytes")."""
    try:
        return CODECS[name]
    except (KeyError, TypeError):
        raise ValueError(f"codec must be one of {sorted(CODECS)} (records: dtype=...), got {name!r}") from None


_np = None


def _numpy():
    """numpy, imported on first use: only records queues need it."""
    global _np
    if _np is None:
        import numpy

        _np = numpy
    return _np


def _seal(array):
    """A committed reservation's array: no longer ours to write."""
    array.flags.writeable = False


def _trim(array, count):
    """get_array's array cut to the records it got, giving back the unused room
    (the records are in it; subarray dtypes keep their further dimensions)."""
    array.resize((count,) + array.shape[1:], refcheck=False)
    return array


class RecordsCodec(Codec):
    """Records of one numpy dtype (structured or scalar, no object fields)."""

    name = "records"

    def __init__(self, dtype):
        self.dtype = check_dtype(dtype)
        self._itemsize = self.dtype.itemsize
        self._dtype_ok = None  # the last array dtype found equal to ours (comparing is slow)
        self._kind, self._put = "queue", "put"  # what errors call the handle and its call

    def install(self, q):
        np = _numpy()
        if getattr(q, "_kind", "queue") == "topic":
            self._kind, self._put = "topic", "publish"
        q._set_codec(self.encode, self.decode)
        q._set_records(check=self.as_records, new=np.empty, trim=_trim, array_of=self.array_of,
                       array_type=np.ndarray,
                       dtype=self.dtype, make_slots=self._slots, seal=_seal)

    # ---- one record: put / get ----

    def encode(self, obj):
        np = _numpy()
        if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype != self.dtype:
            raise TypeError(f"record of dtype {obj.dtype} given to a {self._kind} of {self.dtype}")
        data = np.asarray(obj, dtype=self.dtype).tobytes()
        if len(data) != self._itemsize:
            raise ValueError(f"{self._put}() takes one record ({self._itemsize} bytes of {self.dtype}), got "
                             f"{len(data) // self._itemsize} records; use {self._put}_array() for many")
        return data

    def decode(self, raw):
        return _numpy().frombuffer(raw, self.dtype)[0]

    # ---- arrays ----

    def array_of(self, items):
        """put_many's items as one array of records (numpy's casts, as np.array)."""
        return _numpy().array(list(items), dtype=self.dtype)

    def _slots(self, buffer, count):
        """Every slot of the ring as one array over the binding's buffer (made once
        per handle and direction; reservations and views are slices of it)."""
        return _numpy().ndarray((count,), self.dtype, buffer=buffer)

    def as_records(self, arr):
        """arr as a C-contiguous 1-D array of exactly our dtype (copied if not contiguous)."""
        np = _numpy()
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"expected a numpy array of {self.dtype}, got {type(arr).__name__}")
        dt = arr.dtype
        if dt is not self._dtype_ok:
            if dt != self.dtype:
                raise TypeError(f"array of dtype {dt} given to a {self._kind} of {self.dtype}")
            self._dtype_ok = dt
        if arr.ndim != 1:
            raise ValueError(f"expected a 1-D array of records, got {arr.ndim} dimensions")
        return np.ascontiguousarray(arr)
