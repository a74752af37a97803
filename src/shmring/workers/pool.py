"""shmring.WorkerPool, the supervisor in the process that makes the pool.

into a handler, and never hang because one of them died.

Crash-safe ownership (docs/design.md, "The worker pool"): every worker slot has
a lease in shared memory, made by the pool before its workers start. A worker
takes messages with ``QueueHandle._take_leased``, which copies them into the
lease and stores the lease's count before it releases its claim on the ring:
a message is always in the ring, claimed (a taker killed then is a dead
consumer whose claim the pool adopts into its lease, ``_adopt_leased``: the
worker's takes name the pool as their supervisor, ``_supervise``, so the
queue's own recovery leaves them to it), or in a lease.
When the handler is done, ``_finish_leased`` empties the lease and marks the
messages done (``task_done``). A worker that dies leaves its lease to the pool:
its replacement in the slot handles the messages again (at_least_once, until
``max_attempts`` handler calls in all), or the pool dead-letters them, or
(at_most_once) counts them lost; each one gets one ``task_done`` (docs/design.md,
known limits: the windows of a worker killed inside its finish).
"""
import collections
import multiprocessing as mp
import os
import signal
import threading
import time
from multiprocessing.connection import wait as _wait_for

from shmring._core import LEASE_FINISHING, LEASE_HEADER, LEASE_TAKER, QueueHandle
from shmring.errors import Full, PoolBroken, PoolStopped, QueueClosed, ShutDown
from shmring.workers.lease import (
    _ATTEMPTS, _BUSY, _CONTROL, _COUNTER_NAMES, _DELIVERIES, _DRAINED, _F64, _Lease, _PUT_BACK_WAIT,
    _RECYCLED, _RUNNING, _SLOT_STOP, _STATE, _STOPPED, _U32,
)
from shmring.workers.worker import _Config, _dead_letter_entry, _send_dead_letter, _worker_main


