"""Record rows: 1 producer process -> 1 consumer process, a stream of fixed-size
records in batches, shmring (copying and zero-copy) beside a bare C ceiling and
the ways people move numpy arrays between processes today."""
import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import shmring
from shmring.bench.runner import IpcSocket, PairRow, Row, Timer, context, cpus

BATCH = 4096
RING = 65536  # records held by the shmring queues; the C ceiling gets the same bytes
# The bare ring, like every two-process row, slows down while the host keeps the two
# CPUs apart (bench/c_ceiling.c, bench/placement.c): a repetition of the ceiling is
# the best of this many runs, so that it stays a ceiling.
CEILING_TRIES = 3


@functools.lru_cache(maxsize=None)
def tick_dtype():
    import numpy as np
    # 24 bytes: a typical market-data record
    return np.dtype([("ts", "<i8"), ("price", "<f8"), ("qty", "<i4"), ("side", "u1"), ("flags", "u1", (3,))])


def dtype_of(name):
    import numpy as np
    return tick_dtype() if name == "tick" else np.dtype(name)


def ceiling_source():
    """bench/c_ceiling.c: shipped inside the package, or found in a source checkout."""
    for path in (Path(__file__).with_name("c_ceiling.c"),
                 Path(__file__).resolve().parents[3] / "bench" / "c_ceiling.c"):
        if path.exists():
            return path
    return None


@functools.lru_cache(maxsize=None)
def ceiling_binary():
    cc = os.environ.get("CC", "cc")
    source = ceiling_source()
    if source is None or shutil.which(cc) is None:
        return None
    build = tempfile.mkdtemp(prefix="shmring-ceiling-")
    atexit.register(shutil.rmtree, build, ignore_errors=True)
    exe = Path(build) / "c_ceiling"
    done = subprocess.run([cc, "-O2", "-std=c11", str(source), "-o", str(exe)], capture_output=True)
    return exe if done.returncode == 0 else None


class RecordsOf:
    """A records row: `count` records of the dtype named dtype_name per repetition."""

    scenario = "records"
    unit = "records"

    def __init__(self, dtype_name, count):
        self.dtype_name, self.count = dtype_name, count
        self.item_bytes = dtype_of(dtype_name).itemsize


class CCeiling(RecordsOf, Row):
    def __init__(self, dtype_name, count):
        super().__init__(dtype_name, count)
        self.name = f"C ceiling: SPSC byte ring, {self.item_bytes}-byte records"

    def missing(self):
        if ceiling_source() is None:
            return "bench/c_ceiling.c not found"
        if ceiling_binary() is None:
            return "no C compiler to build bench/c_ceiling.c"
        return None

    def run(self, n):
        size = self.item_bytes
        usable = cpus()  # the same CPUs as the Python rows' consumer and producer
        command = [str(ceiling_binary()), str(RING * size), str(BATCH * size), str(max(n, 4 * BATCH) * size),
                   str(usable[0]), str(usable[1 % len(usable)])]
        best = max(float(subprocess.run(command, capture_output=True, text=True, timeout=600, check=True).stdout)
                   for _ in range(CEILING_TRIES))
        return {"rate": best / size}


class RecordRow(RecordsOf, PairRow):
    def chunk(self):
        import numpy as np
        return np.zeros(BATCH, dtype_of(self.dtype_name))

    def missing(self):
        try:
            import numpy  # noqa: F401
        except ImportError:
            return "numpy not installed"
        return super().missing()


class ShmringRecords(RecordRow):
    """put_array on one side; get_array (new arrays / out=) or view on the other."""

    def __init__(self, dtype_name, count, read):
        super().__init__(dtype_name, count)
        self.read = read
        how = {"new": "get_array", "out": "get_array(out=)", "view": "view (zero-copy)"}[read]
        self.name = f"shmring put_array / {how}, {self.item_bytes}-byte records"

    def make(self):
        return shmring.Queue(RING, dtype=dtype_of(self.dtype_name))

    def close(self, q):
        q.close()

    def produce(self, q, n):
        chunk = self.chunk()
        for _ in range(n // BATCH):
            q.put_array(chunk)

    def consume(self, q, n, ready):
        ready.set()
        timer, got, total = Timer(), 0, n // BATCH * BATCH
        out = self.chunk()
        while got < total:
            if self.read == "new":
                k = len(q.get_array(BATCH))
            elif self.read == "out":
                k = q.get_array(out=out)
            else:
                with q.view(BATCH) as arr:
                    k = len(arr)
            got += k
            timer.tick(k)
        return timer.rate()


class ChunkPeer(RecordRow):
    """A peer moving the same records as numpy arrays of BATCH records."""

    def consume(self, handle, n, ready):
        get, cleanup = self.receiver(handle)
        ready.set()
        timer = Timer()
        for _ in range(n // BATCH):
            timer.tick(len(get()))
        cleanup()
        return timer.rate()


class MpQueueChunks(ChunkPeer):
    def __init__(self, dtype_name, count):
        super().__init__(dtype_name, count)
        self.name = f"multiprocessing.Queue, {BATCH}-record arrays"

    def make(self):
        return context().Queue(64)

    def produce(self, q, n):
        chunk = self.chunk()
        for _ in range(n // BATCH):
            q.put(chunk)

    def receiver(self, q):
        return q.get, lambda: None


class FasterFifoChunks(ChunkPeer):
    requires = "faster_fifo"

    def __init__(self, dtype_name, count):
        super().__init__(dtype_name, count)
        self.name = f"faster-fifo, {BATCH}-record arrays"

    def make(self):
        import faster_fifo
        return faster_fifo.Queue(max_size_bytes=16 * BATCH * self.item_bytes + 4096)

    produce = MpQueueChunks.produce

    def receiver(self, q):
        return q.get, lambda: None


class ZmqChunks(IpcSocket, ChunkPeer):
    requires = "zmq"

    def __init__(self, dtype_name, count):
        super().__init__(dtype_name, count)
        self.name = f"pyzmq PUSH/PULL send(arr, copy=False), {BATCH}-record arrays"

    def produce(self, path, n):
        import zmq
        ctx = zmq.Context()
        s = ctx.socket(zmq.PUSH)
        s.connect("ipc://" + path)
        chunk = self.chunk()
        for _ in range(n // BATCH):
            s.send(chunk, copy=False)
        s.close(linger=-1)
        ctx.term()

    def receiver(self, path):
        import numpy as np
        import zmq
        ctx = zmq.Context()
        s = ctx.socket(zmq.PULL)
        s.bind("ipc://" + path)
        dt = dtype_of(self.dtype_name)

        def get():
            return np.frombuffer(s.recv(copy=False).buffer, dt)

        def cleanup():
            s.close(linger=0)
            ctx.term()
        return get, cleanup


# 24-byte records unless said otherwise; counts are per repetition
CEILING = CCeiling("tick", 200_000_000)
GET_ARRAY = ShmringRecords("tick", 50_000_000, "new")
GET_ARRAY_OUT = ShmringRecords("tick", 50_000_000, "out")
VIEW = ShmringRecords("tick", 50_000_000, "view")
GET_ARRAY_8 = ShmringRecords("<f8", 100_000_000, "out")
PEERS = [MpQueueChunks("tick", 5_000_000), FasterFifoChunks("tick", 10_000_000), ZmqChunks("tick", 10_000_000)]
ROWS = [CEILING, GET_ARRAY, GET_ARRAY_OUT, VIEW, GET_ARRAY_8] + PEERS
BASELINE = CEILING.name


def rows():
    return ROWS
