"""Round-trip latency rows: one process sends a 64-byte message, another sends it
straight back; the first measures each round trip. Median and p99 in microseconds."""
import statistics
import time

import shmring
from shmring.bench.runner import IpcSocket, Row, context, pin, report, run_processes

PAYLOAD = 64
WARMUP = 200


class PingPong(Row):
    """`make()` makes what both sides need; `ends(handle, side)` gives
    (send, recv, cleanup) for side "ping" or "pong"."""

    scenario = "latency"
    unit = "round trips"
    payload = PAYLOAD
    count = 20_000

    def make(self):
        raise NotImplementedError

    def close(self, handle):
        pass

    def run(self, count):
        handle = self.make()
        rtts = run_processes(self, handle, (_ping_main, (self, handle, count)),
                             (_pong_main, (self, handle, count + WARMUP)))
        rtts.sort()
        return {"median_us": statistics.median(rtts) / 1e3, "p99_us": rtts[int(len(rtts) * 0.99)] / 1e3}


def _ping_main(row, handle, n, results):
    pin(0)
    report(results, row, _ping, row, handle, n)


def _ping(row, handle, n):
    send, recv, cleanup = row.ends(handle, "ping")
    message = b"x" * PAYLOAD
    rtts = []
    clock = time.perf_counter_ns
    for i in range(n + WARMUP):
        t0 = clock()
        send(message)
        recv()
        if i >= WARMUP:
            rtts.append(clock() - t0)
    cleanup()
    return rtts


def _pong_main(row, handle, n):
    pin(1)
    send, recv, cleanup = row.ends(handle, "pong")
    for _ in range(n):
        send(recv())
    cleanup()


def nothing():
    pass


class QueuePair(PingPong):
    """Two queues of a kind: one each way."""

    def queue(self):
        raise NotImplementedError

    def make(self):
        return self.queue(), self.queue()

    def ends(self, qs, side):
        there, back = qs if side == "ping" else qs[::-1]
        put, get = self.calls
        return getattr(there, put), getattr(back, get), nothing


class ShmringObjects(QueuePair):
    name = "shmring put/get (pickled)"
    calls = ("put", "get")

    def queue(self):
        return shmring.Queue(16)

    def close(self, qs):
        for q in qs:
            q.close()


class ShmringBytes(ShmringObjects):
    name = "shmring put_bytes/get_bytes"
    calls = ("put_bytes", "get_bytes")


class MpQueue(QueuePair):
    name = "multiprocessing.Queue"
    calls = ("put", "get")
    count = 5_000

    def queue(self):
        return context().Queue()


class MpSimpleQueue(MpQueue):
    name = "multiprocessing.SimpleQueue"

    def queue(self):
        return context().SimpleQueue()


class MpPipe(PingPong):
    name = "multiprocessing.Pipe"
    count = 10_000

    def make(self):
        return context().Pipe()  # duplex

    def ends(self, pipe, side):
        conn = pipe[0] if side == "ping" else pipe[1]
        return conn.send, conn.recv, nothing


class FasterFifo(MpQueue):
    name = "faster-fifo put/get"
    requires = "faster_fifo"

    def queue(self):
        import faster_fifo
        return faster_fifo.Queue()


class ZmqPair(IpcSocket, PingPong):
    name = "pyzmq PAIR ipc://"
    requires = "zmq"
    count = 10_000

    def ends(self, path, side):
        import zmq
        ctx = zmq.Context()
        s = ctx.socket(zmq.PAIR)
        (s.bind if side == "pong" else s.connect)("ipc://" + path)

        def cleanup():
            s.close(linger=0)
            ctx.term()
        return s.send, s.recv, cleanup


ROWS = [ShmringObjects(), ShmringBytes(), MpQueue(), MpSimpleQueue(), MpPipe(), FasterFifo(), ZmqPair()]
BASELINE = MpQueue.name
