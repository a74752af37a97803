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


def busy_for_a_while(x):
    time.sleep(0.005)  # long enough to be killed inside
    return x


class WorkerPoolKills(PoolRow):
    """at_least_once under SIGKILLs of workers inside the handler: every kill
    waits for its slot's new worker to be busy again (the redelivery), so a
    hang shows as a row that never ends; then every message must have a result.
    `count` is the number of kills; the messages are 2 x kills + 100."""

    name = "shmring WorkerPool at_least_once, SIGKILLs mid-handler"
    count = 200

    def measure(self, kills):
        import os
        import signal

        n = 2 * kills + 100
        source, results = shmring.Queue(4096, 64), shmring.Queue(4096, 64)
        try:
            source.put_many(range(n))
            pool = shmring.WorkerPool(busy_for_a_while, source, workers=2, results=results,
                                      max_attempts=kills + 2, restart_limit=(kills + 1, 3600.0))
            worst = 0.0
            with pool:
                t0 = time.perf_counter()
                for done in range(1, kills + 1):
                    victim = _wait_for(lambda: _busy(pool))
                    os.kill(victim["pid"], signal.SIGKILL)
                    killed = time.monotonic()
                    _wait_for(lambda: pool.stats()["workers"][victim["slot"]]["pid"] != victim["pid"] and
                              pool.stats()["workers"][victim["slot"]]["busy_since"] is not None or
                              source.qsize() == 0 and pool.stats()["in_flight"] == 0)
                    worst = max(worst, time.monotonic() - killed)
                if not source.join(timeout=60):
                    raise RuntimeError("the pool hung: source.join() timed out after the kills")
                took = time.perf_counter() - t0
            got = results.get_many(max_items=4 * n, timeout=5) if results.qsize() else []
            lost = len(set(range(n)) - set(got))
        finally:
            source.close()
            results.close()
        return {"rate": n / took, "kills": kills, "lost": lost, "duplicates_per_kill": (len(got) - n + lost) / kills,
                "redelivery_max_s": worst}


def _busy(pool):
    busy = [w for w in pool.stats()["workers"] if w["busy_since"] is not None and w["alive"]]
    return busy[0] if busy else None


def _wait_for(what, timeout=10.0):
    """Poll `what` until it gives something true; a hang is an error, not a wait."""
    deadline = time.monotonic() + timeout
    while not (found := what()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the pool hung: nothing happened within {timeout} s")
        time.sleep(0.0005)
    return found


ROWS = [WorkerPoolOne(), MpPoolOne(), ImapBatch(), MpPoolBatch(), ExecutorBatch(), WorkerPoolKills()]
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


def kill_summary(results):
    """The line under the table: what the kill row's repetitions saw, or None."""
    for r in results.values():
        if r["name"] == WorkerPoolKills.name and "metrics" in r:
            m = r["metrics"]
            return (f"{r['label']}: {m['kills']['max']:.0f} kills in each of {len(m['lost']['samples'])} "
                    f"repetitions, none hung; lost {m['lost']['max']:.0f} at most, "
                    f"{m['duplicates_per_kill']['max']:.2f} duplicates per kill at most, "
                    f"redelivered {m['redelivery_max_s']['max'] * 1000:.0f} ms after a kill at the slowest")
    return None


def kill_targets(results):
    """(label, value, needed) of the kill row's repetitions, each to reach `needed` or more."""
    for r in results.values():
        if r["name"] == WorkerPoolKills.name and "metrics" in r:
            m = r["metrics"]
            yield "workers: no message lost under the kills (1 - the most lost)", 1 - m["lost"]["max"], 1
            yield ("workers: at most one duplicate per kill (1 / the most duplicates per kill)",
                   1 / max(m["duplicates_per_kill"]["max"], 0.01), 1)
            yield ("workers: redelivered within 1 s of a kill (1 s / the slowest)",
                   1 / max(m["redelivery_max_s"]["max"], 0.001), 1)
