"""How every benchmark row is run, measured and reported.

A row moves a stream between processes (producer -> consumer, or back and forth
for latency) and is measured where the data arrives. Each repetition runs in
fresh processes pinned to distinct CPUs where the OS allows, and repetitions are
interleaved across rows, so that a noisy moment of the machine hits every row
alike. Results are medians with min and max; a ratio is the median over
repetitions of the two rows' ratio within each round (see command.paired_ratio).
"""
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time

import shmring


def context():
    """fork on Linux (cheap fresh processes); spawn elsewhere: on macOS a forked
    child of a process that loaded system frameworks (numpy, matplotlib) may crash."""
    return mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def cpus():
    """CPUs this process may run on (all of them where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def pin(index):
    """Pin the calling process to the index-th usable CPU, where the OS supports it."""
    if hasattr(os, "sched_setaffinity"):
        usable = cpus()
        os.sched_setaffinity(0, {usable[index % len(usable)]})


class Row:
    """One way of moving data, measured one way. Subclasses define run(count)
    -> {metric: value}; most use run_pair() with produce() and consume()."""

    scenario = ""            # which table the row belongs to
    name = ""
    unit = "msgs"            # what the rate counts
    count = 1_000_000        # units per repetition (scaled by --quick / --scale)
    requires = None          # module that must import, else the row is skipped
    extra = "bench"          # the extra of shmring that installs it
    payload = None           # bytes per message, if the row has one
    item_bytes = None        # bytes per unit, to report bytes/s
    min_cpus = 1             # the row needs this many CPUs, else it is skipped
    shape = None             # e.g. "4->4": compared only with rows of the same shape

    def label(self):
        return self.name if self.payload is None else f"{self.name} [{self.payload} B]"

    def missing(self):
        """A one-line reason to skip this row here, or None."""
        if len(cpus()) < self.min_cpus:
            return f"needs {self.min_cpus} CPUs, this machine lets us use {len(cpus())}"
        if self.requires is not None:
            try:
                __import__(self.requires)
            except ImportError:
                return f"{self.requires} not installed (pip install 'shmring[{self.extra}]')"
        return None

    def run(self, count):
        raise NotImplementedError


class PairRow(Row):
    """A producer process and a consumer process sharing a handle made here."""

    def make(self):
        return None

    def close(self, handle):
        pass

    def produce(self, handle, n):
        raise NotImplementedError

    def consume(self, handle, n, ready):
        """Consume n units (ready.set() once able to); return {metric: value}."""
        raise NotImplementedError

    def run(self, count):
        handle = self.make()
        ready = context().Event()
        return run_processes(self, handle, (_consumer_main, (self, handle, count, ready)),
                             (_producer_main, (self, handle, count, ready)))


def run_processes(row, handle, reporter, *partners, drive=None, wait=600):
    """Run fresh processes, each (target, args): the reporter's target gets a
    results queue as its last argument and puts one result or exception on it.
    drive(processes), if given, runs here once they have all started. The result
    is awaited `wait` seconds (then queue.Empty is raised), each process as long.
    Whatever happens, leftovers are killed and row.close(handle) is called."""
    ctx = context()
    results = ctx.Queue()
    procs = [ctx.Process(target=reporter[0], args=(*reporter[1], results)),
             *(ctx.Process(target=target, args=args) for target, args in partners)]
    try:
        for p in procs:
            p.start()
        if drive is not None:
            drive(procs)
        result = results.get(timeout=wait)
        for p in procs:
            p.join(wait)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        row.close(handle)
    if isinstance(result, BaseException):
        raise result
    return result


def report(results, row, work, *args):
    """Put work(*args), or the exception it raised, on results: never leave the parent waiting."""
    try:
        results.put(work(*args))
    except BaseException as e:
        results.put(RuntimeError(f"{row.label()}: {e!r}"))


def _consumer_main(row, handle, n, ready, results):
    pin(0)
    report(results, row, row.consume, handle, n, ready)


def _producer_main(row, handle, n, ready):
    pin(1)
    ready.wait(60)
    row.produce(handle, n)


class IpcSocket:
    """Rows whose handle is a fresh ipc:// socket path in a private directory."""

    def make(self):
        return os.path.join(tempfile.mkdtemp(prefix="shmring-bench-"), "sock")

    def close(self, path):
        for remove, p in ((os.remove, path), (os.rmdir, os.path.dirname(path))):
            try:
                remove(p)
            except OSError:
                pass


class Timer:
    """Consumer-side clock for batches: started by the first batch, stopped after the last."""

    def __init__(self):
        self.t0 = None
        self.counted = 0

    def tick(self, units):
        if self.t0 is None:
            self.t0 = time.perf_counter()  # the first batch only starts the clock
        else:
            self.counted += units

    def rate(self):
        return {"rate": self.counted / (time.perf_counter() - self.t0) if self.counted else float("nan")}


def time_each(get, n):
    """Call get() n times; the rate of the last n - 1, timed from the first.
    Nothing else runs in the loop: a per-call timer would slow the fast rows most."""
    get()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        get()
    return {"rate": (n - 1) / (time.perf_counter() - t0) if n > 1 else float("nan")}


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cpus": len(cpus()),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "shmring": shmring.__version__}


def header(info):
    return (f"CPU: {info['cpu']}, {info['cores']} cores ({info['usable_cpus']} usable) | OS: {info['os']} | "
            f"Python {info['python']} | shmring {info['shmring']}")


def measure(rows, repeat, scale, progress=sys.stderr):
    """Run every row `repeat` times, interleaved; {row: [{metric: value}, ...]}."""
    samples = {row: [] for row in rows}
    # on a terminal one line rewritten in place; in a log or a pipe, a line per row
    in_place = bool(progress) and progress.isatty()
    for rep in range(repeat):
        for row in rows:
            if in_place:
                print(f"\r[{rep + 1}/{repeat}] {row.label()[:70]:<70}", end="", file=progress, flush=True)
            elif progress:
                print(f"[{rep + 1}/{repeat}] {row.label()}", file=progress, flush=True)
            samples[row].append(row.run(max(100, int(row.count * scale))))
    if in_place:
        print("\r" + " " * 80 + "\r", end="", file=progress, flush=True)
    return samples


def summarize(samples):
    """{metric: {"median", "min", "max", "samples"}} from a row's repetitions."""
    out = {}
    for metric in samples[0]:
        values = [s[metric] for s in samples]
        out[metric] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                       "samples": values}
    return out
