"""Recovery rows: a producer process is SIGKILLed inside its put of an 8 MiB
message (a copy that takes a while, so the kill lands in it), and a fresh producer
puts a marker; the row measures the seconds from the kill until the marker reaches
the consumer, which has been getting the victim's messages and keeps waiting in
get. A queue that wedges gets a bounded wait, then its processes are killed.

Times are time.monotonic() in different processes: one system-wide clock
(CLOCK_MONOTONIC on Linux, mach_absolute_time on macOS)."""
import _multiprocessing
import math
import queue
import random
import secrets
import shutil
import tempfile
import time

import shmring
from shmring.bench import throughput
from shmring.bench.runner import _consumer_main, context, pin, run_processes

MESSAGE = 8 << 20
MARKER = b"M"        # the first byte of the fresh producer's message (the victim's are b"x"...)
KILL_AT = 3          # the victim's put that is killed: the consumer got the ones before it
PACE = 0.02          # seconds between the victim's puts: the consumer keeps up, waiting in get
MIN_WAIT = 0.5       # seconds: the shortest wait for the marker (shmring's recover_after is 0.1 s)
START = 60           # seconds the processes get to open the queue and start putting


HEAD = ("row", "to recovery (median)", "min - max", "recovered", "killed inside put")


def seconds(value, wait):
    """A time to recovery as the table shows it: in seconds, or never within the wait."""
    return f"{value:.3f} s" if math.isfinite(value) else f"never within {wait:g} s"


def cells(metrics):
    """The table's cells after the label, from a row's summarized metrics."""
    rec, n = metrics["recovery_s"], len(metrics["recovery_s"]["samples"])

    def short(value):
        return f"{value:.3f}" if math.isfinite(value) else "never"
    return (seconds(rec["median"], metrics["wait_s"]["max"]), f"{short(rec['min'])} - {short(rec['max'])}",
            f"{sum(metrics['recovered']['samples']):.0f}/{n}", f"{sum(metrics['in_put']['samples']):.0f}/{n}")


class Recovery(throughput.MessageRow):
    """The kill and the marker, around a peer's put and get (MessageRow.endpoint)."""

    scenario = "recovery"
    unit = "s"
    # milliseconds to wait for the marker after a kill (scaled by --quick / --scale): past
    # cloudtoid-interprocess's 10 s, after which it lets a consumer past a dead producer
    count = 15_000
    slots = 4        # messages the queue holds

    def __init__(self):
        self.payload = MESSAGE  # and no item_bytes: no bytes/s here

    def label(self):
        return f"{self.name} [{MESSAGE >> 20} MiB]"

    def run(self, count):
        wait = max(MIN_WAIT, count / 1000)
        ctx = context()
        ready, armed, go = ctx.Event(), ctx.Event(), ctx.Event()
        heard, said = ctx.Pipe(duplex=False)
        kill = {}
        handle = self.make()
        try:
            arrived = run_processes(self, handle, (_consumer_main, (self, handle, None, ready)),
                                    (_victim_main, (self, handle, ready, said)),
                                    (_fresh_main, (self, handle, ready, armed, go)),
                                    drive=lambda procs: kill.update(kill_inside_put(procs[1], heard, armed, go)),
                                    wait=wait)
        except queue.Empty:  # the marker did not come within the wait
            arrived = math.inf
        return {"recovery_s": arrived - kill["at"], "recovered": float(math.isfinite(arrived)),
                "in_put": kill["in_put"], "kill_after_ms": kill["after_ms"], "wait_s": wait}

    def consume(self, handle, n, ready):
        """Get until the marker (n: unused); when it came."""
        get, cleanup = self.endpoint(handle, "get")
        ready.set()
        while get()[:1] != MARKER:
            pass
        arrived = time.monotonic()
        cleanup()
        return arrived