class WorkerPool:
    """Processes that take messages from ``source`` (a ``shmring.Queue``) and
    call ``handler`` on them.

    ``WorkerPool(handler, source, *, workers=None, results=None, batch=1,
    delivery="at_least_once", max_attempts=3, dead_letter=None,
    task_timeout=None, initializer=None, initargs=(), max_tasks_per_child=None,
    restart_limit=(10, 60.0), start_method=None)``

    - ``handler(item)`` (``handler(list)`` of 1..batch items when ``batch > 1``)
      runs in ``workers`` processes (default: the CPUs usable); its return value
      is put to ``results`` (a Queue) when given.
    - A handler exception is retried, up to ``max_attempts`` handler calls in
      all, then the message goes to ``dead_letter`` (a Queue receiving
      ``{"message", "reason": "error" | "worker_lost" | "timeout", "attempts",
      "error": traceback text or None}``), or is counted and dropped without one.
    - ``delivery="at_least_once"``: a worker that dies (SIGKILL, segfault, OOM)
      leaves its messages in its lease; its replacement handles them again, so a
      message may be handled twice (at most one duplicate per kill). After
      ``max_attempts`` calls they are dead-lettered (reason ``worker_lost``, or
      ``timeout`` when the pool killed it). ``"at_most_once"``: a dead worker's
      messages are lost, counted in ``stats()["lost"]``.
    - ``task_timeout``: seconds a handler call may last; then its worker is
      killed (SIGKILL) and restarted, and the message is retried as above.
    - More than N restarts within S seconds (``restart_limit=(N, S)``): the pool
      stops, and ``stop()`` / ``join()`` raise ``shmring.PoolBroken``.
    - ``max_tasks_per_child``: a worker exits after that many messages and is
      replaced (not a restart). ``initializer(*initargs)`` runs in each worker
      first. ``start_method``: multiprocessing's (None: its default).
    - Expired messages (``put(..., ttl=)``) never reach the handler: checked
      just before each call, counted once in ``stats()["expired"]`` and the
      queue's.
    - Every message taken gets its ``source.task_done()`` (once; a worker
      killed inside its take: its claim is adopted, README), so ``source.join()``
      waits for the pool's work; ``source.shutdown()`` ends the workers once the
      queue is drained (``join()`` then returns).
    - ``results`` / ``dead_letter`` full: workers wait for room while the pool
      runs (not under task_timeout) and give up at stop (a result: its message
      dead-lettered; a dead letter: counted in dead_letter_dropped).

    ``with pool:`` starts it and stops it (warm) at the end. Started from the
    main thread, it handles signals until it ends: the first SIGTERM is a warm
    stop, which inside ``with pool:`` raises ``shmring.PoolStopped`` in the main
    thread (the block ends; ``__exit__`` catches its own, stops warm and the
    program goes on after the block; a ``pool.join()`` waiting in it takes it as
    the stop it waits for); Ctrl-C is cold; a second
    SIGTERM or Ctrl-C while stopping is cold, then the signal is raised again
    for the previous handler.
    """

    def __init__(self, handler, source, *, workers=None, results=None, batch=1, delivery="at_least_once",
                 max_attempts=3, dead_letter=None, task_timeout=None, initializer=None, initargs=(),
                 max_tasks_per_child=None, restart_limit=(10, 60.0), start_method=None, _signals=True):
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        for what, q in (("source", source), ("results", results), ("dead_letter", dead_letter)):
            if not isinstance(q, QueueHandle) and (q is not None or what == "source"):
                raise TypeError(f"{what} must be a shmring.Queue{'' if what == 'source' else ' or None'}, got {q!r}")
        if delivery not in _DELIVERIES:
            raise ValueError(f"delivery must be one of {_DELIVERIES}, got {delivery!r}")
        if workers is None:
            workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self._workers = _count("workers", workers)
        self._batch = _count("batch", batch)
        self._max_attempts = _count("max_attempts", max_attempts)
        self._max_tasks = None if max_tasks_per_child is None else _count("max_tasks_per_child", max_tasks_per_child)
        if task_timeout is not None and not (isinstance(task_timeout, (int, float)) and task_timeout > 0):
            raise ValueError(f"task_timeout must be None or a number of seconds above 0, got {task_timeout!r}")
        try:
            limit, window = restart_limit
        except (TypeError, ValueError):
            raise TypeError(f"restart_limit must be (N, S): N restarts within S seconds, got {restart_limit!r}") from None
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0 or not window > 0:
            raise ValueError(f"restart_limit must be (N, S) with N >= 0 and S > 0 seconds, got {restart_limit!r}")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, got {initializer!r}")
        self._handler, self._source, self._results, self._dead_letter = handler, source, results, dead_letter
        self._delivery, self._task_timeout = delivery, task_timeout
        self._initializer, self._initargs = initializer, tuple(initargs)
        self._restart_limit = (limit, float(window))
        self._ctx = mp.get_context(start_method)
        self._signals = _signals
        self._lock = threading.RLock()
        self._started = self._finished = False
        self._supervisor = None
        self._supervised = threading.Event()  # set as the supervisor thread ends
        self._procs, self._leases = [], []
        self._stopping = self._cold = False
        self._broken = None
        self._timed_out_slots = set()
        self._deaths = collections.deque()
        self._parent = dict(dead_lettered=0, dead_letter_dropped=0, timed_out=0, restarts=0, lost=0, returned=0,
                            recycled=0, adopted=0)
        self._saved_handlers = {}
        self._lost_at_start = self._lost_at_end = None
        self._signal_stop = None  # the PoolStopped our SIGTERM handler raised, for __exit__
        self._in_with = False     # inside `with pool:` (where SIGTERM raises PoolStopped)

    # ---- starting ----

    def start(self):
        """Start the workers and the supervisor thread (once)."""
        with self._lock:
            if self._started:
                raise RuntimeError("this WorkerPool was started already")
            self._started = True
            self._procs = [None] * self._workers
            try:
                stride = self._source._lease_stride
                self._lease_size = LEASE_HEADER + self._batch * stride
                self._region = self._ctx.RawArray("B", _CONTROL + self._workers * self._lease_size)
                self._control = memoryview(self._region).cast("B")[:_CONTROL]
                self._leases = [_Lease(self._region, i, self._lease_size, stride, self._batch)
                                for i in range(self._workers)]
                self._config = _Config(self._handler, self._source, self._results, self._dead_letter, self._batch,
                                       self._max_attempts, self._max_tasks, self._initializer, self._initargs,
                                       self._lease_size, self._source._participant_token())
                self._wake_r, self._wake_w = os.pipe()
                os.set_blocking(self._wake_w, False)
                self._lost_at_start = self._source_lost()
                for i in range(self._workers):
                    self._spawn(i)
            except BaseException:  # nothing left behind: the pool is finished, stop() and the rest do nothing
                self._stopping = self._cold = self._finished = True
                try:
                    self._kill_and_adopt()
                    self._return_leftovers()  # what a worker took (or we adopted) goes back to the source
                finally:
                    for fd in (getattr(self, "_wake_r", None), getattr(self, "_wake_w", None)):
                        if fd is not None:
                            os.close(fd)
                raise
            self._supervisor = threading.Thread(target=self._supervise, name="shmring-WorkerPool-supervisor",
                                                daemon=True)
            self._supervisor.start()
            self._install_signals()  # last: a SIGTERM from here on finds a pool that stop() can end
        return self

    def _spawn(self, slot):
        self._leases[slot].set(_STATE, _RUNNING)
        self._leases[slot].set(LEASE_TAKER, 0)  # the last worker's participant is not this one's
        self._leases[slot].set(_BUSY, 0.0, _F64)
        parent = None if self._ctx.get_start_method() == "forkserver" else os.getpid()
        p = self._ctx.Process(target=_worker_main, args=(self._config, self._region, slot, parent),
                              name=f"shmring-worker-{slot}", daemon=True)
        p.start()
        self._procs[slot] = p

    def __enter__(self):
        self.start()
        self._in_with = True  # our SIGTERM raises PoolStopped: the block may be blocked in source.join()
        return self

    def __exit__(self, exc_type, exc, tb):
        self._in_with = False
        if exc is not None and exc is self._signal_stop:  # our SIGTERM: warm, and the program goes on
            self._signal_stop = None
            self.stop()
            return True
        if exc_type is not None and not issubclass(exc_type, Exception):  # Ctrl-C, SystemExit: at once
            self.terminate()
        else:
            self.stop()
        return False

    # ---- signals (main thread only) ----

    def _install_signals(self):
        if not self._signals or threading.current_thread() is not threading.main_thread():
            return
        previous_int = signal.getsignal(signal.SIGINT)

        def on_term(signum, frame):
            if self._stopping:
                return self._on_second_signal(signum)
            self._request_stop()
            if not self._in_with:  # start() ... join(): join() returns once the warm stop is done
                return
            # the main thread leaves what it waits in (source.join()): with pool: stops warm and goes on
            self._signal_stop = PoolStopped("SIGTERM: the worker pool stops (warm); a second SIGTERM or "
                                            "Ctrl-C kills its workers")
            raise self._signal_stop

        def on_int(signum, frame):
            if self._stopping:
                return self._on_second_signal(signum)
            self._request_cold()
            if callable(previous_int):
                previous_int(signum, frame)  # the default raises KeyboardInterrupt
        self._saved_handlers = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_term),
                                signal.SIGINT: signal.signal(signal.SIGINT, on_int)}
        self._our_handlers = {signal.SIGTERM: on_term, signal.SIGINT: on_int}

    def _on_second_signal(self, signum):
        """A SIGTERM or Ctrl-C while the pool stops: cold (terminate), the previous
        handlers back, and the signal raised again for them (the default one ends
        the program)."""
        try:
            self.terminate()
        except PoolBroken:
            pass
        finally:
            self._restore_signals()
        signal.raise_signal(signum)

    def _restore_signals(self):
        if not self._saved_handlers or threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._saved_handlers.items():
            if signal.getsignal(signum) is self._our_handlers[signum]:  # unless someone replaced ours
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._saved_handlers = {}

    # ---- stopping ----

    def _wake(self):
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):  # full (it is awake anyway) or closed (it has ended)
            pass

    def _set_stop_flag(self):
        _U32.pack_into(self._control, 0, 1)
        for lease in self._leases:
            lease.set(_SLOT_STOP, 1)

    def _request_stop(self):
        """Warm: workers take nothing more, finish what they hold and exit."""
        self._stopping = True
        self._set_stop_flag()
        self._wake()

    def _request_cold(self):
        """Cold: workers are killed; what they held goes back to the source."""
        self._stopping = self._cold = True
        self._set_stop_flag()
        self._wake()

    def stop(self, timeout=30.0):
        """Warm stop: no worker takes another message, handlers running finish
        and their workers exit; after `timeout` seconds the rest are killed
        (terminate). Messages not taken stay in the source. Raises PoolBroken if
        the pool broke (restart_limit). Nothing to do for a pool never started,
        or whose start() failed."""
        if self._supervisor is None:
            return
        if not self._finished:
            self._request_stop()
            if not self._wait(timeout):
                self._request_cold()
        self._end()

    def terminate(self):
        """Cold stop: kill every worker now; what they held goes back to the
        source (at_least_once; at_most_once: counted lost). Raises PoolBroken if
        the pool had broken."""
        if self._supervisor is None:
            return
        if not self._finished:
            self._request_cold()
        self._end()

    def join(self, timeout=None):
        """Wait until every worker has ended (after stop(), or once the source
        was shut down and drained) and the pool has finished: True, or False if
        the timeout passed first. Raises PoolBroken if the pool broke (at once:
        a broken pool kills its workers)."""
        if not self._started:
            raise RuntimeError("join() of a WorkerPool that was not started")
        if self._supervisor is not None and not self._finished:
            until = None if timeout is None else time.monotonic() + timeout
            try:
                done = self._wait(timeout)
            except PoolStopped as e:  # our SIGTERM: the warm stop it asked for is what this waits for
                if e is not self._signal_stop:
                    raise
                self._signal_stop = None
                done = self._wait(None if until is None else max(0.0, until - time.monotonic()))
            if not done:
                return False
        self._end()
        return True

    def _wait(self, timeout):
        """Wait for the supervisor to end: True, or False after timeout seconds.
        On an Event, not Thread.join: a signal handler's exception (Ctrl-C,
        PoolStopped) interrupting Thread.join can mark a live thread stopped."""
        return self._supervised.wait(timeout)

    def _end(self):
        """After the supervisor: leftovers back, signals restored; PoolBroken raised."""
        if self._supervisor is not None:
            self._supervised.wait()
            self._supervisor.join()
        with self._lock:
            if not self._finished:
                self._lost_at_end = self._source_lost()
                self._finished = True
                try:
                    self._return_leftovers()
                finally:
                    self._restore_signals()
                    os.close(self._wake_r)
                    os.close(self._wake_w)
        if self._broken is not None:
            raise self._broken

    # ---- the supervisor thread ----

    def _supervise(self):
        try:
            self._supervise_workers()
        finally:
            self._supervised.set()

    def _supervise_workers(self):
        try:
            while True:
                live = {p.sentinel: i for i, p in enumerate(self._procs) if p is not None}
                if not live:
                    break
                if self._cold:
                    self._kill_all()
                ready = _wait_for([*live, self._wake_r], self._until_next_timeout())
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)
                for sentinel in ready:
                    if sentinel in live:
                        self._reap(live[sentinel])
                self._kill_timed_out()
        except BaseException as e:  # never leave workers behind a dead supervisor
            self._broken = self._broken or PoolBroken(f"worker pool supervisor failed: {e!r}")
            self._stopping = self._cold = True
            self._kill_and_adopt()
            raise

    def _kill_and_adopt(self):
        """Kill and join every worker, and adopt what each held (recovery leaves
        their supervised claims to us: stranded otherwise while the source is open)."""
        self._kill_all()
        for p, lease in zip(self._procs, self._leases):
            if p is not None:
                p.join()
                self._adopt(lease, p.pid)

    def _kill_all(self):
        for p in self._procs:
            if p is not None and p.exitcode is None:
                p.kill()

    def _until_next_timeout(self):
        """Seconds until the earliest handler call passes task_timeout (None: no
        timeout; with nobody busy, one task_timeout: a call begun after now ends later)."""
        if self._task_timeout is None:
            return None
        now, soonest = time.monotonic(), self._task_timeout
        for i, p in enumerate(self._procs):
            busy = self._leases[i].get(_BUSY, _F64)
            if p is not None and busy and i not in self._timed_out_slots:
                soonest = min(soonest, busy + self._task_timeout - now)
        return max(soonest, 0.0)

    def _kill_timed_out(self):
        if self._task_timeout is None:
            return
        now = time.monotonic()
        for i, p in enumerate(self._procs):
            busy = self._leases[i].get(_BUSY, _F64)
            if p is not None and busy and now - busy >= self._task_timeout and i not in self._timed_out_slots:
                self._timed_out_slots.add(i)
                self._parent["timed_out"] += 1
                p.kill()

    def _reap(self, slot):
        """A worker of `slot` ended: decide for its lease, replace it or not."""
        p, lease = self._procs[slot], self._leases[slot]
        p.join()
        code, state = p.exitcode, lease.get(_STATE)
        self._procs[slot] = None
        timed_out = slot in self._timed_out_slots
        self._timed_out_slots.discard(slot)
        if code == 0 and state == _RECYCLED and not self._stopping:
            self._parent["recycled"] += 1
            self._spawn(slot)
            return
        if code == 0 and state in (_STOPPED, _DRAINED):
            return
        self._adopt(lease, p.pid)
        self._settle_finishing(lease)
        count = self._held(lease)
        if count and not self._stopping:
            attempts = lease.get(_ATTEMPTS)
            if self._delivery == "at_most_once":
                self._parent["lost"] += count
                self._finish(lease)
            elif attempts >= self._max_attempts:
                self._dead_letter_lease(lease, "timeout" if timed_out else "worker_lost", attempts)
            # else: the replacement inherits the lease and handles them again
        if self._stopping:
            return
        now = time.monotonic()
        self._deaths.append((now, p.pid, code))
        limit, window = self._restart_limit
        while self._deaths and self._deaths[0][0] < now - window:
            self._deaths.popleft()
        if len(self._deaths) > limit:
            self._broken = PoolBroken.of([(pid, c) for _, pid, c in self._deaths], limit, window)
            self._request_cold()  # broken: the rest are killed, what they hold goes back, join() raises now
            return
        self._parent["restarts"] += 1
        self._spawn(slot)

    def _source_lost(self):
        """The source's own count of messages lost (claims of consumers that died
        holding them), or None where it cannot say (closed)."""
        try:
            return self._source.stats()["lost"]
        except Exception:
            return None

    def _finish(self, lease, n=None):
        """_finish_leased from the pool. Its task_done is refused (ValueError) only
        where join()'s count already reached every message put (a done paid twice
        by a worker killed inside _finish_leased, discards of an immediate
        shutdown): the lease is emptied all the same, and there is nothing to add."""
        try:
            self._source._finish_leased(lease.buf, n)
        except ValueError:
            pass

    def _adopt(self, lease, pid):
        """A worker killed inside its take holds a claim on the source: its
        messages into the lease (or, killed after storing the count, only the
        claim released), before the queue's recovery counts them lost."""
        try:
            adopted = self._source._adopt_leased(lease.buf, pid)
        except ValueError:  # a source closed by its user: its recovery is not ours
            return
        if adopted:  # the lease holds that take's messages alone (a take needs an empty one), never tried
            lease.set(_ATTEMPTS, 0)
            self._parent["adopted"] += adopted

    def _settle_finishing(self, lease):
        """A worker killed inside _finish_leased: the done it owed (see there).
        A finishing word above batch is corrupt: cleared; with nothing held, as
        _held's corrupt count (one message lost and done)."""
        finishing, count = lease.finishing(), lease.count()
        if finishing > self._batch:
            lease.set(LEASE_FINISHING, 0)
            if count == 0:
                self._parent["lost"] += 1
                self._finish(lease, 1)
        elif finishing and (count == 0 or count == finishing):
            self._finish(lease, finishing)

    def _held(self, lease):
        """The lease's count word, checked: one above batch (a worker wrote over
        its lease) is corrupt: the lease is emptied and one message counted lost
        and done (how many it held cannot be known); 0 then."""
        count = lease.count()
        if count <= self._batch:
            return count
        self._parent["lost"] += 1
        self._finish(lease, 1)
        return 0

    def _dead_letter_lease(self, lease, reason, attempts):
        """A dead worker's messages, after max_attempts, to dead_letter as their
        raw bytes: the pool never decodes (unpickles) a message itself, it may
        be what killed the worker. Never waits (a full dead_letter: counted in
        dead_letter_dropped)."""
        for raw, _ in lease.entries(lease.count()):
            if _send_dead_letter(self._dead_letter, _dead_letter_entry(raw, reason, attempts, None)):
                self._parent["dead_lettered"] += 1
            else:
                self._parent["dead_letter_dropped"] += 1
        self._finish(lease)

    def _return_leftovers(self):
        """Messages still in leases when the pool ends go back to the source with
        their deadlines (at_least_once), else (at_most_once, a source shut down,
        closed or full) are counted lost; then marked done, as taken ones."""
        for lease in self._leases:
            self._settle_finishing(lease)
            count = self._held(lease)
            if not count:
                continue
            back = 0
            if self._delivery == "at_least_once":
                entries = [(raw, d) for raw, d in lease.entries(count) if raw is not None]
                try:
                    self._source.put_many_bytes([raw for raw, _ in entries],
                                                deadline=[d / 1e9 if d else None for _, d in entries],
                                                timeout=_PUT_BACK_WAIT)
                    back = len(entries)
                except (Full, ShutDown) as e:
                    back = e.count
                except QueueClosed:  # closed by its user before stop(): nothing goes back, nor is done paid
                    back = 0
            self._parent["returned"] += back
            self._parent["lost"] += count - back
            self._finish(lease)  # QueueClosed is a ValueError: ignored there

    # ---- looking at it ----

    def stats(self):
        """Counters, summed over every worker the pool had: processed, failed
        (handler calls that raised), retried (messages handed to the handler
        again), dead_lettered, dead_letter_dropped (refused by dead_letter),
        expired, timed_out (workers killed for task_timeout), restarts, recycled
        (max_tasks_per_child), adopted (messages a worker killed inside its
        take still claimed: the pool took its claim over), lost (source_lost included: the source's own
        count of lost messages since start, up to the end), returned
        (put back into the source at the end), in_flight (held by workers now);
        and per worker slot: pid, alive, processed, busy_since
        (time.monotonic() when its handler call began, None when idle)."""
        out = dict.fromkeys(_COUNTER_NAMES, 0)
        workers = []
        for i, lease in enumerate(self._leases):
            mine = lease.counters()
            for name in _COUNTER_NAMES:
                out[name] += mine[name]
            p = self._procs[i] if i < len(self._procs) else None
            busy = lease.get(_BUSY, _F64)
            workers.append({"slot": i, "pid": p.pid if p is not None else None,
                            "alive": p is not None and p.exitcode is None, "processed": mine["processed"],
                            "busy_since": busy or None, "in_flight": lease.count()})
        for name, value in self._parent.items():
            out[name] = out.get(name, 0) + value
        # A worker killed inside _take_leased before its claim was held (a few
        # instructions): counted lost by the queue's recovery (docs/design.md, the
        # worker pool). Any consumer of the source that died meanwhile is counted here too.
        now = self._lost_at_end if self._finished else self._source_lost()
        start = self._lost_at_start
        out["source_lost"] = now - start if now is not None and start is not None else 0
        out["lost"] += out["source_lost"]
        out["in_flight"] = sum(w["in_flight"] for w in workers)
        out["workers"] = workers
        return out

    def __repr__(self):
        state = ("broken" if self._broken else "finished" if self._finished else "stopping" if self._stopping
                 else "running" if self._started else "not started")
        return f"<shmring.WorkerPool {self._workers} workers, {state}>"


def _count(what, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be at least 1, got {value}")
    return value
