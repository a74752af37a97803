"""How every benchmark row is run and reported.

A row moves a stream from one producer process to one consumer process and is
measured at the consumer, from the end of its first batch to the end of its
last. Each repetition runs in fresh processes, and repetitions are interleaved
across rows, so that a noisy moment of the machine hits every row alike.
Results are medians with min and max; ratios are computed from the medians of
the same run.
"""
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time

import shmring


def context():
    """fork where there is one (cheap fresh processes), else spawn."""
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


class Row:
    """One way of moving a stream. Subclasses say how to make the shared handle
    and what each side does; the runner does the processes and the clock."""

    name = ""
    unit = "msgs"            # what rate() counts
    count = 1_000_000        # units per repetition (scaled by --quick)
    requires = None          # module that must import, else the row is skipped
    item_bytes = None        # bytes per unit, to report bytes/s

    def missing(self):
        """A one-line reason to skip this row here, or None."""
        if self.requires is None:
            return None
        try:
            __import__(self.requires)
        except ImportError:
            return f"{self.requires} not installed (pip install 'shmring[bench]')"
        return None

    def make(self):
        """The shared handle, made in the parent and passed to both sides."""
        return None

    def close(self, handle):
        pass

    def produce(self, handle, n):
        raise NotImplementedError

    def consume(self, handle, n, ready):
        """Consume n units (ready.set() once able to); return units/s."""
        raise NotImplementedError

    def run(self, n):
        """One repetition in fresh processes; returns units/s at the consumer."""
        ctx = context()
        handle = self.make()
        results, ready = ctx.Queue(), ctx.Event()
        consumer = ctx.Process(target=_consumer_main, args=(self, handle, n, ready, results))
        producer = ctx.Process(target=_producer_main, args=(self, handle, n, ready))
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
        if isinstance(rate, BaseException):
            raise rate
        return rate


def _consumer_main(row, handle, n, ready, results):
    try:
        results.put(row.consume(handle, n, ready))
    except BaseException as e:  # report it instead of leaving the parent waiting
        results.put(RuntimeError(f"{row.name}: {e!r}"))


def _producer_main(row, handle, n, ready):
    ready.wait(60)
    row.produce(handle, n)


class Timer:
    """Consumer-side clock: started after the first batch, stopped after the last."""

    def __init__(self):
        self.t0 = None
        self.counted = 0

    def tick(self, units):
        if self.t0 is None:
            self.t0 = time.perf_counter()  # the first batch only starts the clock
        else:
            self.counted += units

    def rate(self):
        return self.counted / (time.perf_counter() - self.t0) if self.counted else float("nan")


def machine_header():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"CPU: {cpu}, {os.cpu_count()} cores | OS: {platform.system()} {platform.release()} | "
            f"Python {platform.python_version()} | shmring {shmring.__version__}")


def measure(rows, repeat, scale, progress=sys.stderr):
    """Run every row `repeat` times, interleaved; {row name: [units/s, ...]}."""
    rates = {row.name: [] for row in rows}
    for rep in range(repeat):
        for row in rows:
            if progress:
                print(f"\r[{rep + 1}/{repeat}] {row.name:<50}", end="", file=progress, flush=True)
            rates[row.name].append(row.run(max(1000, int(row.count * scale))))
    if progress:
        print("\r" + " " * 70 + "\r", end="", file=progress)
    return rates


def available(rows, out=sys.stdout):
    """The rows that can run here; a one-line note for each skipped one."""
    kept = []
    for row in rows:
        why = row.missing()
        if why:
            print(f"skipped: {row.name}: {why}", file=out)
        else:
            kept.append(row)
    return kept


def table(rows, rates, baseline, out=sys.stdout):
    """Medians with min-max, units/s and bytes/s where known, ratio to the baseline row."""
    med = {name: statistics.median(r) for name, r in rates.items()}
    base = med.get(baseline)
    print(f"| {'row':<46} | {'per second (median)':>22} | {'min - max':>27} | {'GB/s':>6} | "
          f"{'ratio':>7} |", file=out)
    print(f"|{'-' * 48}|{'-' * 23}:|{'-' * 28}:|{'-' * 7}:|{'-' * 8}:|", file=out)
    for row in rows:
        r = rates[row.name]
        gbs = f"{med[row.name] * row.item_bytes / 1e9:.2f}" if row.item_bytes else "-"
        ratio = f"{med[row.name] / base:.1f}x" if base else "n/a"
        per_s = f"{med[row.name]:,.0f} {row.unit}"
        print(f"| {row.name:<46} | {per_s:>22} | {f'{min(r):,.0f} - {max(r):,.0f}':>27} | {gbs:>6} | "
              f"{ratio:>7} |", file=out)
    return med


def check_targets(med, targets, out=sys.stdout):
    """Each target is (label, row, other row or None, needed ratio, unit scale)."""
    print("Targets (from the medians of this run):", file=out)
    for label, row, other, need, describe in targets:
        if row not in med or (other is not None and other not in med):
            print(f"  {label}: skipped (a row did not run)", file=out)
            continue
        value = med[row] / med[other] if other is not None else med[row]
        verdict = "ok" if value >= need else "MISSED"
        print(f"  {label}: {describe(value)} (target >= {describe(need)}) {verdict}", file=out)