def kill_inside_put(victim, heard, armed, go):
    """Once the victim announces its KILL_AT-th put, kill it at a random moment in
    the first half of the time its quickest earlier put took (a put can be quicker
    than those; counted from the victim's clock reading, as this process may hear
    of the put late), then tell the fresh producer to put the marker. {"at": when,
    "after_ms": how long after the put began, "in_put": 1.0 where the victim died
    inside a put call}."""
    if not armed.wait(START):
        raise RuntimeError("the fresh producer did not open the queue")
    took = []  # how long the victim's puts took
    while True:
        if not heard.poll(START):
            raise RuntimeError("the victim stopped putting")
        what, value = heard.recv()
        if what == "took":
            took.append(value)
        elif len(took) == KILL_AT - 1:
            began = value
            break
    kill_at = began + random.uniform(0, min(took) / 2)
    # a sleep, not a spin: on 2 CPUs a spin here can hold the victim's CPU
    time.sleep(max(0.0, kill_at - time.monotonic()))
    at = time.monotonic()
    victim.kill()
    go.set()
    victim.join(START)
    in_put = True  # unless it said more: all it said is in the pipe now
    while heard.poll(0):
        in_put = heard.recv()[0] == "putting"
    return {"at": at, "after_ms": (at - began) * 1e3, "in_put": float(in_put)}


def _victim_main(row, handle, ready, said):
    pin(1)
    put, _ = row.endpoint(handle, "put")
    message = row.message()
    ready.wait(START)
    while True:  # until killed
        t0 = time.monotonic()
        said.send(("putting", t0))
        put(message)
        said.send(("took", time.monotonic() - t0))
        time.sleep(PACE)


def _fresh_main(row, handle, ready, armed, go):
    pin(2)
    ready.wait(START)
    put, cleanup = row.endpoint(handle, "put")
    marker = MARKER + row.message()[len(MARKER):]  # as long as the others: zeroq takes one size only
    armed.set()
    go.wait(START)
    put(marker)
    cleanup()


class ShmringBytes(Recovery, throughput.ShmringBytes):
    # recover_after: the default, 0.1 s
    def make(self):
        return shmring.Queue(self.slots, msg_size=throughput.queue_msg_size(self.payload))


class MpQueue(Recovery, throughput.MpQueue):
    pass


class FasterFifo(Recovery, throughput.FasterFifo):
    get_kwargs = {"timeout": 1e9}  # its default, 10 s, would end the wait with an exception

    def make(self):
        import faster_fifo
        return faster_fifo.Queue(max_size_bytes=self.slots * throughput.queue_msg_size(self.payload))


class Zeroq(Recovery, throughput.Zeroq):
    pass


class Cloudtoid(Recovery):
    """A cloudtoid queue is files under a directory (ours, removed after) and a
    named semaphore; send never blocks."""

    name = "cloudtoid-interprocess try_send/receive"
    requires = "cloudtoid_interprocess"

    def capacity(self):
        return self.slots * throughput.queue_msg_size(self.payload)

    def make(self):
        return "bench-cloudtoid-" + secrets.token_hex(8), tempfile.mkdtemp(prefix="shmring-bench-")

    def close(self, handle):
        name, path = handle
        shutil.rmtree(path, ignore_errors=True)
        try:  # its last endpoint removes the semaphore, unless it was killed
            _multiprocessing.sem_unlink(f"/ct3ip.{name}")
        except FileNotFoundError:
            pass

    def endpoint(self, handle, side):
        import cloudtoid_interprocess
        name, path = handle
        if side == "get":
            sub = cloudtoid_interprocess.Subscriber(name, self.capacity(), path)
            return sub.receive, sub.close  # receive() waits as long as it takes
        pub = cloudtoid_interprocess.Publisher(name, self.capacity(), path)

        def put(message):
            while not pub.try_send(message):  # full: try again
                pass
        return put, pub.close


ROWS = [ShmringBytes(), Zeroq(), Cloudtoid(), FasterFifo(), MpQueue()]
