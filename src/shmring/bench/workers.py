"""Worker-pool rows: a no-op handler over small ints, as many workers as usable
CPUs, shmring's WorkerPool and imap_unordered beside multiprocessing.Pool and
concurrent.futures.ProcessPoolExecutor.

Each repetition runs in a fresh process that makes the pool. The batch=1 rows
time from the first message put to the last one done, pools already started;
the batch=256 rows time the whole call, pool start-up included, as a caller
of imap_unordered / map pays it (shmring.imap_unordered makes its pool inside)."""
import concurrent.futures
import multiprocessing as mp
import time

import shmring
from shmring.bench.runner import Row, cpus, report, run_processes

FEED = 256  # messages per put_many of the WorkerPool row's feeder


def noop(x):
    return None


def workers():
    return len(cpus())


class PoolRow(Row):
    scenario = "workers"
    unit = "msgs"

    def run(self, count):
        return run_processes(self, None, (_measure_main, (self, count)))

    def close(self, handle):  # run_processes' cleanup: the measuring process made and closed everything
        pass

    def measure(self, count):
        raise NotImplementedError


def _measure_main(row, count, results):
    report(results, row, row.measure, count)


class WorkerPoolOne(PoolRow):
    name = "shmring WorkerPool batch=1"
    count = 20_000

    def measure(self, count):
        source = shmring.Queue(65536, 64)
        try:
            with shmring.WorkerPool(noop, source, workers=workers(), batch=1):
                items = list(range(count))
                t0 = time.perf_counter()
                for i in range(0, count, FEED):
                    source.put_many(items[i:i + FEED])
                source.join()
                took = time.perf_counter() - t0
        finally:
            source.close()
        return {"rate": count / took}


class MpPoolOne(PoolRow):
    name = "multiprocessing.Pool.imap_unordered chunksize=1"
    count = 20_000

    def measure(self, count):
        with mp.get_context("fork").Pool(workers()) as pool:
            pool.apply(noop, (0,))  # started
            t0 = time.perf_counter()
            for _ in pool.imap_unordered(noop, range(count), chunksize=1):
                pass
            took = time.perf_counter() - t0
        return {"rate": count / took}


class ImapBatch(PoolRow):
    name = "shmring imap_unordered batch=256"
    count = 400_000

    def measure(self, count):
        t0 = time.perf_counter()
        for _ in shmring.imap_unordered(noop, range(count), workers=workers(), batch=256):
            pass
        return {"rate": count / (time.perf_counter() - t0)}


class PeerBatch(PoolRow):
    """A peer's pool made and run within the timing (as imap_unordered makes its own)."""

    count = 400_000

    def measure(self, count):
        t0 = time.perf_counter()
        with self.pool() as pool:
            for _ in self.run_map(pool, count):
                pass
        return {"rate": count / (time.perf_counter() - t0)}


class MpPoolBatch(PeerBatch):
    name = "multiprocessing.Pool.imap_unordered chunksize=256"

    def pool(self):
        return mp.get_context("fork").Pool(workers())

    def run_map(self, pool, count):
        return pool.imap_unordered(noop, range(count), chunksize=256)


class ExecutorBatch(PeerBatch):
    name = "ProcessPoolExecutor.map chunksize=256"

    def pool(self):
        return concurrent.futures.ProcessPoolExecutor(workers(), mp_context=mp.get_context("fork"))

    def run_map(self, pool, count):
        return pool.map(noop, range(count), chunksize=256)


ROWS = [WorkerPoolOne(), MpPoolOne(), ImapBatch(), MpPoolBatch(), ExecutorBatch()]
BASELINE = MpPoolOne.name

# (label, row, other row, needed ratio): checked by command.check_targets
TARGETS = [
    ("workers: WorkerPool batch=1 vs multiprocessing.Pool.imap_unordered(chunksize=1)", WorkerPoolOne.name,
     MpPoolOne.name, 20),
    ("workers: imap_unordered batch=256 vs multiprocessing.Pool.imap_unordered(chunksize=256)", ImapBatch.name,
     MpPoolBatch.name, 1),
    ("workers: imap_unordered batch=256 vs ProcessPoolExecutor.map(chunksize=256)", ImapBatch.name,
     ExecutorBatch.name, 2),
]
