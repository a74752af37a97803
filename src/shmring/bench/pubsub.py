"""Publish / subscribe rows (`shmring bench --only pubsub`): shmring.Topic beside
the Queue it is built like and pyzmq PUB/SUB over ipc://, 64-byte payloads.

- 1 publisher -> 1 subscriber, publish_bytes / recv_bytes, beside Queue.put_bytes /
  get_bytes (the same processes, pinned the same way);
- 1 -> 2 subscribers, policy block, the rate at one subscriber (each checks that it
  got every message), beside pyzmq PUB/SUB with unlimited high-water marks and,
  where they install, msgq-ipc and iceoryx2 (pubsub_peers);
- a 1-of-10 prefix filter on a drained topic (everything published first), in C,
  beside a subscriber to everything that filters in Python: positions read per second;
- policy overwrite, the publisher's rate alone (measured at the publisher): with a
  stalled subscriber beside none, and with 8 subscribers beside one (attached and
  idle in the publisher's process: an overwrite publisher never looks at them, and on
  a 2-core machine readers in processes of their own would measure the scheduler).
"""
import time

import shmring
from shmring.bench import pubsub_peers
from shmring.bench.runner import PairRow, Row, context, pin, report, run_processes, time_each
from shmring.bench.throughput import ShmringBytes, queue_msg_size, zmq_subscribe

PAYLOAD = 64
CAPACITY = 8192
KEYS = [b"k%d." % i for i in range(10)]  # the filter rows' ten topics


class QueueBytes(ShmringBytes):
    scenario = "pubsub"
    name = "shmring Queue put_bytes/get_bytes 1->1"


class TopicRow(PairRow):
    scenario = "pubsub"
    unit = "msgs"
    policy = "block"

    def __init__(self, payload=PAYLOAD):
        self.payload = self.item_bytes = payload

    def make(self):
        return shmring.Topic(CAPACITY, queue_msg_size(self.payload), policy=self.policy, max_topic_len=8)

    def close(self, topic):
        topic.close()


class TopicBytes(TopicRow):
    name = "shmring Topic publish_bytes/recv_bytes 1->1"
    count = 4_000_000

    def produce(self, topic, n):
        publish, message = topic.publisher().publish_bytes, b"x" * self.payload
        for _ in range(n):
            publish(b"k", message)

    def consume(self, topic, n, ready):
        sub = topic.subscribe()
        ready.set()
        return time_each(sub.recv_bytes, n)


def _fanout_subscriber(row, topic, n, ready, results=None):
    """A subscriber of the 1 -> 2 rows: checks it got all n, reports its rate if asked."""
    pin(0 if results is not None else 2)
    work = row.subscriber
    if results is None:
        work(topic, n, ready)
    else:
        report(results, row, work, topic, n, ready)


def _fanout_publisher(row, topic, n, readies):
    pin(1)
    for ready in readies:
        ready.wait(60)
    row.publisher(topic, n)


class Fanout(TopicBytes):
    """1 publisher -> 2 subscriber processes; the rate at one of them."""

    name = "shmring Topic block 1->2, per subscriber"
    count = 2_000_000

    def run(self, count):
        ctx = context()
        topic = self.make()
        readies = [ctx.Event(), ctx.Event()]
        return run_processes(self, topic, (_fanout_subscriber, (self, topic, count, readies[0])),
                             (_fanout_subscriber, (self, topic, count, readies[1])),
                             (_fanout_publisher, (self, topic, count, readies)))

    def publisher(self, topic, n):
        self.produce(topic, n)

    def subscriber(self, topic, n, ready):
        sub = topic.subscribe()
        ready.set()
        rate = time_each(sub.recv_bytes, n)
        if sub.lagged:
            raise RuntimeError(f"lost {sub.lagged} messages under policy block")
        return rate


class PeerFanout(Fanout):
    """A peer's 1 -> 2 fan-out (pubsub_peers): its publisher probes until both
    subscribers have seen a probe, then streams; it stays until both are done."""

    peer = None

    @property
    def requires(self):
        return self.peer.module

    def run(self, count):
        ctx = context()
        handle = self.peer.make()
        self._bound, self._done = ctx.Event(), ctx.Semaphore(0)
        self._joined = [ctx.Event(), ctx.Event()]  # set by each subscriber at its first probe
        return run_processes(self, handle, (_fanout_subscriber, (self, handle, count, self._joined[0])),
                             (_fanout_subscriber, (self, handle, count, self._joined[1])),
                             (_peer_publisher, (self, handle, count)))

    def close(self, handle):
        self.peer.remove(handle)

    def publisher(self, handle, n):
        pub = self.peer.publisher(handle)
        self._bound.set()
        while not all(e.is_set() for e in self._joined):
            pub.probe()
            time.sleep(0.001)
        pub.stream(n)
        pub.close()
        for _ in self._joined:
            self._done.acquire(timeout=600)

    def subscriber(self, handle, n, joined):
        try:
            if not self._bound.wait(60):
                raise RuntimeError("the publisher did not start")
            return self.peer.subscribe(handle, n, joined)
        finally:
            self._done.release()


