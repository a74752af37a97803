"""shmring.Queue: a bounded multi-producer multi-consumer FIFO between processes.

A Queue is the binding's QueueHandle (the ring and its primitives, in Cython)
with a codec (codec.py: pickle by default, bytes, or numpy records) and the
policy here: defaults, segment names, checks of arguments, pickling of handles.
Fork and exit hooks are in lifetime.py.
"""
import secrets

from shmring import lifetime
from shmring._core import QueueHandle
from shmring.codec import PickleCodec, RecordsCodec, codec_named
from shmring.errors import InvalidArgument, SegmentError
from shmring.records import dtype_to_schema, schema_to_dtype

__all__ = ["Queue", "DEFAULT_MAXSIZE", "DEFAULT_MSG_SIZE", "NAME_PREFIX"]

#: Messages held at once when ``maxsize <= 0`` is given (a shared ring must be bounded).
DEFAULT_MAXSIZE = 8192
#: Largest encoded message in bytes by default (a pickled small tuple or dict fits).
DEFAULT_MSG_SIZE = 1024
#: Prefix of generated segment names (/dev/shm/shmring-...).
NAME_PREFIX = "shmring-"
# Bounds the C core sets (csrc/shmring.h): slot sizes and maxsize up to 2**30,
# up to 1024 participants.
MSG_SIZE_MAX = 1 << 30
MAXSIZE_MAX = 1 << 30
PARTICIPANTS_MAX = 1024

class Queue(QueueHandle):
    """A bounded FIFO of messages in shared memory, usable from many processes.

    ``Queue(maxsize=0, msg_size=1024, *, dtype=None, codec=None, name=None,
    mode=0o600, max_participants=256, recover_after=0.1)``

    - ``maxsize``: most messages held at once; exact. ``maxsize <= 0`` gives
      ``DEFAULT_MAXSIZE`` (8192), since shared memory is allocated up front.
    - ``msg_size``: largest encoded message in bytes (a pickle for ``put``, the
      raw bytes for ``put_bytes``). Memory used is about ``maxsize * msg_size``.
    - ``dtype``: make a records queue: every message is one record of this numpy
      dtype (structured or scalar, no object fields), ``msg_size`` is its itemsize,
      and ``put_array``/``get_array``/``reserve``/``view`` move many at once.
    - ``codec``: what ``put``/``get`` carry in a queue without dtype: ``"pickle"``
      (the default: any picklable object) or ``"bytes"`` (bytes-like objects as
      they are; for peers that must not run each other's code). ``put_bytes`` /
      ``get_bytes`` and their batch forms move bytes whatever the codec.
    - ``name``: segment name (1-30 characters of ``A-Z a-z 0-9 . _ -``, not ``.``
      or ``..``); random ``shmring-...`` by default. ``mode``: permission bits of
      the segment (0o600: yours alone; 0o660 shares it with your group, and
      whoever can write it can run code in processes that unpickle from it, and
      truncate it to kill every peer with SIGBUS).
    - ``max_participants``: size of the table of threads (of all processes) that
      use the queue at once, 1 to 1024. Entries of exited processes are reused.
    - ``recover_after``: seconds a blocked call of this handle waits before it
      looks for processes that died holding what it waits for (a slot claimed but
      never filled, messages taken but never released) and recovers them;
      above 0 and at most 86400.

    The creating process owns the segment: it is unlinked when the creator calls
    ``close()``, when the handle is garbage collected, or when the creator's
    interpreter exits. Other processes get a handle by pickling (passing it to
    ``multiprocessing.Process``, or through another queue) or with
    ``Queue.attach(name)``; they never unlink it.
    """

    # attached with allow_world_writable=True (pickled handles keep it)
    _trust_writable = False
    _codec = None

    def __init__(self, maxsize=0, msg_size=None, *, dtype=None, codec=None, name=None, mode=0o600,
                 max_participants=256, recover_after=0.1):
        maxsize = _integer("maxsize", maxsize)
        if maxsize <= 0:
            maxsize = DEFAULT_MAXSIZE
        _within("maxsize", maxsize, 1, MAXSIZE_MAX, "messages")
        _within("max_participants", _integer("max_participants", max_participants), 1, PARTICIPANTS_MAX)
        if not 0 <= _integer("mode", mode) <= 0o777:
            raise InvalidArgument(f"mode must be permission bits, 0o000 to 0o777, got {mode:#o}")
        schema = None
        if dtype is not None:
            if codec is not None:
                raise ValueError(f"a records queue (dtype=...) has no other codec, got codec={codec!r}")
            chosen = RecordsCodec(dtype)
            dtype = chosen.dtype
            if msg_size is not None and int(msg_size) != dtype.itemsize:
                raise ValueError(f"msg_size {msg_size} differs from the itemsize {dtype.itemsize} of {dtype}")
            msg_size, schema = dtype.itemsize, dtype_to_schema(dtype)
        else:
            chosen = PickleCodec() if codec is None else codec_named(codec)()
        msg_size = DEFAULT_MSG_SIZE if msg_size is None else _integer("msg_size", msg_size)
        _within("msg_size", msg_size, 1, MSG_SIZE_MAX, "bytes")
        if name is None:
            name = NAME_PREFIX + secrets.token_hex(8)
        try:
            self._open(name, True, maxsize, msg_size, mode, max_participants, recover_after, schema)
        except MemoryError as e:  # say how much was asked for
            raise type(e)(f"{e}: {_ring_size(maxsize, msg_size)}") from None
        self._use(chosen)
        lifetime.track(self, created=True)

    def _use(self, codec):
        """Install the codec on the open handle; one that fails closes it."""
        try:
            codec.install(self)
        except BaseException:
            self.close()  # unlinks what this process made
            raise
        self._codec = codec

    @property
    def dtype(self):
        """numpy dtype of a records queue, else None."""
        return getattr(self._codec, "dtype", None)

    @classmethod
    def attach(cls, name, *, recover_after=0.1, allow_world_writable=False, codec=None):
        """Open a handle on an existing queue by segment name.

        A segment that every user may write and another user owns is refused
        (``UntrustedSegment``): anyone could have put the pickles this process
        would load. ``allow_world_writable=True`` trusts it anyway. ``codec``
        as for ``Queue()``; a records queue's dtype is read from the segment.
        """
        chosen = None if codec is None else codec_named(codec)()
        self = cls.__new__(cls)
        self._open(name, False, recover_after=recover_after, trust_writable=bool(allow_world_writable))
        schema = self._schema_bytes
        if schema is not None:
            try:
                if chosen is not None:
                    # a SegmentError: also what a pickled handle whose name a records queue took sees
                    raise SegmentError(f"{name!r} is a records queue: it has no other codec, got codec={codec!r}")
                chosen = RecordsCodec(schema_to_dtype(schema, self.msg_size, name))
            except BaseException:
                self.close()  # unlinks what this process made
                raise
        self._use(chosen if chosen is not None else PickleCodec())
        self._trust_writable = bool(allow_world_writable)
        lifetime.track(self, created=False)
        return self

    # ---- records: arrays in and out, reservations and views are the binding's ----

    def peek_array(self, max_items=None, block=True, timeout=None):
        """view() by its old name: ``v = q.peek_array(n); v.array; v.release()``."""
        return self.view(max_items, block, timeout)

    def __reduce__(self):
        if self.closed:
            raise ValueError(f"cannot pickle closed queue {self.name!r}")
        return (_unpickle_queue, (type(self), self.name, self.maxsize, self.msg_size, self.recover_after,
                                  self.dtype, self._trust_writable, self._codec.name))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        cls = type(self).__qualname__
        if self.closed:
            return f"<shmring.{cls} name={self.name!r} closed>"
        what = f"dtype={self.dtype}" if self.dtype is not None else f"msg_size={self.msg_size}"
        return f"<shmring.{cls} name={self.name!r} maxsize={self.maxsize} {what} qsize~{self.qsize()}>"

    # multiprocessing.Queue compatibility: there is no feeder thread to join.
    def join_thread(self):
        """No-op (multiprocessing.Queue compatibility: shmring has no feeder thread)."""

    def cancel_join_thread(self):
        """No-op (multiprocessing.Queue compatibility: shmring has no feeder thread)."""


