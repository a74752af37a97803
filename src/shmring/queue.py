"""shmring.Queue: a bounded multi-producer multi-consumer FIFO between processes.

A Queue is the binding's QueueHandle (the ring and its primitives, in Cython)
with a codec (codec.py: pickle by default, bytes, or numpy records) and the
policy here: defaults, segment names, checks of arguments, pickling of handles.
Fork and exit hooks are in lifetime.py.
"""
from shmring._core import QueueHandle, default_ttl_ns
from shmring.codec import PickleCodec, codec_named
from shmring.errors import SegmentError
from shmring.handles import (  # noqa: F401 (NAME_PREFIX, MSG_SIZE_MAX, PARTICIPANTS_MAX: this module's names too)
    MAXSIZE_MAX,
    MSG_SIZE_MAX,
    NAME_PREFIX,
    PARTICIPANTS_MAX,
    HandlePolicy,
    integer as _integer,
    within as _within,
)

__all__ = ["Queue", "DEFAULT_MAXSIZE", "DEFAULT_MSG_SIZE", "NAME_PREFIX"]

#: Messages held at once when ``maxsize <= 0`` is given (a shared ring must be bounded).
DEFAULT_MAXSIZE = 8192
#: Largest encoded message in bytes by default (a pickled small tuple or dict fits).
DEFAULT_MSG_SIZE = 1024

class Queue(HandlePolicy, QueueHandle):
    """A bounded FIFO of messages in shared memory, usable from many processes.

    ``Queue(maxsize=0, msg_size=1024, *, dtype=None, codec=None, name=None,
    mode=0o600, max_participants=256, recover_after=0.1, default_ttl=None)``

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
    - ``default_ttl``: seconds a message put through this handle lives when the
      put gives no ``ttl=``/``deadline=`` (None: for ever). A setting of the
      handle, carried when it is pickled; ``attach(name, default_ttl=...)``
      sets it on an attached one. Expired messages are dropped at dequeue and
      counted in ``stats()["expired"]`` (see ``put``).

    The creating process owns the segment: it is unlinked when the creator calls
    ``close()``, when the handle is garbage collected, or when the creator's
    interpreter exits. Other processes get a handle by pickling (passing it to
    ``multiprocessing.Process``, or through another queue) or with
    ``Queue.attach(name)``; they never unlink it.
    """

    def __init__(self, maxsize=0, msg_size=None, *, dtype=None, codec=None, name=None, mode=0o600,
                 max_participants=256, recover_after=0.1, default_ttl=None):
        maxsize = _integer("maxsize", maxsize)
        if maxsize <= 0:
            maxsize = DEFAULT_MAXSIZE
        _within("maxsize", maxsize, 1, MAXSIZE_MAX, "messages")
        if dtype is not None and codec is not None:
            raise ValueError(f"a records queue (dtype=...) has no other codec, got codec={codec!r}")
        chosen = PickleCodec() if codec is None else codec_named(codec)()
        chosen, msg_size, schema = self._checked(msg_size, dtype, chosen, max_participants, mode,
                                                 DEFAULT_MSG_SIZE)
        ttl_ns = default_ttl_ns(default_ttl)
        self._create(name, maxsize, msg_size, chosen, mode, max_participants, recover_after, schema)
        self._set_default_ttl(ttl_ns)

    @classmethod
    def attach(cls, name, *, recover_after=0.1, allow_world_writable=False, codec=None, default_ttl=None):
        """Open a handle on an existing queue by segment name.

        A segment that every user may write and another user owns is refused
        (``UntrustedSegment``): anyone could have put the pickles this process
        would load. ``allow_world_writable=True`` trusts it anyway. ``codec``
        as for ``Queue()``; a records queue's dtype is read from the segment.
        ``default_ttl`` as for ``Queue()``: this handle's.
        """
        chosen = None if codec is None else codec_named(codec)()
        ttl_ns = default_ttl_ns(default_ttl)
        self = cls.__new__(cls)
        self._set_default_ttl(ttl_ns)
        self._open(name, False, recover_after=recover_after, trust_writable=bool(allow_world_writable))
        return self._attached(name, chosen, codec, allow_world_writable)

    def shutdown(self, immediate=False):
        """Shut the queue down, for every process attached and every later one
        (as Python 3.13's ``queue.Queue.shutdown``, across processes).

        From now on every put (``put``, ``put_nowait``, ``put_bytes``,
        ``put_many``, ``put_many_bytes``, ``put_array``, ``reserve``) raises
        ``shmring.ShutDown``, in every process, and producers blocked on a full
        queue wake with it. A put that had already claimed its slots (a
        reservation open, say) still commits: nothing claimed is lost.

        - ``immediate=False``: getters drain what is there (and what those
          claims commit); once everything put was taken, every get, blocked or
          new, raises ``ShutDown``.
        - ``immediate=True``: every get raises ``ShutDown`` at once, even with
          messages left. Those are discarded (as ``queue.Queue`` drains them):
          taken from the ring by this call, counted in ``stats()["discarded"]``
          and as done for ``join()``, so ``join()`` returns once every message
          handed out before has had its ``task_done()``. A put committed after
          this call by a claim made before it is discarded by the next
          ``join()``.

        Idempotent; ``immediate=True`` after a plain shutdown discards then.
        ``stats()["shut_down"]`` (and ``shmring stat``) shows it. A shutdown
        killed midway is completed by the next call that notices; a process
        killed while discarding is recovered as a dead consumer (its messages
        count as lost, and done).
        """
        self._shutdown(bool(immediate))

    # ---- records: arrays in and out, reservations and views are the binding's ----

    def peek_array(self, max_items=None, block=True, timeout=None):
        """view() by its old name: ``v = q.peek_array(n); v.array; v.release()``."""
        return self.view(max_items, block, timeout)

    def __reduce__(self):
        self._closed_for_pickling()
        return (_unpickle_queue, (type(self), self.name, self.maxsize, self.msg_size, self.recover_after,
                                  self.dtype, self._trust_writable, self._codec.name, self.default_ttl))

    def _repr_size(self):
        return f"maxsize={self.maxsize}"

    def _repr_state(self):
        return f"qsize~{self.qsize()}"

    # multiprocessing.Queue compatibility: there is no feeder thread to join.
    def join_thread(self):
        """No-op (multiprocessing.Queue compatibility: shmring has no feeder thread)."""

    def cancel_join_thread(self):
        """No-op (multiprocessing.Queue compatibility: shmring has no feeder thread)."""


def _unpickle_queue(cls, name, maxsize, msg_size, recover_after, dtype=None, trust_writable=False, codec="pickle",
                    default_ttl=None):
    # Attach at once, so that a missing or corrupt segment raises from pickle.loads.
    q = cls.attach(name, recover_after=recover_after, allow_world_writable=trust_writable,
                   codec=None if dtype is not None else codec, default_ttl=default_ttl)
    if (q.maxsize, q.msg_size, q.dtype) != (maxsize, msg_size, dtype):
        found = (q.maxsize, q.msg_size, q.dtype)
        q.close()
        raise SegmentError(
            f"segment {name!r} has maxsize, msg_size, dtype = {found}, the pickled handle "
            f"expected {(maxsize, msg_size, dtype)}: the name was reused by another queue"
        )
    return q
