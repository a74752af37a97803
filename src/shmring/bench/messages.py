"""Message rows: 1 producer process -> 1 consumer process, 64-byte messages,
shmring (single, bytes and batch calls) beside the queues people use today."""
import functools
import os
import queue as stdlib_queue
import tempfile
import threading

import shmring
from shmring.bench.runner import Row, Timer, context

PAYLOAD = b"x" * 64
BATCH = 256


def nothing():
    pass


class MessageRow(Row):
    """`endpoint(handle, side)` gives (call, cleanup) for side "put" or "get": by
    default the handle's methods named in `calls`. With `batch` set, put calls
    take a list and get calls return one."""

    unit = "msgs"
    item_bytes = len(PAYLOAD)
    batch = None
    calls = ("put", "get")
    get_kwargs = {}

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
        get, cleanup = self.endpoint(handle, "get")
        ready.set()
        timer = Timer()
        if self.batch:
            got, total = 0, n // self.batch * self.batch
            while got < total:
                k = len(get())
                got += k
                timer.tick(k)
        else:
            for _ in range(n):
                get()
                timer.tick(1)
        cleanup()
        return timer.rate()


# ---- shmring, on its defaults ----

class ShmringRow(MessageRow):
    def make(self):
        return shmring.Queue()

    def close(self, q):
        q.close()


class ShmringObjects(ShmringRow):
    name = "shmring put/get (pickled)"
    count = 2_000_000


class ShmringBytes(ShmringRow):
    name = "shmring put_bytes/get_bytes"
    count = 4_000_000
    calls = ("put_bytes", "get_bytes")


class ShmringBatch(ShmringRow):
    name = f"shmring put_many/get_many ({BATCH})"
    count = 4_000_000
    batch = BATCH
    calls = ("put_many", "get_many")
    get_kwargs = {"max_items": BATCH}


# ---- peers ----

class ThreadQueue(MessageRow):
    """Producer and consumer are two threads of one (fresh) process."""

    name = "queue.Queue (2 threads)"
    count = 300_000

    def run(self, n):
        ctx = context()
        results = ctx.Queue()
        p = ctx.Process(target=_thread_queue_main, args=(self, n, results))
        p.start()
        rate = results.get(timeout=600)
        p.join(600)
        return rate


def _thread_queue_main(row, n, results):
    q = stdlib_queue.Queue()
    t = threading.Thread(target=row.produce, args=(q, n))
    t.start()
    results.put(row.consume(q, n, threading.Event()))
    t.join()


class MpQueue(MessageRow):
    name = "multiprocessing.Queue"
    count = 300_000

    def make(self):
        return context().Queue()


class FasterFifo(MessageRow):
    name = "faster-fifo put/get"
    count = 300_000
    requires = "faster_fifo"

    def make(self):
        import faster_fifo
        return faster_fifo.Queue()


class FasterFifoBatch(FasterFifo):
    name = f"faster-fifo put_many/get_many ({BATCH})"
    count = 600_000
    batch = BATCH
    calls = ("put_many", "get_many")
    get_kwargs = {"max_messages_to_get": BATCH}


class ZmqPushPull(MessageRow):
    name = "pyzmq PUSH/PULL ipc://"
    count = 1_000_000
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
        ctx = zmq.Context()
        if side == "put":
            s = ctx.socket(zmq.PUSH)
            s.connect("ipc://" + path)
            call = s.send
        else:
            s = ctx.socket(zmq.PULL)
            s.bind("ipc://" + path)
            call = s.recv

        def cleanup():
            s.close(linger=-1 if side == "put" else 0)
            ctx.term()
        return call, cleanup


ROWS = [ShmringObjects(), ShmringBytes(), ShmringBatch(), ThreadQueue(), MpQueue(),
        FasterFifo(), FasterFifoBatch(), ZmqPushPull()]
BASELINE = MpQueue.name


def ratio(v):
    return f"{v:.1f}x"


TARGETS = [
    ("put_bytes/get_bytes vs multiprocessing.Queue", ShmringBytes.name, MpQueue.name, 20, ratio),
    ("put_bytes/get_bytes vs pyzmq PUSH/PULL", ShmringBytes.name, ZmqPushPull.name, 2.5, ratio),
    ("put/get (pickled) vs multiprocessing.Queue", ShmringObjects.name, MpQueue.name, 5, ratio),
    ("put/get (pickled) vs faster-fifo put/get", ShmringObjects.name, FasterFifo.name, 4, ratio),
    ("put_many/get_many vs faster-fifo put_many/get_many", ShmringBatch.name, FasterFifoBatch.name, 10, ratio),
]
TITLE = f"1 producer process -> 1 consumer process, {len(PAYLOAD)}-byte messages, ratio to {BASELINE}"
