"""shmring.WorkerPool and shmring.imap_unordered: processes that drain a Queue
into a handler, and never hang because one of them died (docs/design.md, "The
worker pool").

- lease.py: the region the pool shares with its workers, a lease per slot
- worker.py: the worker process (take into the lease, handle, finish)
- pool.py: WorkerPool, the supervisor in the process that makes the pool
- imap.py: imap_unordered on a WorkerPool
"""
from shmring.workers.imap import RemoteTraceback, imap_unordered
from shmring.workers.pool import WorkerPool

__all__ = ["WorkerPool", "imap_unordered", "RemoteTraceback"]
