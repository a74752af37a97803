"""shmring.imap_unordered: multiprocessing.Pool.imap_unordered on a WorkerPool."""
import collections
import itertools
import os
import pickle
import traceback

from shmring.errors import Empty, Full, MessageTooLarge, PoolBroken, QueueClosed, ShutDown
from shmring.workers.lease import _TAKE_WAIT
from shmring.workers.pool import WorkerPool, _count


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as text (chained as the
    __cause__ of the exception re-raised in the caller, as concurrent.futures does)."""

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb


class _Apply:
    """imap_unordered's handler: func over one chunk (seq, items); the answers
    go to results as (seq, start, values, errors) for the items from `start`
    on: values, a list of results (None where func raised), and errors, None or
    {index in values: (exception, traceback text)}; one message, or more where
    the answers do not fit one."""

    def __init__(self, func, results):
        self.func, self.results = func, results

    def __call__(self, chunk):
        seq, items = chunk
        values, errors, rest = [], None, iter(items)
        while True:
            try:
                values.extend(map(self.func, rest))  # what func returned before raising is kept
                break
            except Exception as e:
                errors = errors or {}
                errors[len(values)] = (_portable(e), traceback.format_exc())
                values.append(None)  # `rest` goes on after the item that raised
        self._send(seq, 0, values, errors)

    def _send(self, seq, start, values, errors):
        try:
            self.results.put((seq, start, values, errors))
            return
        except MessageTooLarge:
            why = "is too large"
        except (ShutDown, QueueClosed):
            raise
        except Exception:  # a result that does not pickle (its __reduce__ may raise anything)
            why = "does not pickle"
        if len(values) == 1:
            failed = errors and errors.get(0)
            what = (f"exception ({type(failed[0]).__name__}: {str(failed[0])[:200]})" if failed else "result")
            self.results.put((seq, start, [None], {0: (RuntimeError(f"imap_unordered: the {what} of an item {why}"),
                                                       failed[1] if failed else "")}))
            return
        half = len(values) // 2
        for lo, hi in ((0, half), (half, len(values))):
            part = errors and {i - lo: e for i, e in errors.items() if lo <= i < hi}
            self._send(seq, start + lo, values[lo:hi], part or None)


def _portable(e):
    """e, if it survives pickling both ways (the caller re-raises it), else a
    RuntimeError naming it (the caller chains the worker's traceback to it)."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"imap_unordered: func raised {e!r:.500}, which does not survive pickling: "
                            "see the RemoteTraceback")


IMAP_CHUNK_BYTES = 256 * 1024  # bytes a chunk of items, or its answers, may take pickled (else it is split)


def imap_unordered(func, iterable, *, workers=None, batch=256, buffersize=None):
    """``multiprocessing.Pool.imap_unordered`` on a WorkerPool: ``func(item)``
    for every item, in worker processes, results yielded as they finish.

    Items go to the workers in chunks of ``batch`` (one message each, as
    ``Pool.imap_unordered``'s chunksize); the input is consumed lazily, at
    most ``buffersize`` items (default 2 x workers x batch) outstanding. An
    exception in ``func`` is raised here with its original type, the worker's
    traceback chained (``RemoteTraceback``), and ends the iteration (unlike
    multiprocessing's iterator, which can be asked for more after one). Closing the generator (a ``break``) or
    an exception here (Ctrl-C) stops everything: workers killed, queues
    removed. A chunk that pickles to more than IMAP_CHUNK_BYTES is split; a
    single item that large raises MessageTooLarge. A worker killed meanwhile
    is replaced and its chunk is run again; each result is yielded once."""
    batch = _count("batch", batch)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = _count("workers", workers)
    buffersize = 2 * workers * batch if buffersize is None else _count("buffersize", buffersize)
    return _imap(func, iter(iterable), workers, batch, buffersize)


def _imap(func, items, workers, batch, buffersize):
    from shmring.queue import Queue

    chunks = max(2, -(-buffersize // batch))  # chunks outstanding, unless some were split
    made = []
    try:
        for maxsize, msg_size in ((chunks, IMAP_CHUNK_BYTES), (2 * chunks, IMAP_CHUNK_BYTES),
                                  (4, 2 * IMAP_CHUNK_BYTES)):  # inputs, results, dead letters
            made.append(Queue(maxsize, msg_size))
    except BaseException:
        for q in made:
            q.close()
        raise
    inputs, results, dead = made
    pool = WorkerPool(_Apply(func, results), inputs, workers=workers, dead_letter=dead, _signals=False)
    try:
        pool.start()
        pending = {}     # chunk seq -> [items not answered yet, [(start, end) of the answers]]
        outstanding = 0  # items given out and not answered
        seq = itertools.count()
        unsent = collections.deque()  # (seq, items) not in the queue yet: it was full, or split them
        exhausted = False
        while True:
            while unsent or (not exhausted and outstanding < buffersize):
                if not unsent:
                    chunk = list(itertools.islice(items, min(batch, buffersize - outstanding)))
                    if not chunk:
                        exhausted = True
                        break
                    s = next(seq)
                    pending[s] = [len(chunk), []]
                    outstanding += len(chunk)
                    unsent.append((s, chunk))
                try:
                    inputs.put(unsent[0], block=False)
                except Full:  # never wait here: the workers may be waiting for us to take answers
                    break
                except MessageTooLarge:
                    s, chunk = unsent.popleft()
                    if len(chunk) == 1:
                        raise
                    del pending[s]
                    half = len(chunk) // 2
                    for part in (chunk[:half], chunk[half:]):
                        t = next(seq)
                        pending[t] = [len(part), []]
                        unsent.appendleft((t, part))
                    continue
                unsent.popleft()
            if not pending:
                break
            try:
                answers = results.get_many(block=True, timeout=_TAKE_WAIT)
            except Empty:
                answers = ()
                if pool._broken is not None or pool._finished:
                    pool.terminate()  # raises PoolBroken
            for s, start, values, errors in answers:
                state = pending.get(s)
                if state is None:  # a duplicate: its worker was killed after answering
                    continue
                end, spans = start + len(values), state[1]
                fresh = range(len(values))
                if any(a < end and start < b for a, b in spans):  # answered in part: a rerun split it otherwise
                    fresh = [i for i in fresh if not any(a <= start + i < b for a, b in spans)]
                    if not fresh:
                        continue
                spans.append((start, end))
                state[0] -= len(fresh)
                outstanding -= len(fresh)
                if not state[0]:
                    del pending[s]
                if errors is None and len(fresh) == len(values):
                    yield from values
                    continue
                for i in fresh:
                    if errors and i in errors:
                        exc, tb = errors[i]
                        raise exc from RemoteTraceback(tb)
                    yield values[i]
            if dead.qsize():
                lost = dead.get()
                chunk = lost["message"]
                what = f"chunk {chunk[0]}" if isinstance(chunk, tuple) else "a chunk"
                raise PoolBroken(f"imap_unordered: {what}: its worker died {lost['attempts']} times running it "
                                 f"({lost['reason']})")
    finally:
        try:
            inputs.shutdown(immediate=True)
            pool.terminate()
        finally:
            for q in made:
                q.close()
