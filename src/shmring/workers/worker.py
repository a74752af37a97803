"""The worker process of a WorkerPool: takes messages into its slot's lease, runs
the handler, sends results and dead letters, finishes the lease."""
import os
import pickle
import signal
import threading
import time
import traceback

from shmring._core import LEASE_CORRUPT, LEASE_HEADER
from shmring.errors import Empty, Full, ShutDown
from shmring.workers.lease import (
    _ATTEMPTS, _BEGIN, _BUSY, _CONTROL, _COUNTERS, _COUNT_AND_STOP, _DRAINED, _END, _ENTRY, _F64,
    _Lease, _PAYLOAD, _RECYCLED, _STATE, _STOPPED, _TAKE_WAIT, _U32, _U64, _monotonic, _now_ns,
)


class _Config:
    """What a worker needs (pickled to it under spawn and forkserver)."""

    def __init__(self, handler, source, results, dead_letter, batch, max_attempts, max_tasks_per_child,
                 initializer, initargs, lease_size, supervisor):
        self.handler, self.source, self.results, self.dead_letter = handler, source, results, dead_letter
        self.batch, self.max_attempts, self.max_tasks = batch, max_attempts, max_tasks_per_child
        self.initializer, self.initargs, self.lease_size = initializer, initargs, lease_size
        self.supervisor = supervisor  # the pool's participant token: it adopts our dead takes' claims


def _decoder(source):
    """What turns a message's bytes into the object get returns: the pickle
    codec's own loads (one call less a message), else the handle's."""
    codec = getattr(source, "_codec", None)
    return pickle.loads if codec is not None and codec.name == "pickle" else source._decode_message


def _dead_letter_entry(message, reason, attempts, error):
    return {"message": message, "reason": reason, "attempts": attempts, "error": error}


def _worker_main(config, region, slot, parent):
    # A terminal's Ctrl-C reaches the whole process group: the pool decides what
    # its workers do (a fork child also inherits the parent's Python handlers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _watch_parent(parent)
    config.source._supervise(config.supervisor)  # before the first take: recovery leaves its claims to the pool
    _Worker(config, region, slot).run()


_PARENT_WATCH = 0.2  # seconds between a worker's looks at its parent


def _watch_parent(parent):
    """A worker whose parent died (SIGKILL: no stop, no terminate) exits within
    _PARENT_WATCH seconds instead of draining the source forever: a daemon
    thread compares os.getppid() with its parent: `parent`, the pool's pid,
    given by the pool, so that a parent killed before the worker got here is
    seen too (its getppid() is then already another); None under forkserver,
    whose workers are the server's children (it ends with the pool): then the
    parent it started with (a server gone before that is not seen). Nothing on
    the message path; not PR_SET_PDEATHSIG, which fires when the thread that
    started the worker ends (the supervisor restarts workers; start() may run
    in a thread that returns)."""
    if parent is None:
        parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(_PARENT_WATCH)
        os._exit(1)

    threading.Thread(target=watch, name="shmring-worker-parent-watch", daemon=True).start()


def _finish_leased(source, buf):
    """source._finish_leased(buf), its refused task_done (ValueError: join()'s
    count already reached every message put, e.g. by the queue's recovery of a
    taker killed around its release, or an immediate shutdown's discards)
    ignored: the lease is emptied all the same, and there is nothing to add."""
    try:
        source._finish_leased(buf)
    except ValueError:
        pass


