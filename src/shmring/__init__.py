"""shmring: fixed-size messages between processes through a lock-free ring in shared memory.

    >>> import shmring
    >>> q = shmring.Queue(maxsize=1000)      # pass q to multiprocessing.Process
    >>> q.put({"order": 1}); q.get()
    {'order': 1}
"""
from shmring import errors
from shmring._core import Expired
from shmring.errors import *  # noqa: F403 (their names are errors.__all__)
from shmring.pubsub import Publisher, Subscriber, Topic
from shmring.queue import DEFAULT_MAXSIZE, DEFAULT_MSG_SIZE, Queue
from shmring.workers import WorkerPool, imap_unordered

__version__ = "0.1.0"

__all__ = ["Queue", "Expired", "WorkerPool", "imap_unordered", "Topic", "Publisher", "Subscriber", "DEFAULT_MAXSIZE", "DEFAULT_MSG_SIZE", "__version__", *errors.__all__]
