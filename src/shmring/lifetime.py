"""Lifetime of handles in this process: repaired after fork, unlinked at exit.

Every open handle is repaired in a forked child (it joins the ring afresh, and
is no longer the segment's owner there); every handle this process created is
unlinked when the interpreter exits, also when a multiprocessing child ends
with os._exit.
"""
import atexit
import os
import sys
import weakref

import shmring._core  # noqa: F401 - its fork counter is registered before our fork hook

__all__ = ["track"]

# Every open handle of this process, to repair them after fork; and those this
# process created, to unlink them when the interpreter exits.
_open_handles = weakref.WeakSet()
_created_handles = weakref.WeakSet()


def track(handle, created):
    """Repair `handle` after fork from now on; unlink it at exit if this process `created` it."""
    _open_handles.add(handle)
    if created:
        _created_handles.add(handle)
        _unlink_when_multiprocessing_ends()


def _after_fork_in_child():
    for q in list(_open_handles):
        q._after_fork_in_child()


def _unlink_created_at_exit():
    # Unlink only: threads may still be blocked on the mapping during shutdown.
    for q in list(_created_handles):
        q._unlink()


_exit_hook_pid = None


def _unlink_when_multiprocessing_ends():
    """A multiprocessing child started by fork or forkserver ends with os._exit,
    which skips atexit, after running multiprocessing's own finalizers: unlink
    from there too. Once per process; a child imports multiprocessing before
    any of its code runs, so it is in sys.modules when its queues are made."""
    global _exit_hook_pid
    util = sys.modules.get("multiprocessing.util")
    if util is not None and _exit_hook_pid != os.getpid():
        _exit_hook_pid = os.getpid()
        util.Finalize(None, _unlink_created_at_exit, exitpriority=0)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_unlink_created_at_exit)
