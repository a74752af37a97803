"""The peers of the 1 -> 2 fan-out row of `shmring bench --only pubsub`: pyzmq
PUB/SUB over ipc:// and, where they install, msgq-ipc (openpilot's shared-memory
PUB/SUB, `import msgq`) and iceoryx2 (zero-copy shared-memory IPC).

A peer says how to make and remove its channel, opens a publisher (`probe()`,
`stream(n)`, `close()`) and runs a subscriber that returns its rate from the first
data message on. The row's publisher probes ("P" first byte) until every subscriber
has seen a probe, then streams the data ("D"): each of these peers drops what is
sent before a subscriber has joined.

- pyzmq: unlimited high-water marks, so nothing is dropped once joined.
- msgq is lossy by design: a reader the writer laps skips ahead. Its rate counts
  what a subscriber got, up to the last message it got, and "lost" how many of the
  n it missed; end markers ("E"), or a second of quiet (a lapped reader can miss
  the markers too), end the stream. A reader joins only a channel whose writer
  exists.
- iceoryx2 is configured lossless (no safe overflow, the publisher retries until
  delivered) and its subscribers check that they got all n. Its Python binding has
  no blocking receive outside a WaitSet, so its subscribers poll, as shmring's spin
  before they sleep.
"""
import ctypes
import itertools
import os
import time

PAYLOAD = 64
PROBE, DATA = b"P" + b"x" * (PAYLOAD - 1), b"D" + b"x" * (PAYLOAD - 1)
QUIET_S = 10.0       # a subscriber that hears nothing this long gives up
_names = itertools.count()


def _first_data(receive, joined):
    """Skip the probes (saying at the first that this subscriber has joined) up
    to the first data message; raise if none comes within QUIET_S seconds
    (receive() returns None when it has waited a while for nothing)."""
    deadline = time.monotonic() + QUIET_S
    while True:
        data = receive()
        if data is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no message from the publisher within {QUIET_S} s")
        elif data[:1] != b"P":
            return
        else:
            joined.set()


class Zmq:
    """pyzmq PUB/SUB over ipc://, high-water marks unlimited."""

    module = "zmq"

    @staticmethod
    def make():
        from shmring.bench.runner import IpcSocket
        return IpcSocket().make()

    @staticmethod
    def remove(path):
        from shmring.bench.runner import IpcSocket
        IpcSocket().close(path)

    class publisher:
        def __init__(self, path):
            import zmq
            self.ctx = zmq.Context()
            self.sock = self.ctx.socket(zmq.PUB)
            self.sock.setsockopt(zmq.SNDHWM, 0)
            self.sock.bind("ipc://" + path)

        def probe(self):
            self.sock.send(PROBE[:1])

        def stream(self, n):
            send = self.sock.send
            for _ in range(n):
                send(DATA)

        def close(self):
            self.sock.close(linger=-1)  # until the subscribers have it all
            self.ctx.term()

    @staticmethod
    def subscribe(path, n, joined):
        from shmring.bench.throughput import zmq_subscribe
        return zmq_subscribe(path, n, None, joined)  # `joined`: set on its first probe


class Msgq:
    """msgq-ipc over an endpoint of its own (its segment: /dev/shm/msgq_<name>)."""

    module = "msgq"
    end_markers = 100
    quiet_s = 1.0        # nothing for this long after the stream: it is over

    @staticmethod
    def make():
        return f"shmringbench{os.getpid()}x{next(_names)}"

    @staticmethod
    def remove(name):
        try:
            os.remove(f"/dev/shm/msgq_{name}")
        except FileNotFoundError:
            pass

    class publisher:
        def __init__(self, name):
            import msgq
            self.send = msgq.pub_sock(name).send

        def probe(self):
            self.send(PROBE)

        def stream(self, n):
            send = self.send
            for _ in range(n):
                send(DATA)

        def close(self):
            for _ in range(Msgq.end_markers):
                self.send(b"E")

    @staticmethod
    def subscribe(name, n, joined):
        import msgq
        receive = msgq.sub_sock(name, timeout=int(Msgq.quiet_s * 1000)).receive
        _first_data(receive, joined)
        t0 = last = time.perf_counter()
        got = 1
        while True:  # to an end marker, or a quiet spell: a lapped reader can miss the markers too
            data = receive()
            if data is None or data[:1] == b"E":
                break
            got += 1
            last = time.perf_counter()
        return {"rate": (got - 1) / (last - t0) if got > 1 else float("nan"), "lost": n - got}


class _Payload(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * PAYLOAD)]


def _payload(data):
    message = _Payload()
    ctypes.memmove(message.data, data, len(data))
    return message


class Iceoryx2:
    """iceoryx2 publish/subscribe, a service of its own, lossless."""

    module = "iceoryx2"
    buffer = 8192  # each subscriber's buffer: the topic's capacity

    @staticmethod
    def make():
        return f"shmring-bench/{os.getpid()}/{next(_names)}"

    @staticmethod
    def remove(name):
        pass  # the service goes with its last node

    @classmethod
    def service(cls, name):
        import iceoryx2 as iox2
        iox2.set_log_level(iox2.LogLevel.Warn)  # not the note that no config file was found
        node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
        return node, (node.service_builder(iox2.ServiceName.new(name)).publish_subscribe(_Payload)
                      .enable_safe_overflow(False).subscriber_max_buffer_size(cls.buffer).open_or_create())

    class publisher:
        def __init__(self, name):
            import iceoryx2 as iox2
            self.node, service = Iceoryx2.service(name)
            self.pub = service.publisher_builder().backpressure_strategy(
                iox2.BackpressureStrategy.RetryUntilDelivered).create()

        def probe(self):
            self.pub.update_connections()  # take in subscribers that joined since
            self.pub.send_copy(_payload(PROBE))

        def stream(self, n):
            send, message = self.pub.send_copy, _payload(DATA)
            for _ in range(n):
                send(message)

        def close(self):
            pass  # the row keeps this process until the subscribers are done

    @staticmethod
    def subscribe(name, n, joined):
        node, service = Iceoryx2.service(name)
        poll, string_at = service.subscriber_builder().create().receive, ctypes.string_at

        def receive():
            deadline = time.monotonic() + QUIET_S
            while True:
                sample = poll()
                if sample is not None:
                    data = string_at(sample.payload_ptr, PAYLOAD)  # a copy, as recv_bytes makes
                    sample.delete()
                    return data
                if time.monotonic() > deadline:
                    return None

        _first_data(receive, joined)
        t0 = time.perf_counter()
        for got in range(1, n):
            if receive() is None:
                raise RuntimeError(f"iceoryx2: got {got} of {n} messages, though configured lossless")
        return {"rate": (n - 1) / (time.perf_counter() - t0)}
