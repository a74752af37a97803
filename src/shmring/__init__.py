"""shmring: fixed-size messages between processes through a lock-free ring in shared memory.

    >>> import shmring
    >>> q = shmring.Queue(maxsize=1000)      # pass q to multiprocessing.Process
    >>> q.put({"order": 1}); q.get()
    {'order': 1}
"""
from shmring.errors import (
    Empty,
    Full,
    MessageTooLarge,
    QueueClosed,
    SegmentError,
    SegmentNotFound,
    TooManyParticipants,
    UntrustedSegment,
)
from shmring.queue import DEFAULT_MAXSIZE, DEFAULT_MSG_SIZE, Queue

__version__ = "0.1.0"

__all__ = [
    "Queue",
    "Empty",
    "Full",
    "MessageTooLarge",
    "QueueClosed",
    "SegmentError",
    "SegmentNotFound",
    "TooManyParticipants",
    "UntrustedSegment",
    "DEFAULT_MAXSIZE",
    "DEFAULT_MSG_SIZE",
    "__version__",
]
