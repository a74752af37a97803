"""Side-by-side throughput: 1 producer process -> 1 consumer process, 64-byte messages.

    python bench/compare.py            # all rows, 5 interleaved repetitions
    python bench/compare.py --quick    # fewer messages and repetitions (~1 min on 2 cores)

Every row moves the same 64-byte bytes payload and is measured at the consumer,
from its first message to its last. Each repetition runs in fresh processes and
repetitions are interleaved across rows, so a noisy moment hits every row alike.
Peers that are not installed (pip install 'shmring[bench]') are skipped with a note.
"""
import argparse
import functools
import multiprocessing as mp
import os
import platform
import queue as stdlib_queue
import statistics
import sys
import tempfile
import threading
import time

import shmring

PAYLOAD = b"x" * 64
BATCH = 256


def ctx():
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


class Row:
    """One way of moving messages: how to open each end, and what to call there.

    `endpoint(handle, side)` returns (call, cleanup) for side "put" or "get"; by
    default the calls are the handle's methods named in `calls`, the get call with
    `get_kwargs`. With `batch` set, put calls take a list and get calls return one.
    """

    name = ""
    messages = 2_000_000        # per repetition; scaled down by --quick
    requires = None             # module that must import, else the row is skipped
    batch = None
    calls = ("put", "get")
    get_kwargs = {}

    def missing(self):
        if self.requires is None:
            return None
        try:
            __import__(self.requires)
        except ImportError:
            return f"{self.requires} not installed (pip install 'shmring[bench]')"
        return None

    def make(self):
        """Shared handle, created in the parent and passed to both processes."""
        return None

    def close(self, handle):
        pass

    def endpoint(self, handle, side):
        put_name, get_name = self.calls
        if side == "put":
            return getattr(handle, put_name), nothing
        return functools.partial(getattr(handle, get_name), **self.get_kwargs), nothing

    def produce(self, handle, n):
        put, cleanup = self.endpoint(handle, "put")
        if self.batch:
            items = [PAYLOAD] * self.batch
            for _ in range(n // self.batch):
                put(items)
        else:
            for _ in range(n):
                put(PAYLOAD)
        cleanup()

    def consume(self, handle, n, ready):
        """Messages/s from the first message received to the last."""
        get, cleanup = self.endpoint(handle, "get")
        ready.set()
        if self.batch:
            total = n // self.batch * self.batch
            got = len(get())
            t0 = time.perf_counter()
            first = got
            while got < total:
                got += len(get())
            count = got - first
        else:
            get()
            t0 = time.perf_counter()
            for _ in range(n - 1):
                get()
            count = n - 1
        rate = count / (time.perf_counter() - t0)
        cleanup()
        return rate

    def run(self, n):
        """One repetition in fresh processes; returns messages/s at the consumer."""
        c = ctx()
        handle = self.make()
        results = c.Queue()
        ready = c.Event()
        consumer = c.Process(target=_consumer_main, args=(self, handle, n, ready, results))
        producer = c.Process(target=_producer_main, args=(self, handle, n, ready))
        try:
            consumer.start()
            producer.start()
            rate = results.get(timeout=600)
            producer.join(600)
            consumer.join(600)
        finally:
            for p in (producer, consumer):
                if p.is_alive():
                    p.kill()
            self.close(handle)
        return rate


def _consumer_main(row, handle, n, ready, results):
    results.put(row.consume(handle, n, ready))


def _producer_main(row, handle, n, ready):
    ready.wait(60)
    row.produce(handle, n)


def nothing():
    pass


# ---- shmring, on its defaults ----

class ShmringRow(Row):
    def make(self):
        return shmring.Queue()

    def close(self, q):
        q.close()


class ShmringObjects(ShmringRow):
    name = "shmring put/get (pickled)"


class ShmringBytes(ShmringRow):
    name = "shmring put_bytes/get_bytes"
    messages = 4_000_000
    calls = ("put_bytes", "get_bytes")


class ShmringBatch(ShmringRow):
    name = f"shmring put_many/get_many ({BATCH})"
    messages = 4_000_000
    batch = BATCH
    calls = ("put_many", "get_many")
    get_kwargs = {"max_items": BATCH}


# ---- peers ----

class ThreadQueue(Row):
    """Producer and consumer are two threads of one (fresh) process."""
    name = "queue.Queue (2 threads)"
    messages = 300_000

    def run(self, n):
        c = ctx()
        results = c.Queue()
        p = c.Process(target=_thread_queue_main, args=(self, n, results))
        p.start()
        rate = results.get(timeout=600)
        p.join(600)
        return rate


def _thread_queue_main(row, n, results):
    q = stdlib_queue.Queue()
    ready = threading.Event()
    t = threading.Thread(target=row.produce, args=(q, n))
    t.start()
    results.put(row.consume(q, n, ready))
    t.join()


class MpQueue(Row):
    name = "multiprocessing.Queue"
    messages = 300_000

    def make(self):
        return ctx().Queue()


class FasterFifo(Row):
    name = "faster-fifo put/get"
    messages = 300_000
    requires = "faster_fifo"

    def make(self):
        import faster_fifo
        return faster_fifo.Queue()


class FasterFifoBatch(FasterFifo):
    name = f"faster-fifo put_many/get_many ({BATCH})"
    messages = 600_000
    batch = BATCH
    calls = ("put_many", "get_many")
    get_kwargs = {"max_messages_to_get": BATCH}


class ZmqPushPull(Row):
    name = "pyzmq PUSH/PULL ipc://"
    messages = 1_000_000
    requires = "zmq"

    def make(self):
        return os.path.join(tempfile.mkdtemp(prefix="shmring-bench-"), "sock")

    def close(self, path):
        for remove, p in ((os.remove, path), (os.rmdir, os.path.dirname(path))):
            try:
                remove(p)
            except OSError:
                pass

    def endpoint(self, path, side):
        import zmq
        context = zmq.Context()
        if side == "put":
            s = context.socket(zmq.PUSH)
            s.connect("ipc://" + path)
            call = s.send
        else:
            s = context.socket(zmq.PULL)
            s.bind("ipc://" + path)
            call = s.recv

        def cleanup():
            s.close(linger=-1 if side == "put" else 0)
            context.term()
        return call, cleanup


ROWS = [ShmringObjects(), ShmringBytes(), ShmringBatch(), ThreadQueue(), MpQueue(),
        FasterFifo(), FasterFifoBatch(), ZmqPushPull()]
BASELINE = MpQueue.name

# (row, peer, required ratio) from the project's targets
TARGETS = [
    (ShmringBytes.name, MpQueue.name, 20),
    (ShmringBytes.name, ZmqPushPull.name, 2.5),
    (ShmringObjects.name, MpQueue.name, 5),
    (ShmringObjects.name, FasterFifo.name, 4),
    (ShmringBatch.name, FasterFifoBatch.name, 10),
]


def machine_header():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"CPU: {cpu}, {os.cpu_count()} cores | OS: {platform.system()} {platform.release()} | "
            f"Python {platform.python_version()} | shmring {shmring.__version__}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer messages and 3 repetitions")
    ap.add_argument("--repeat", type=int, default=None, help="repetitions per row (default 5, quick 3)")
    args = ap.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 5)
    scale = 0.25 if args.quick else 1.0

    rows = []
    for row in ROWS:
        why = row.missing()
        if why:
            print(f"skipped: {row.name}: {why}")
        else:
            rows.append(row)
    rates = {row.name: [] for row in rows}
    for rep in range(repeat):
        for row in rows:
            n = max(1000, int(row.messages * scale))
            print(f"\r[{rep + 1}/{repeat}] {row.name:<45}", end="", file=sys.stderr, flush=True)
            rates[row.name].append(row.run(n))
    print("\r" + " " * 60 + "\r", end="", file=sys.stderr)

    med = {name: statistics.median(r) for name, r in rates.items()}
    print(machine_header())
    print(f"1 producer process -> 1 consumer process, {len(PAYLOAD)}-byte messages, "
          f"median of {repeat} (min-max), ratio to {BASELINE}")
    print()
    print(f"| {'row':<40} | {'msgs/s (median)':>15} | {'min - max':>25} | {'vs mp.Queue':>11} |")
    print(f"|{'-' * 42}|{'-' * 16}:|{'-' * 26}:|{'-' * 12}:|")
    base = med.get(BASELINE)
    for name, r in rates.items():
        ratio = f"{med[name] / base:.1f}x" if base else "n/a"
        spread = f"{min(r):,.0f} - {max(r):,.0f}"
        print(f"| {name:<40} | {med[name]:>15,.0f} | {spread:>25} | {ratio:>11} |")
    print()
    print("Targets (ratio of medians, same run):")
    for row, peer, need in TARGETS:
        if row in med and peer in med:
            ratio = med[row] / med[peer]
            verdict = "ok" if ratio >= need else "MISSED"
            print(f"  {row} vs {peer}: {ratio:.1f}x (target >= {need}x) {verdict}")
        else:
            print(f"  {row} vs {peer}: skipped (peer not installed)")


if __name__ == "__main__":
    main()