def _integer(what, value):
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    return value.__index__()


def _within(what, value, low, high, unit=""):
    if not low <= value <= high:
        raise InvalidArgument(f"{what} must be {low} to {high}{' ' + unit if unit else ''}, got {value}")


def _ring_size(maxsize, msg_size):
    """What a ring of maxsize messages of msg_size bytes takes, at least (its slots)."""
    slots = 1 << (maxsize - 1).bit_length()  # the capacity: a power of two
    size, unit = float(slots * msg_size), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if size < 1024 or unit == "EiB":
            break
        size /= 1024
    rounded = f" (rounded up to {slots} slots)" if slots != maxsize else ""
    return (f"maxsize {maxsize}{rounded} of msg_size {msg_size} bytes needs at least "
            f"{slots * msg_size} bytes ({size:.4g} {unit}) of shared memory")


def _unpickle_queue(cls, name, maxsize, msg_size, recover_after, dtype=None, trust_writable=False, codec="pickle"):
    # Attach at once, so that a missing or corrupt segment raises from pickle.loads.
    q = cls.attach(name, recover_after=recover_after, allow_world_writable=trust_writable,
                   codec=None if dtype is not None else codec)
    if (q.maxsize, q.msg_size, q.dtype) != (maxsize, msg_size, dtype):
        found = (q.maxsize, q.msg_size, q.dtype)
        q.close()
        raise SegmentError(
            f"segment {name!r} has maxsize, msg_size, dtype = {found}, the pickled handle "
            f"expected {(maxsize, msg_size, dtype)}: the name was reused by another queue"
        )
    return q