def _peer_publisher(row, handle, n):
    pin(1)
    row.publisher(handle, n)


class ZmqFanout(PeerFanout):
    name = "pyzmq PUB/SUB ipc:// 1->2, per subscriber"
    peer = pubsub_peers.Zmq


class MsgqFanout(PeerFanout):
    name = "msgq-ipc PUB/SUB 1->2, per subscriber (lossy)"
    peer = pubsub_peers.Msgq
    extra = "bench-pubsub"


class Iceoryx2Fanout(PeerFanout):
    name = "iceoryx2 publish/subscribe 1->2, per subscriber"
    peer = pubsub_peers.Iceoryx2
    extra = "bench-pubsub"


class Drained(Row):
    """Everything published first, then one subscriber drains it: positions read per second."""

    scenario = "pubsub"
    unit = "msgs"
    count = 200_000

    def __init__(self, payload=PAYLOAD):
        self.payload = self.item_bytes = payload

    def run(self, count):
        capacity = 1 << (count - 1).bit_length()
        with shmring.Topic(capacity, queue_msg_size(self.payload), max_topic_len=8) as topic:
            pub, message = topic.publisher(), b"x" * self.payload
            for i in range(0, count, 1000):
                pub.publish_many_bytes([(KEYS[j % 10], message) for j in range(i, min(i + 1000, count))])
            sub = self.subscriber(topic)
            t0 = time.perf_counter()
            got = self.drain(sub)
            elapsed = time.perf_counter() - t0
        if got != (count + 9 - 3) // 10:  # the messages of k3.
            raise RuntimeError(f"{self.name}: got {got} messages of k3.")
        return {"rate": count / elapsed}


class FilterInC(Drained):
    name = "shmring Topic 1-of-10 prefix filter (in C), drained"

    def subscriber(self, topic):
        return topic.subscribe(b"k3.", start="oldest")

    def drain(self, sub):
        got = 0
        try:
            while True:
                got += len(sub.recv_many_bytes(block=False))
        except shmring.Empty:
            return got


class FilterInPython(FilterInC):
    name = "shmring Topic subscribed to all, filtering in Python, drained"

    def subscriber(self, topic):
        return topic.subscribe(start="oldest")

    def drain(self, sub):
        got = 0
        try:
            while True:
                got += sum(1 for key, _ in sub.recv_many_bytes(block=False) if key.startswith(b"k3."))
        except shmring.Empty:
            return got


class OverwritePublisher(Row):
    """policy overwrite: the publisher's rate, with `subscribers` attached and idle."""

    scenario = "pubsub"
    unit = "msgs"
    count = 2_000_000
    subscribers = 0

    def __init__(self, payload=PAYLOAD):
        self.payload = self.item_bytes = payload

    def run(self, count):
        pin(1)
        with shmring.Topic(CAPACITY, queue_msg_size(self.payload), policy="overwrite", max_topic_len=8) as topic:
            subs = [topic.subscribe() for _ in range(self.subscribers)]
            publish, message = topic.publisher().publish_bytes, b"x" * self.payload
            publish(b"k", message)
            t0 = time.perf_counter()
            for _ in range(count - 1):
                publish(b"k", message)
            rate = (count - 1) / (time.perf_counter() - t0)
            for s in subs:
                s.close()
        return {"rate": rate}


class OverwriteAlone(OverwritePublisher):
    name = "shmring Topic overwrite publisher, no subscriber"


class OverwriteStalled(OverwritePublisher):
    name = "shmring Topic overwrite publisher, a stalled subscriber"
    subscribers = 1


class OverwriteEight(OverwritePublisher):
    name = "shmring Topic overwrite publisher, 8 subscribers"
    subscribers = 8


ROW_TYPES = [QueueBytes, TopicBytes, Fanout, ZmqFanout, MsgqFanout, Iceoryx2Fanout, FilterInC, FilterInPython,
             OverwriteAlone, OverwriteStalled, OverwriteEight]
BASELINE = QueueBytes.name


def rows():
    return [row_type(PAYLOAD) for row_type in ROW_TYPES]


# (label, row, other row, needed ratio): checked by command.check_targets
TARGETS = [
    ("pubsub: Topic publish_bytes/recv_bytes vs Queue put_bytes/get_bytes", TopicBytes.name, QueueBytes.name, 0.8),
    ("pubsub: Topic block 1->2 per subscriber vs pyzmq PUB/SUB", Fanout.name, ZmqFanout.name, 3),
    ("pubsub: 1-of-10 prefix filter in C vs in Python, drained", FilterInC.name, FilterInPython.name, 5),
    ("pubsub: overwrite publisher with a stalled subscriber vs none", OverwriteStalled.name, OverwriteAlone.name,
     0.9),
    ("pubsub: overwrite publisher, 8 subscribers vs 1 (at most 1.5x the cost)", OverwriteEight.name,
     OverwriteStalled.name, 1 / 1.5),
]