class _Worker:
    def __init__(self, config, region, slot):
        self.c = config
        self.control = memoryview(region).cast("B")[:_CONTROL]
        self.lease = _Lease(region, slot, config.lease_size, config.source._lease_stride, config.batch)

    def run(self):
        c, lease, source = self.c, self.lease, self.c.source
        buf, control, take, batch = lease.buf, self.control, source._take_leased, c.batch
        if c.initializer is not None:
            c.initializer(*c.initargs)
        if batch == 1 and c.max_tasks is None:
            lease.set(_STATE, self.run_ones())
            return
        taken, state = 0, _STOPPED
        while True:
            n = _U32.unpack_from(buf, 0)[0]
            if n == 0:  # else a predecessor in this slot died holding them: redeliveries
                if c.max_tasks is not None and taken >= c.max_tasks:
                    state = _RECYCLED
                    break
                if _U32.unpack_from(control, 0)[0]:
                    break
                try:
                    n = take(buf, batch, True, _TAKE_WAIT)
                except Empty:
                    continue
                except ShutDown:
                    state = _DRAINED
                    break
                lease.set(_ATTEMPTS, 0)
            self.handle(n)
            taken += n
        lease.set(_STATE, state)

    def run_ones(self):
        """run() for batch=1 without max_tasks_per_child: the same steps in fewer
        calls; anything unusual goes on in handle(), as there. Returns how the
        worker ended (the lease's state)."""
        c, source = self.c, self.c.source
        buf, take, finish = self.lease.buf, source._take_leased, source._finish_leased
        decode, handler, results = _decoder(source), c.handler, c.results
        u32, entry, begin, end, f64 = _U32, _ENTRY, _BEGIN, _END, _F64
        processed = _U64.unpack_from(buf, _COUNTERS)[0]  # the slot's, kept here and stored with each finish
        count_and_stop = _COUNT_AND_STOP
        while True:
            held, stop = count_and_stop.unpack_from(buf, 0)
            if held:  # a predecessor in this slot died holding it: a redelivery
                processed = self.handled(1)
                continue
            if stop:
                return _STOPPED
            try:
                take(buf, 1, True, _TAKE_WAIT)
            except Empty:
                continue
            except ShutDown:
                return _DRAINED
            length, _, deadline = entry.unpack_from(buf, LEASE_HEADER)
            if length == LEASE_CORRUPT or (deadline and _now_ns() >= deadline):
                u32.pack_into(buf, _ATTEMPTS, 0)
                processed = self.handled(1)
                continue
            # attempts and busy_since, before decoding and the call: a kill in either counts (state 0: running)
            begin.pack_into(buf, _ATTEMPTS, 1, _monotonic())
            try:  # decoded from the lease itself: get's objects never refer to it, nor do these
                item = decode(buf[_PAYLOAD:_PAYLOAD + length])
            except Exception:  # handle() decodes it again, and dead-letters it
                f64.pack_into(buf, _BUSY, 0.0)
                processed = self.handled(1)
                continue
            try:
                result = handler(item)
            except Exception:
                f64.pack_into(buf, _BUSY, 0.0)
                processed = self.handled(1, traceback.format_exc())
                continue
            # idle (busy_since covers the handler only) and the count, before the finish that wakes join()
            processed += 1
            end.pack_into(buf, _BUSY, 0.0, processed)
            if results is not None:
                try:
                    results.put(result, False)
                except Exception:  # full (wait for room while the pool runs), or it cannot go
                    error = self.put_result(result)
                    if error is not None:
                        processed -= 1
                        _U64.pack_into(buf, _COUNTERS, processed)
                        processed = self.handled(1, error, sent=False)
                        continue
            try:
                finish(buf)
            except ValueError:  # see _finish_leased
                pass

    def handled(self, *args, **kwargs):
        """handle(), then the slot's processed count (run_ones keeps it)."""
        self.handle(*args, **kwargs)
        return _U64.unpack_from(self.lease.buf, _COUNTERS)[0]

    def stopping(self):
        return _U32.unpack_from(self.control, 0)[0] != 0

    def put_waiting(self, queue, obj):
        """queue.put(obj), waiting for room in slices of _TAKE_WAIT while the pool
        runs: Full once the pool stops (so stop() ends the wait)."""
        while True:
            try:
                return queue.put(obj, timeout=_TAKE_WAIT)
            except Full:
                if self.stopping():
                    raise

    def put_result(self, result):
        """A handler's result to results (put_waiting): None, or the traceback
        text of why it could not go (too large, unpicklable, shut down, full at
        the pool's stop)."""
        try:
            self.put_waiting(self.c.results, result)
        except Exception:
            return traceback.format_exc()
        return None

    def handle(self, n, error=None, sent=True):
        """Handle the n messages of the lease, then finish them (one task_done
        each). error: the traceback of the last attempt, if it raised (decoding
        or the handler; counted in the lease's attempts, so was the failure
        unless sent=False); sent=False: the handler returned, and its result
        could not be put (error says why): dead-lettered."""
        c, lease, source = self.c, self.lease, self.c.source
        attempts = lease.get(_ATTEMPTS)
        if error is not None and sent:
            lease.add("failed", 1)
        dead, items = [], []
        lease.set(_ATTEMPTS, attempts + 1)  # decoding: a kill in it counts as an attempt (a poison pickle)
        for raw, deadline in lease.entries(n):
            if raw is None:
                dead.append(_dead_letter_entry(None, "error", attempts, "the message's slot was corrupt "
                                                                         "(an impossible length)"))
                continue
            try:
                items.append((c.source._decode_message(raw), deadline))
            except Exception:
                dead.append(_dead_letter_entry(raw, "error", attempts, traceback.format_exc()))
        lease.set(_ATTEMPTS, attempts)
        if not sent:
            dead.extend(_dead_letter_entry(it[0], "error", attempts, error) for it in items)
            items = []
        expired = done = 0
        while items:
            now = _now_ns()  # the deadlines again, just before the handler is called
            live = [it for it in items if not it[1] or it[1] > now]
            expired += len(items) - len(live)
            items = live
            if not items:
                break
            if attempts >= c.max_attempts:
                dead.extend(_dead_letter_entry(it[0], "error", attempts, error) for it in items)
                break
            if attempts:
                lease.add("retried", len(items))
            attempts += 1
            _BEGIN.pack_into(lease.buf, _ATTEMPTS, attempts, time.monotonic())  # before the call: a kill in it counts
            try:
                result = c.handler([it[0] for it in items] if c.batch > 1 else items[0][0])
            except Exception:
                lease.set(_BUSY, 0.0, _F64)
                lease.add("failed", 1)
                error = traceback.format_exc()
                continue
            lease.set(_BUSY, 0.0, _F64)  # busy_since covers the handler only
            if c.results is not None:
                error = self.put_result(result)
                if error is not None:
                    dead.extend(_dead_letter_entry(it[0], "error", attempts, error) for it in items)
                    break
            done = len(items)
            break
        delivered = sum(_send_dead_letter(c.dead_letter, entry, self.put_waiting) for entry in dead)
        if expired:
            source._count_expired(expired)
        # the counts before the finish that wakes join(): stats() right after it has them
        lease.add("processed", done)
        lease.add("dead_lettered", delivered)
        lease.add("dead_letter_dropped", len(dead) - delivered)
        lease.add("expired", expired)
        _finish_leased(source, lease.buf)


def _put_now(queue, obj):
    queue.put(obj, block=False)


def _send_dead_letter(queue, entry, put=_put_now):
    """Put a dead letter with put(queue, letter) (a worker's waits while the pool
    runs; the supervisor's, the default, never waits): True where it went (or
    there is no dead_letter queue: counted and dropped), False where the queue
    refused it (Full, or it would take neither the message nor its repr)."""
    if queue is None:
        return True
    for letter in (entry, dict(entry, message=repr(entry["message"])[:200])):  # the message may not pickle
        try:
            put(queue, letter)
            return True
        except Full:
            return False
        except Exception:
            continue
    return False
