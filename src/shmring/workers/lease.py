"""A worker slot's lease: the layout of the region a WorkerPool shares with its
workers (made before they start), and a view of one slot's part.

Lease header (the binding owns the first two words, _core.LEASE_*):

| offset | type | field |
|---|---|---|
| 0 | u32 | count: messages held (the binding's) |
| 4 | u32 | finishing (the binding's, _finish_leased) |
| 8 | u32 | attempts: handler calls made on the held messages |
| 12 | u32 | state: how the slot's last worker ended (_RUNNING ...) |
| 16 | f64 | busy_since: time.monotonic() when the current handler call began, 0 idle |
| 24 | u64 x 5 | processed, failed, retried, dead_lettered, expired (this slot's workers) |
| 64 | u32 | stop: the pool's stop flag, copied into every slot (one load with count) |
| 72 | u64 | dead_letter_dropped (this slot's workers) |
| 80 | u64 | the position of the taker's last claim (the binding's, _adopt_leased) |
| 88 | u32 | the taker's participant index + 1, 0 none (the binding's) |
| 92 | u32 | the count that claim adds to (the binding's) |

then ``batch`` entries of ``source._lease_stride`` bytes (u32 length, u32
unused, u64 deadline ns, payload). The control region before the leases holds
the pool's stop flag (u32) too.
"""
import struct
import time

from shmring._core import LEASE_ENTRY, LEASE_FINISHING, LEASE_HEADER



_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_F64 = struct.Struct("=d")
_ENTRY = struct.Struct("=IIQ")      # length, unused, deadline ns
_BEGIN = struct.Struct("=I4xd")     # attempts, state (0: running), busy_since: one store as a handler call begins
_END = struct.Struct("=dQ")         # busy_since, processed: one store as a message is finished

_ATTEMPTS, _STATE, _BUSY, _COUNTERS, _SLOT_STOP = 8, 12, 16, 24, 64
_COUNT_AND_STOP = struct.Struct("=I60xI")  # count (0) and stop (64): what a worker loads before each take
_COUNTER_AT = {"processed": 24, "failed": 32, "retried": 40, "dead_lettered": 48, "expired": 56,
               "dead_letter_dropped": 72}  # u64 each (64: the stop word)
_COUNTER_NAMES = tuple(_COUNTER_AT)
_RUNNING, _RECYCLED, _STOPPED, _DRAINED = 0, 1, 2, 3
_PAYLOAD = LEASE_HEADER + LEASE_ENTRY  # the first entry's payload
_CONTROL = 64                        # bytes before the first lease: the stop flag at 0
_TAKE_WAIT = 0.1                     # seconds a worker waits in one take before it looks at the stop flag
_PUT_BACK_WAIT = 1.0                 # seconds the pool waits for room to put leftovers back
_DELIVERIES = ("at_least_once", "at_most_once")


_monotonic = time.monotonic


def _now_ns():
    # the clock of message deadlines (shmring_now_ns: CLOCK_MONOTONIC)
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class _Lease:
    """One slot's lease, a view of the pool's shared region."""

    def __init__(self, region, slot, size, stride, batch):
        start = _CONTROL + slot * size
        self.buf = memoryview(region).cast("B")[start:start + size]
        self.stride, self.batch = stride, batch

    def count(self):
        return _U32.unpack_from(self.buf, 0)[0]

    def finishing(self):
        return _U32.unpack_from(self.buf, LEASE_FINISHING)[0]

    def get(self, offset, kind=_U32):
        return kind.unpack_from(self.buf, offset)[0]

    def set(self, offset, value, kind=_U32):
        kind.pack_into(self.buf, offset, value)

    def entries(self, n):
        """[(bytes or None if the slot was corrupt, deadline ns or 0)] of the n
        held (at most batch; a length beyond an entry's payload is corrupt too)."""
        out, room = [], self.stride - LEASE_ENTRY
        for i in range(min(n, self.batch)):
            at = LEASE_HEADER + i * self.stride
            length, _, deadline = _ENTRY.unpack_from(self.buf, at)
            raw = None if length > room else bytes(self.buf[at + LEASE_ENTRY:at + LEASE_ENTRY + length])
            out.append((raw, deadline))
        return out

    def counters(self):
        return {name: _U64.unpack_from(self.buf, at)[0] for name, at in _COUNTER_AT.items()}

    def add(self, name, n):
        if n:
            at = _COUNTER_AT[name]
            _U64.pack_into(self.buf, at, _U64.unpack_from(self.buf, at)[0] + n)
