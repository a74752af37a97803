"""Throughput rows: messages from producers to consumers, shmring (single, bytes
and batch calls) beside the queues people use today, for several payload sizes;
1 producer -> 1 consumer, and N -> M where the machine has the cores."""
import functools
import queue as stdlib_queue
import secrets
import threading
import time

import shmring
from shmring.bench.runner import IpcSocket, PairRow, Row, Timer, context, pin, report, run_processes, time_each

BATCH = 256


def nothing():
    pass


def scaled(count, payload):
    """Fewer messages for bigger payloads: every row takes a similar time."""
    return max(1000, int(count * min(1.0, 256 / payload)))


def queue_msg_size(payload):
    return max(1024, payload + 64)  # room for the pickle around the payload


class MessageRow(PairRow):
    """`endpoint(handle, side)` gives (call, cleanup) for side "put" or "get": by
    default the handle's methods named in `calls`. With `batch` set, put calls
    take a list and get calls return one."""

    scenario = "throughput"
    unit = "msgs"
    base_count = 1_000_000
    batch = None
    calls = ("put", "get")
    get_kwargs = {}

    def __init__(self, payload):
        self.payload = self.item_bytes = payload
        self.count = scaled(self.base_count, payload)

    def message(self):
        return b"x" * self.payload

    def endpoint(self, handle, side):
        put_name, get_name = self.calls
        if side == "put":
            return getattr(handle, put_name), nothing
        get = getattr(handle, get_name)
        # a partial costs ~40 ns a call: as much as a whole shmring get_bytes
        return (functools.partial(get, **self.get_kwargs) if self.get_kwargs else get), nothing

    def produce(self, handle, n):
        put, cleanup = self.endpoint(handle, "put")
        message = self.message()
        if self.batch:
            items = [message] * self.batch
            for _ in range(n // self.batch):
                put(items)
        else:
            for _ in range(n):
                put(message)
        cleanup()

    def consume(self, handle, n, ready):
        get, cleanup = self.endpoint(handle, "get")
        ready.set()
        if self.batch:
            timer, got, total = Timer(), 0, n // self.batch * self.batch
            while got < total:
                k = len(get())
                got += k
                timer.tick(k)
            result = timer.rate()
        else:
            result = time_each(get, n)
        cleanup()
        return result


# ---- shmring ----

class ShmringRow(MessageRow):
    def make(self):
        return shmring.Queue(msg_size=queue_msg_size(self.payload))

    def close(self, q):
        q.close()


class ShmringObjects(ShmringRow):
    name = "shmring put/get (pickled)"
    base_count = 2_000_000


class ShmringBytes(ShmringRow):
    name = "shmring put_bytes/get_bytes"
    base_count = 4_000_000
    calls = ("put_bytes", "get_bytes")


class ShmringGetBytes(ShmringBytes):
    """get_bytes one message a call, fed by put_many_bytes in batches, so that
    the consumer is what is measured (a producer slower than it would make the
    row measure wake-ups instead)."""
    name = "shmring put_many_bytes/get_bytes"
    put_kwargs = {}

    def produce(self, handle, n):
        put, items = handle.put_many_bytes, [self.message()] * BATCH
        for _ in range(n // BATCH):
            put(items, **self.put_kwargs)
        put(items[:n % BATCH], **self.put_kwargs)  # the consumer gets n, one at a time


class ShmringGetBytesDeadlines(ShmringGetBytes):
    """As ShmringGetBytes, every message with a deadline (an hour ahead: none
    expires), so every get checks one against the clock."""
    name = "shmring put_many_bytes(ttl=)/get_bytes"
    put_kwargs = {"ttl": 3600.0}


class ShmringBatch(ShmringRow):
    name = f"shmring put_many/get_many ({BATCH})"
    base_count = 4_000_000
    batch = BATCH
    calls = ("put_many", "get_many")
    get_kwargs = {"max_items": BATCH}


# ---- peers ----

class ThreadQueue(MessageRow):
    """Producer and consumer are two threads of one (fresh) process."""

    name = "queue.Queue (2 threads)"
    base_count = 300_000

    def run(self, count):
        return run_processes(self, None, (_thread_queue_main, (self, count)))


def _thread_queue_main(row, n, results):
    report(results, row, _thread_queue, row, n)


def _thread_queue(row, n):
    q = stdlib_queue.Queue()
    t = threading.Thread(target=row.produce, args=(q, n))
    t.start()
    result = row.consume(q, n, threading.Event())
    t.join()
    return result


class MpQueue(MessageRow):
    name = "multiprocessing.Queue"
    base_count = 300_000

    def make(self):
        return context().Queue()


class MpSimpleQueue(MessageRow):
    name = "multiprocessing.SimpleQueue"
    base_count = 300_000

    def make(self):
        return context().SimpleQueue()


class MpPipe(MessageRow):
    name = "multiprocessing.Pipe"
    base_count = 500_000

    def make(self):
        return context().Pipe(duplex=False)  # (receiving end, sending end)

    def endpoint(self, pipe, side):
        return (pipe[1].send if side == "put" else pipe[0].recv), nothing


class FasterFifo(MessageRow):
    name = "faster-fifo put/get"
    base_count = 300_000
    requires = "faster_fifo"

    def make(self):
        import faster_fifo
        return faster_fifo.Queue(max_size_bytes=max(200_000, 64 * self.payload))


class FasterFifoBatch(FasterFifo):
    name = f"faster-fifo put_many/get_many ({BATCH})"
    base_count = 600_000
    batch = BATCH
    calls = ("put_many", "get_many")
    get_kwargs = {"max_messages_to_get": BATCH}

    def make(self):
        import faster_fifo
        return faster_fifo.Queue(max_size_bytes=max(200_000, 4 * BATCH * (self.payload + 64)))


class Zeroq(MessageRow):
    """zeroq takes messages of exactly its element size, and unlinks a queue when
    the handle that made it goes: this process makes it and holds that handle (the
    children open it by name), so the segment goes even where a child was killed."""

    name = "zeroq put/get"
    base_count = 1_000_000
    requires = "zeroq"
    slots = shmring.DEFAULT_MAXSIZE  # messages held, as many as in shmring's queue
    made = {}  # segment name -> the handle that made it

    def make(self):
        import zeroq
        name = "bench-zeroq-" + secrets.token_hex(8)  # shmring-... names are shmring's own rings
        self.made[name] = zeroq.Queue(name, element_size=self.payload, capacity=self.slots)
        return name

    def close(self, name):
        self.made.pop(name).close()

    def endpoint(self, name, side):
        import zeroq
        q = zeroq.Queue(name, create=False)
        return (q.put if side == "put" else q.get), q.close


class ZmqRow(IpcSocket, MessageRow):
    requires = "zmq"


class ZmqPushPull(ZmqRow):
    name = "pyzmq PUSH/PULL ipc://"
    base_count = 1_000_000

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


class ZmqPubSub(ZmqRow):
    """PUB/SUB drops what a subscriber misses while joining, so the publisher
    sends probes until the subscriber says it got one, then the stream."""

    name = "pyzmq PUB/SUB ipc://"
    base_count = 1_000_000

    def make(self):
        return super().make(), context().Event()

    def close(self, handle):
        super().close(handle[0])

    def produce(self, handle, n):
        import zmq
        path, joined = handle
        ctx = zmq.Context()
        s = ctx.socket(zmq.PUB)
        s.setsockopt(zmq.SNDHWM, 0)
        s.bind("ipc://" + path)
        while not joined.is_set():
            s.send(b"P")
            time.sleep(0.001)
        message = b"D" + self.message()[1:]
        for _ in range(n):
            s.send(message)
        s.close(linger=-1)
        ctx.term()

    def consume(self, handle, n, ready):
        path, joined = handle
        return zmq_subscribe(path, n, ready, joined)


def zmq_subscribe(path, n, ready, joined):
    """A pyzmq SUB socket with an unlimited high-water mark on ipc://path: ready once
    connected, joined once it got a probe ("P"); then n messages, timed from the first."""
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, 0)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect("ipc://" + path)
    if ready is not None:
        ready.set()
    while s.recv() == b"P":
        joined.set()
    t0 = time.perf_counter()  # the first data message starts the clock, as in time_each
    for _ in range(n - 1):
        s.recv()
    result = {"rate": (n - 1) / (time.perf_counter() - t0)}
    s.close(linger=0)
    ctx.term()
    return result


ROW_TYPES = [ShmringObjects, ShmringBytes, ShmringGetBytes, ShmringGetBytesDeadlines, ShmringBatch, ThreadQueue, MpQueue, MpSimpleQueue, MpPipe,
             FasterFifo, FasterFifoBatch, Zeroq, ZmqPushPull, ZmqPubSub]
BASELINE = MpQueue.name


def rows(payloads):
    return [row_type(p) for p in payloads for row_type in ROW_TYPES]


# ---- N producers -> M consumers ----

class ManyToMany(Row):
    """N producer processes, M consumer processes, one shared queue. Measured from
    the first message any consumer got to the last one any consumer got."""

    scenario = "n-to-m"
    unit = "msgs"
    stop = None              # what tells a consumer to stop
    batch = None

    def __init__(self, payload, producers, consumers):
        self.payload = self.item_bytes = payload
        self.count = scaled(self.base_count, payload)
        self.producers, self.consumers = producers, consumers
        self.shape = f"{producers}->{consumers}"
        self.min_cpus = producers + consumers

    def label(self):
        return f"{self.name} {self.shape} [{self.payload} B]"

    def run(self, count):
        ctx = context()
        q = self.make()
        results = ctx.Queue()
        each = count // self.producers
        cons = [ctx.Process(target=_nm_consumer, args=(self, q, results, self.producers + j))
                for j in range(self.consumers)]
        prods = [ctx.Process(target=_nm_producer, args=(self, q, each, i)) for i in range(self.producers)]
        try:
            for p in cons + prods:
                p.start()
            for p in prods:
                p.join(600)
            self.put(q, [self.stop] * self.consumers)
            reports = [results.get(timeout=600) for _ in cons]
            for p in cons:
                p.join(600)
        finally:
            for p in cons + prods:
                if p.is_alive():
                    p.kill()
            self.close(q)
        first = min(r[0] for r in reports if r[2])
        last = max(r[1] for r in reports if r[2])
        return {"rate": sum(r[2] for r in reports) / (last - first)}

    def close(self, q):
        pass


def _nm_producer(row, q, n, cpu):
    pin(cpu)
    message = b"x" * row.payload
    if row.batch:
        for _ in range(n // row.batch):
            row.put(q, [message] * row.batch)
    else:
        for _ in range(n):
            row.put(q, [message])


def _nm_consumer(row, q, results, cpu):
    pin(cpu)
    first = last = None
    got = 0
    while True:
        batch = row.get(q)
        now = time.perf_counter()
        data = [m for m in batch if m != row.stop]
        if data:
            first = first if first is not None else now
            last, got = now, got + len(data)
        if len(data) < len(batch):
            extra = len(batch) - len(data) - 1  # took another consumer's stop too: hand it back
            if extra:
                row.put(q, [row.stop] * extra)
            break
    results.put((first, last, got))


class NMShmringBytes(ManyToMany):
    name = "shmring put_bytes/get_bytes"
    base_count = 4_000_000
    stop = b""

    def make(self):
        return shmring.Queue(msg_size=queue_msg_size(self.payload))

    def close(self, q):
        q.close()

    def put(self, q, items):
        for item in items:
            q.put_bytes(item)

    def get(self, q):
        return [q.get_bytes()]


class NMShmringObjects(NMShmringBytes):
    name = "shmring put/get (pickled)"
    base_count = 2_000_000
    stop = None

    def put(self, q, items):
        for item in items:
            q.put(item)

    def get(self, q):
        return [q.get()]


class NMShmringBatch(NMShmringObjects):
    name = f"shmring put_many/get_many ({BATCH})"
    base_count = 4_000_000
    batch = BATCH

    def put(self, q, items):
        q.put_many(items)

    def get(self, q):
        return q.get_many(BATCH)


class NMMpQueue(ManyToMany):
    name = "multiprocessing.Queue"
    base_count = 300_000

    def make(self):
        return context().Queue()

    def put(self, q, items):
        for item in items:
            q.put(item)

    def get(self, q):
        return [q.get()]


class NMFasterFifo(NMMpQueue):
    name = "faster-fifo put/get"
    requires = "faster_fifo"

    def make(self):
        import faster_fifo
        return faster_fifo.Queue(max_size_bytes=max(200_000, 64 * self.payload))


NM_ROW_TYPES = [NMShmringObjects, NMShmringBytes, NMShmringBatch, NMMpQueue, NMFasterFifo]
NM_BASELINE = NMMpQueue.name


NM_SHAPES = [(2, 2), (4, 4), (8, 8)]  # each runs where the machine has a CPU per process


def nm_rows(payloads):
    return [row_type(p, n, m) for n, m in NM_SHAPES for p in payloads for row_type in NM_ROW_TYPES]
