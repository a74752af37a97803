"""Exceptions raised by shmring.

Every one derives from ``ShmringError``, and also from what users of ``queue`` /
``multiprocessing`` already catch: ``Full`` is a ``queue.Full``, ``Empty`` a
``queue.Empty``, bad input and bad segments are ``ValueError``, a missing
segment is a ``FileNotFoundError``, a refused one a ``PermissionError``.
"""
import queue as _stdlib_queue

__all__ = [
    "ShmringError",
    "Full",
    "Empty",
    "MessageTooLarge",
    "QueueClosed",
    "SegmentError",
    "SegmentNotFound",
    "TooManyParticipants",
    "UntrustedSegment",
    "InvalidArgument",
    "SegmentExists",
    "PermissionDenied",
    "OutOfMemory",
    "SystemCallError",
    "ShutDown",
    "Lagged",
    "PoolBroken",
    "PoolStopped",
]


class ShmringError(Exception):
    """Base of every exception shmring defines (catch it to catch them all)."""


class Full(ShmringError, _stdlib_queue.Full):
    """The queue stayed full for the whole timeout (or at once, without blocking).

    ``count`` is how many items of a ``put_many`` call were put before it gave
    up (they stay in the queue, in order); 0 for single puts.
    """

    def __init__(self, message="queue is full", count=0):
        super().__init__(message)
        self.count = count


class Empty(ShmringError, _stdlib_queue.Empty):
    """The queue stayed empty for the whole timeout (or at once, without blocking)."""


class MessageTooLarge(ShmringError, ValueError):
    """An encoded message does not fit in a slot. Nothing was put (or published).

    ``kind`` is the ring's ("queue", "topic"); a topic's message also names its
    ``max_topic_len``: the key is kept beside the payload and does not count."""

    def __init__(self, size, msg_size, kind="queue", max_topic_len=None):
        key = "" if max_topic_len is None else (
            f"; its key does not count, keys have max_topic_len, {max_topic_len} bytes, of their own")
        super().__init__(
            f"encoded message is {size} bytes, larger than this {kind}'s msg_size of "
            f"{msg_size} bytes (create the {kind} with a larger msg_size{key})"
        )
        self.size = size
        self.msg_size = msg_size
        self.kind = kind
        self.max_topic_len = max_topic_len

    def __reduce__(self):  # multiprocessing hands exceptions back pickled
        return type(self), (self.size, self.msg_size, self.kind, self.max_topic_len)


class QueueClosed(ShmringError, ValueError):
    """The queue handle was closed in this process."""


class SegmentError(ShmringError, ValueError):
    """A shared-memory segment is corrupt, truncated, foreign or incompatible."""


class SegmentNotFound(ShmringError, FileNotFoundError):
    """No shared-memory segment of that name exists (or it was already unlinked)."""


class TooManyParticipants(ShmringError, RuntimeError):
    """The ring's participant table (one entry per thread per process) is full."""


class InvalidArgument(ShmringError, ValueError):
    """The C core refused an argument (a segment name, a size, a mode)."""


class SegmentExists(ShmringError, FileExistsError):
    """A segment (or the ring's lock file) of that name exists already."""


class PermissionDenied(ShmringError, PermissionError):
    """The segment exists but this process may not open it as asked."""


class OutOfMemory(ShmringError, MemoryError):
    """Not enough memory, or /dev/shm space, for the ring."""


class SystemCallError(ShmringError, OSError):
    """A system call failed; ``errno`` says why. Raised as ``system_call_error``
    makes it, so that it is also the OSError subclass of its errno
    (InterruptedError for EINTR, BlockingIOError for EAGAIN, ...)."""

    def __reduce__(self):  # the errno's class is made at run time: made again where unpickled
        return system_call_error, self.args[:2]


_SYSTEM_CALL_ERRORS = {OSError: SystemCallError}  # OSError's subclass for an errno -> ours


def system_call_error(err, text):
    """SystemCallError(err, text), of the class that is also what OSError(err,
    text) would be: code that catches InterruptedError still catches it."""
    base = type(OSError(err, text))
    cls = _SYSTEM_CALL_ERRORS.get(base)
    if cls is None:
        cls = _SYSTEM_CALL_ERRORS[base] = type(f"SystemCallError_{base.__name__}", (SystemCallError, base),
                                              {"__module__": __name__})
    return cls(err, text)


class UntrustedSegment(PermissionDenied):
    """Attach refused a segment that every user may write and another user owns:
    whoever can write a segment decides what its readers unpickle, that is, what
    code they run. ``Queue.attach(name, allow_world_writable=True)`` trusts it."""


class ShutDown(ShmringError, *([_stdlib_queue.ShutDown] if hasattr(_stdlib_queue, "ShutDown") else [])):
    """The topic or queue was shut down: ``publish`` / ``put`` raise it from
    then on, a subscriber's ``recv`` once it has received everything published
    before, a queue's ``get`` once the queue is drained (at once after
    ``shutdown(immediate=True)``). Also a ``queue.ShutDown`` where Python has one
    (3.13).

    ``count`` is how many items of a ``put_many`` / ``put_many_bytes`` /
    ``put_array`` (a topic's ``publish_many`` ...) call went in before the
    shutdown refused the rest (they stay in the queue, in order, as ``Full``'s);
    0 for single calls and gets.
    """

    def __init__(self, message="shut down", count=0):
        super().__init__(message)
        self.count = count


class Lagged(ShmringError):
    """A subscriber with ``on_lag="raise"`` missed messages (lapped under policy
    overwrite, or detached under block): ``count`` says how many. Raised once;
    the next call continues with the message after the gap."""

    def __init__(self, message="subscriber lagged", count=0):
        super().__init__(message)
        self.count = count

    def __reduce__(self):
        return type(self), (self.args[0] if self.args else "subscriber lagged", self.count)


class PoolBroken(ShmringError, RuntimeError):
    """A ``WorkerPool``'s workers died more often than its ``restart_limit``
    allows (more than N restarts within S seconds): the pool stopped restarting
    them, and ``stop()`` / ``join()`` raise this. ``deaths`` lists the deaths
    within the window as ``(pid, exitcode)`` pairs (a negative exit code is the
    signal that killed it); the message names them."""

    def __init__(self, message="worker pool broken", deaths=()):
        super().__init__(message)
        self.deaths = list(deaths)

    @classmethod
    def of(cls, deaths, limit, window):
        """The exception for these deaths, more than `limit` within `window` seconds."""
        named = ", ".join(f"pid {pid} exit code {code}" + (f" (signal {-code})" if code is not None and code < 0
                                                           else "") for pid, code in deaths)
        return cls(f"worker pool broken: {len(deaths)} worker deaths within {window:g} s, more than the "
                   f"restart_limit of {limit}: {named}", deaths)

    def __reduce__(self):
        return type(self), (self.args[0] if self.args else "worker pool broken", self.deaths)


class PoolStopped(BaseException):
    """Raised in the main thread by the first SIGTERM a ``WorkerPool`` receives
    inside its ``with`` block (it handles SIGTERM while it runs, when started
    from the main thread), after it asked its workers for a warm stop: it takes
    the main thread out of whatever it was blocked in (``source.join()``), as
    Ctrl-C's KeyboardInterrupt does. A BaseException, not an Exception, for
    the same reason. ``with pool:`` catches the one its pool raised: the block
    ends, the pool stops warm, and the program goes on after the block."""
