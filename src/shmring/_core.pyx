"""Binding of the C ring (csrc/) for the Python Queue.

Thin by design: typed handles, argument conversion, the GIL released around
every wait, C result codes turned into exceptions in one place. Waits are
sliced: C sleeps at most SLICE_NS, then we check signals (Ctrl-C), the deadline
and whether the queue was closed, and go round again.

Policy - defaults, names, pickling of handles, lifetime at exit - lives in
queue.py, which subclasses RingQueue.
"""
from cpython.buffer cimport (
    PyBUF_C_CONTIGUOUS,
    PyBUF_SIMPLE,
    PyBUF_WRITABLE,
    PyBuffer_FillInfo,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno
from libc.stdint cimport UINT32_MAX, UINT64_MAX, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy
from cpython.pyport cimport PY_SSIZE_T_MAX
from posix.unistd cimport getpid

cimport cython

from shmring._cshmring cimport *

import os
import pickle
import threading

from shmring import errors  # the binding's only import from the package


ctypedef int (*claim_fn)(shmring_participant_t *, uint32_t, int, shmring_span_t *) noexcept nogil


cdef extern from "pythread.h":
    unsigned long PyThread_get_thread_ident()


# Longest a C wait lasts before we look at signals, the deadline and close().
cdef uint64_t SLICE_NS = 50_000_000
# Busy-wait rounds before the first sleep of a blocking call (tens of microseconds),
# and the few rounds tried first while still holding the GIL.
cdef uint32_t SPIN = 2000
cdef uint32_t SPIN_WITH_GIL = 50
cdef int PICKLE_PROTOCOL = 5
# Copies larger than this release the GIL (the claim keeps the slots ours meanwhile).
cdef uint64_t COPY_WITHOUT_GIL = 256 * 1024
# get_array allocates room for at least this many bytes of records before it claims.
cdef uint64_t ROOM_BYTES = 64 * 1024
cdef object _dumps = pickle.dumps
cdef object _loads = pickle.loads


cdef object _numpy = None

# Forks this process descends through. "Is this still the process that made
# it?" is asked of this, not of the pid: a child in a new pid namespace can have
# its parent's pid (both 1). Counted before any handle's own fork hook runs.
cdef long _forks = 0


def _count_fork():
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)


cdef object numpy():
    """numpy, imported on first use: only records queues need it."""
    global _numpy
    if _numpy is None:
        import numpy
        _numpy = numpy
    return _numpy


def inspect(str name):
    """What `shmring ls` / `stat` show of a ring, without joining it: a dict.

    Raises like Queue.attach for a missing, foreign or corrupt segment.
    """
    cdef shmring_t *ring = NULL
    cdef shmring_params_t params
    cdef shmring_stats_t st
    cdef shmring_info_t info
    cdef bytes cname = _segment_name(name)
    cdef const char *c_name = cname
    cdef int rc
    with nogil:  # opening can wait on the file system
        rc = shmring_attach(c_name, SHMRING_KIND_QUEUE, SHMRING_ATTACH_READONLY, &ring)
    if rc != SHMRING_OK:
        _raise_rc(rc, name)
    try:
        shmring_get_params(ring, &params)
        shmring_get_stats(ring, &st)
        shmring_get_info(ring, &info)
        return {
            "name": name,
            "kind": "records" if params.records else "queue",
            # for display: a schema that is not UTF-8 shows as escapes, whatever it holds
            "schema": params.schema.decode("utf-8", "backslashreplace") if params.records else None,
            "maxsize": params.maxsize,
            "msg_size": params.slot_size,
            "put": st.write_pos,
            "got": st.read_pos,
            "fill": st.write_pos - st.read_pos,
            "tasks_done": st.tasks_done,
            "lost": st.lost,
            "recoveries": st.recoveries,
            "readers_waiting": st.readers_waiting,
            "writers_waiting": st.writers_waiting,
            "creator_pid": info.creator_pid,
            "created_unix_ns": info.created_unix_ns,
            "bytes": info.mapped_size,
            "participants": info.participants,
            "participants_alive": info.participants_alive,
            "lock_file": _lock_file_name(ring),
        }
    finally:
        shmring_close(ring)


cdef object _lock_file_name(const shmring_t *ring):
    cdef const char *lock = shmring_lock_file(ring)
    return None if lock == NULL else lock[1:].decode()


def _create_died(str name):
    """Whether segment `name` was left unpublished by a creator that died making
    it (shmring rm): only then may a segment without our magic be removed."""
    cdef int rc = shmring_create_died(_segment_name(name))
    if rc < 0:
        _raise_rc(rc, name)
    return rc == 1


def _unlink_segment(str name):
    """Remove a segment's name (shmring rm); mappings that exist stay valid."""
    cdef int rc = shmring_unlink(_segment_name(name))
    if rc != SHMRING_OK:
        _raise_rc(rc, name)


cdef bytes _segment_name(object name):
    """b"/name" for the C layer, which checks length and characters; what a C
    string cannot carry (a NUL would cut the name short) is refused here."""
    if not isinstance(name, str):
        raise TypeError(f"a segment name is a str, got {type(name).__name__}")
    if "\0" in name or not name.isascii():
        raise ValueError(f"{shmring_strerror(SHMRING_ENAME).decode()}: {name!r}")
    return ("/" + name).encode("ascii")


def _set_wait_slice(seconds):
    """Test knob: the longest single C wait (default 0.05 s). With a long slice
    only a real wake-up (or a signal) ends a wait early, so tests can tell them apart."""
    global SLICE_NS
    SLICE_NS = <uint64_t>(seconds * 1e9)


_HOOKS = {
    None: SHMRING_HOOK_NONE,
    "put_claimed": SHMRING_HOOK_PUT_CLAIMED,
    "put_committing": SHMRING_HOOK_PUT_COMMITTING,
    "get_claimed": SHMRING_HOOK_GET_CLAIMED,
    "get_releasing": SHMRING_HOOK_GET_RELEASING,
    "creating": SHMRING_HOOK_CREATING,
}


def _set_test_hook(point, seconds=0.0):
    """Test knob: stall this process `seconds` each time it passes `point` inside
    an operation ("put_claimed", "put_committing", "get_claimed", "get_releasing",
    or "creating": a new segment and its lock file made, before it is published;
    None turns it off), so that a test can kill it there."""
    shmring_debug_set_hook(_HOOKS[point], <uint64_t>(seconds * 1e9))


# What each SHMRING_E* code raises: (exception class, message template, whether
# errno comes first as for OSError). {what} is the C layer's reason, the segment's
# name and the detail; {strerror} names errno. A code not listed is one of
# attach's validation failures (truncated, bad magic, bad offsets...): SegmentError.
_ERRORS = {
    SHMRING_ESYS: (errors.SystemCallError, "{strerror} ({what})", True),
    SHMRING_EINVAL: (errors.InvalidArgument, "{what}", False),
    SHMRING_ENAME: (errors.InvalidArgument, "{what}", False),
    SHMRING_ETOOBIG: (errors.InvalidArgument, "{what}", False),
    SHMRING_EJOIN: (errors.InvalidArgument, "{what}", False),
    SHMRING_EINTR: (errors.InvalidArgument, "{what}", False),
    SHMRING_ENOTFOUND: (errors.SegmentNotFound, "{what}", False),
    SHMRING_EEXIST: (errors.SegmentExists, "{what}", False),
    SHMRING_ELOCKFILE: (errors.SegmentExists, "{what}", False),
    SHMRING_EPERM: (errors.PermissionDenied, "{what}", False),
    SHMRING_ENOMEM: (errors.OutOfMemory, "{what}", False),
    SHMRING_EFULLTABLE: (errors.TooManyParticipants, "{what}", False),
    SHMRING_ECORRUPT: (errors.SegmentError, "{what}", False),
    SHMRING_EUNTRUSTED: (errors.UntrustedSegment, "{what}; attach with allow_world_writable=True to trust it anyway",
                         False),
}
_SEGMENT_ERROR = (errors.SegmentError, "{what}", False)


cdef int _raise_rc(int rc, object name, str detail=None) except -1:
    """Raise the exception of a SHMRING_E* code (see _ERRORS): the C reason, the
    segment's name, then `detail` (what the value and the limit were) if any."""
    cdef int err = errno
    what = shmring_strerror(rc).decode()
    if name is not None:
        what = f"{what}: {name!r}"
    if detail:
        what = f"{what}: {detail}"
    cls, template, errno_first = _ERRORS.get(rc, _SEGMENT_ERROR)
    text = template.format(what=what, strerror=os.strerror(err))
    raise cls(err, text) if errno_first else cls(text)


cdef inline int _deadline(object block, object timeout, uint64_t *out) except -1:
    """0: do not block; UINT64_MAX: block forever; else a CLOCK_MONOTONIC ns deadline."""
    if block is True and timeout is None:  # the default: no truth test, no call
        out[0] = UINT64_MAX
        return 0
    return _deadline_of(block, timeout, out)


cdef int _deadline_of(object block, object timeout, uint64_t *out) except -1:
    cdef double t
    if not block:
        out[0] = 0
        return 0
    if timeout is None:
        out[0] = UINT64_MAX
        return 0
    t = timeout
    if not t >= 0:  # also refuses NaN
        raise ValueError(f"'timeout' must be a non-negative number of seconds or None, got {timeout!r}")
    if t > 3e8:  # ten years: forever
        out[0] = UINT64_MAX
    else:
        out[0] = shmring_now_ns() + <uint64_t>(t * 1e9)
    return 0


# recover_after: above 0, at most a day (a longer one would never act).
cdef double RECOVER_AFTER_MAX = 86400.0


cdef uint64_t _recover_after_ns(object seconds) except? 0:
    cdef double t = seconds
    if not (0 < t <= RECOVER_AFTER_MAX):  # also refuses NaN and infinities
        raise ValueError(f"'recover_after' must be a number of seconds above 0 and at most "
                         f"{RECOVER_AFTER_MAX:.0f}, got {seconds!r}")
    return <uint64_t>(t * 1e9)


cdef class _Mapping:
    """This process's mapping of one ring. `ring` is NULL once closed.

    Arrays over slots (reserve / view) keep it: while one lives, the mapping
    stays (close() is deferred until the last is gone), so an array kept too
    long shows stale data but never faults.
    """
    cdef shmring_t *ring
    cdef int exports
    cdef bint close_pending

    cdef void close(self) noexcept:
        if self.exports > 0:
            self.close_pending = True
        elif self.ring != NULL:
            shmring_close(self.ring)  # also frees every participant handle
            self.ring = NULL

    def __dealloc__(self):
        self.exports = 0
        self.close()


# Never collected as part of a cycle (it refers to nothing but the mapping), so
# its mapping is still there when it dies.
@cython.no_gc
cdef class _SlotBuffer:
    """The payload area of a records ring as a buffer, for the numpy arrays over
    it that reserve() and view() slice.

    numpy keeps this object as the base of such an array (and holds no buffer
    export: it releases its view at once), so the mapping stays as long as any
    array over it lives; there is nothing a user could release early.
    """
    cdef _Mapping mapping
    cdef char *ptr
    cdef Py_ssize_t size
    cdef bint readonly

    @staticmethod
    cdef _SlotBuffer _make(_Mapping mapping, char *ptr, Py_ssize_t size, bint readonly):
        cdef _SlotBuffer b = _SlotBuffer.__new__(_SlotBuffer)
        b.mapping, b.ptr, b.size, b.readonly = mapping, ptr, size, readonly
        mapping.exports += 1
        return b

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self.mapping is None:
            raise BufferError("not the slots of a queue")
        PyBuffer_FillInfo(buffer, self, self.ptr, self.size, self.readonly, flags)

    def __dealloc__(self):
        if self.mapping is not None:
            self.mapping.exports -= 1
            if self.mapping.close_pending:
                self.mapping.close()


# Fields stay for __dealloc__ when a cycle is collected (Cython's tp_clear would
# clear them first): a participant must leave, a handle close, a span end.
@cython.no_gc_clear
@cython.final
cdef class _Participant:
    """One thread's entry in the ring's participant table."""
    cdef shmring_participant_t *ptr
    cdef _Mapping mapping
    # Set while this thread holds a claim and allocates Python objects: a
    # finalizer run by that allocation must not start a second claim, which
    # would overwrite the announcement crash recovery relies on.
    cdef bint holding
    # Errors of messages of a batch that could not be decoded, raised by this
    # thread's next calls (the messages around them were handed out).
    cdef list deferred

    cdef inline int raise_deferred(self) except -1:
        if self.deferred:
            raise self.deferred.pop(0)
        return 0

    def __dealloc__(self):
        # After the mapping closed, the handle was already freed by shmring_close.
        if self.ptr != NULL and self.mapping is not None and self.mapping.ring != NULL:
            shmring_participant_leave(self.ptr)


@cython.no_gc_clear
cdef class RingQueue:
    """The hot paths of shmring.Queue (see queue.py for the documented API)."""
    cdef _Mapping _map
    cdef shmring_t *_ring            # == _map.ring while open
    cdef uint64_t _slot_size
    cdef uint64_t _maxsize
    cdef bytes _cname                # b"/name"
    cdef bint _owner                 # created by this process: it unlinks
    cdef long _creator_pid
    cdef bint _unlinked
    cdef bint _closing
    cdef int _active                 # operations in flight (they may be waiting without the GIL)
    cdef uint64_t _recover_after_ns  # stuck this long behind an unfinished claim: recover
    cdef uint64_t _stuck_pos[2]      # where readers [0] / writers [1] were last seen stuck
    cdef uint64_t _stuck_since[2]    # since when (0: not stuck)
    # participant of the first thread that used the queue, then one per other thread
    cdef unsigned long _tid0
    cdef _Participant _part0
    cdef object _local
    cdef long _fork                  # _forks when this process got the handle (a child's fork hook moves it)
    cdef bint _records               # fixed-size records of `dtype`
    cdef readonly object dtype       # numpy dtype of a records queue, else None
    cdef object _dtype_ok            # the last array dtype found equal to it (comparing is slow)
    cdef object _view_slots          # records: arrays over the whole payload area,
    cdef object _reserve_slots       # read-only for view(), writable for reserve()
    cdef object __weakref__

    # ---- opening and closing ----

    def _open(self, str name, bint create, uint64_t maxsize=0, uint64_t msg_size=0,
              uint32_t mode=0o600, uint32_t max_participants=0, recover_after=0.1,
              str schema=None, bint trust_writable=False):
        cdef shmring_params_t params
        cdef shmring_t *ring = NULL
        cdef int rc
        cdef bytes schema_bytes
        cdef bytes cname = _segment_name(name)
        if self._map is not None:
            raise RuntimeError(f"queue {self.name!r} is open already: a handle opens one ring, once")
        self._recover_after_ns = _recover_after_ns(recover_after)
        if create:
            schema_bytes = schema.encode() if schema is not None else b""
            params.slot_size = msg_size
            params.maxsize = maxsize
            params.kind = SHMRING_KIND_QUEUE
            params.max_participants = max_participants
            params.mode = mode
            params.records = schema is not None
            params.schema = schema_bytes
            rc = shmring_create(cname, &params, &ring)
        else:
            rc = shmring_attach(cname, SHMRING_KIND_QUEUE, SHMRING_ATTACH_TRUST_WRITABLE if trust_writable else 0,
                                &ring)
        if rc != SHMRING_OK:
            _raise_rc(rc, name)
        self._map = _Mapping()
        self._map.ring = ring
        self._ring = ring
        shmring_get_params(ring, &params)
        self._slot_size = params.slot_size
        self._maxsize = params.maxsize
        self._records = params.records
        self._cname = cname
        self._owner = create
        self._creator_pid = getpid()
        self._fork = _forks
        self._local = threading.local()
        try:
            if self._records:
                from shmring.records import schema_to_dtype
                self.dtype = schema_to_dtype(params.schema, self._slot_size, name)
            self._me_slow()  # register this thread now: attached means present
        except BaseException:
            self._unlink_if_owner()
            self._finish_close()
            raise

    cdef void _unlink_if_owner(self) noexcept:
        if self._owner and not self._unlinked and getpid() == self._creator_pid and self._ring != NULL:
            shmring_remove(self._ring)  # only our segment: its name may be another ring's by now
            self._unlinked = True

    cdef void _finish_close(self) noexcept:
        self._ring = NULL
        self._tid0 = 0
        self._part0 = None
        self._local = None
        self._view_slots = self._reserve_slots = None  # arrays handed out keep the mapping themselves
        if self._map is not None:
            self._map.close()

    def close(self):
        """Close this handle. The creating process also unlinks the segment.

        Threads of this process blocked on the queue wake up with QueueClosed;
        other processes that already attached keep their mapping until they close.
        """
        if self._closing or self._ring == NULL:
            self._closing = True
            return
        self._closing = True
        shmring_wake_all(self._ring)
        self._unlink_if_owner()
        if self._active == 0:
            self._finish_close()

    def _unlink(self):
        """Unlink now if this process created the segment (interpreter exit)."""
        self._unlink_if_owner()

    def _after_fork_in_child(self):
        # The child shares the mapping but not the parent's threads, table entries
        # or liveness locks. Only in a new process: the parent's threads may be busy.
        if self._fork == _forks:
            return
        self._fork = _forks
        self._owner = False  # only the creating process unlinks
        if self._ring != NULL:
            # first: the parent's participants are dropped below, and must leave nothing
            shmring_after_fork(self._ring)
        self._active = 0
        self._tid0 = 0
        self._part0 = None
        if self._ring == NULL:
            return
        self._local = threading.local()
        if self._closing:
            self._finish_close()
            return
        try:
            self._me_slow()  # present at once; a full table is reported at first use
        except errors.TooManyParticipants:
            pass

    def __dealloc__(self):
        if self._ring != NULL:
            self._unlink_if_owner()
            self._finish_close()

    @property
    def closed(self):
        return self._closing or self._ring == NULL

    @property
    def maxsize(self):
        """Most messages the queue holds at once (exact)."""
        return self._maxsize

    @property
    def recover_after(self):
        """Seconds a blocked call waits before recovering from dead participants."""
        return self._recover_after_ns / 1e9

    @property
    def msg_size(self):
        """Largest encoded message in bytes."""
        return self._slot_size

    @property
    def name(self):
        """Name of the shared-memory segment (without the leading '/')."""
        return self._cname[1:].decode("ascii") if self._cname is not None else None

    # ---- participants and in-flight accounting ----

    cdef _Participant _join(self):
        cdef _Participant p = _Participant.__new__(_Participant)
        cdef int rc = shmring_participant_join(self._ring, &p.ptr)
        if rc != SHMRING_OK:
            _raise_rc(rc, self.name)
        p.mapping = self._map
        return p

    cdef _Participant _me_slow(self):
        cdef _Participant p
        if self._part0 is None:
            p = self._join()
            self._part0 = p
            self._tid0 = PyThread_get_thread_ident()
            return p
        p = getattr(self._local, "participant", None)
        if p is None:
            p = self._join()
            self._local.participant = p
        return p

    cdef inline _Participant _me(self):
        """This thread's participant (joining at first use)."""
        if PyThread_get_thread_ident() == self._tid0:
            return self._part0
        return self._me_slow()

    cdef inline _Participant _enter(self):
        """Start an operation: this thread's participant; close() waits for us."""
        cdef _Participant p = self._part0
        # the common case, inlined: the first thread, open, holding no claim
        if (not self._closing and self._ring != NULL and p is not None
                and PyThread_get_thread_ident() == self._tid0 and not p.holding):
            self._active += 1
            return p
        return self._enter_checked()

    cdef _Participant _enter_checked(self):
        cdef _Participant p
        if self._closing or self._ring == NULL:
            raise errors.QueueClosed(f"queue {self.name!r} is closed")
        p = self._me()
        if p.holding:
            raise RuntimeError(
                "this thread holds a claim on the queue (an open reserve() or view(), or "
                "a message being taken when a finalizer ran): commit or release it first")
        self._active += 1
        return p

    cdef inline void _leave(self) noexcept:
        self._active -= 1
        if self._closing and self._active == 0:
            self._finish_close()

    cdef int _wait(self, _Participant p, int what, uint64_t deadline, uint32_t spin,
                   uint64_t wake_by) except -1:
        """Wait one slice for `what`, at most until wake_by (0: no bound).
        1: try again; 0: the deadline has passed."""
        cdef uint64_t now = shmring_now_ns(), slice_ns = SLICE_NS
        cdef shmring_participant_t *me = p.ptr
        if deadline == 0 or now >= deadline:
            return 0
        if deadline != UINT64_MAX and deadline - now < slice_ns:
            slice_ns = deadline - now
        if wake_by != 0:
            slice_ns = min(slice_ns, wake_by - now if wake_by > now else 0)
        with nogil:
            shmring_wait(me, what, slice_ns, spin)
        PyErr_CheckSignals()
        if self._closing:
            raise errors.QueueClosed(f"queue {self.name!r} was closed while waiting")
        return 1

    cdef bint _recover_if_stuck(self, int what, uint64_t *recheck):
        """Called when a claim found nothing. If what we wait for is held by an
        unfinished claim, at the same position for recover_after (across calls:
        polling counts too), run crash recovery and return True (look again now).
        Else set *recheck to when to look again (0: not stuck)."""
        cdef uint64_t pos, now
        cdef int side = 0 if what == SHMRING_WAIT_READABLE else 1
        cdef shmring_t *ring = self._ring
        recheck[0] = 0
        if not shmring_stuck(ring, what, &pos):
            self._stuck_since[side] = 0
            return False
        now = shmring_now_ns()
        if self._stuck_since[side] == 0 or self._stuck_pos[side] != pos:
            self._stuck_pos[side] = pos
            self._stuck_since[side] = now
        elif now - self._stuck_since[side] >= self._recover_after_ns:
            self._stuck_since[side] = now
            with nogil:
                shmring_recover(ring)
            return True
        recheck[0] = self._stuck_since[side] + self._recover_after_ns
        return False

    # ---- claiming (blocking as asked) ----

    cdef int _claim(self, bint put, _Participant p, uint32_t max_n, shmring_span_t *span,
                    uint64_t deadline, Py_ssize_t done, int flags=0) except -1:
        """Claim 1..max_n slots to write (put) or messages to read, waiting as asked.

        Raises Full (with `done` as its count) or Empty when the deadline passes.
        """
        cdef claim_fn claim = shmring_put_claim if put else shmring_get_claim
        cdef int what = SHMRING_WAIT_WRITABLE if put else SHMRING_WAIT_READABLE
        cdef uint32_t spin = SPIN
        cdef uint64_t recheck
        cdef int n = claim(p.ptr, max_n, flags, span)
        if n == 0 and deadline != 0:
            # What arrives within a microsecond or so is cheaper to wait for
            # holding the GIL than with a GIL hand-off.
            shmring_wait(p.ptr, what, 0, SPIN_WITH_GIL)
            n = claim(p.ptr, max_n, flags, span)
        while n == 0:
            if self._recover_if_stuck(what, &recheck):
                n = claim(p.ptr, max_n, flags, span)
                if n != 0:
                    break
            if not self._wait(p, what, deadline, spin, recheck):
                if put:
                    raise errors.Full(f"queue {self.name!r} is full", done)
                raise errors.Empty(f"queue {self.name!r} is empty")
            spin = 0
            n = claim(p.ptr, max_n, flags, span)
        if n < 0:
            _raise_rc(n, self.name)
        return n

    # ---- moving bytes ----

    @cython.final
    cdef int _put_one(self, const char *data, Py_ssize_t size, uint64_t deadline) except -1:
        cdef shmring_span_t span
        cdef _Participant p
        if <uint64_t>size > self._slot_size:
            raise errors.MessageTooLarge(size, self._slot_size)
        p = self._enter()
        try:
            # the common case in one C call: room now, claimed, filled and committed
            if shmring_put(p.ptr, data, size) <= 0:
                self._claim(True, p, 1, &span, deadline, 0)
                memcpy(shmring_slot_payload(self._ring, span.pos), data, size)
                shmring_slot_set_len(self._ring, span.pos, <uint32_t>size)
                shmring_put_commit(p.ptr, &span)
        finally:
            self._leave()
        return 0

    cdef int _put_many(self, list encoded, uint64_t deadline) except -1:
        """Put bytes objects in order, in batches; all are checked before any is put."""
        cdef Py_ssize_t total = len(encoded), done = 0, i, size
        cdef uint32_t k, want
        cdef shmring_span_t span
        cdef _Participant p
        cdef bytes b
        for i in range(total):
            size = PyBytes_GET_SIZE(encoded[i])
            if <uint64_t>size > self._slot_size:
                raise errors.MessageTooLarge(size, self._slot_size)
        if total == 0:
            return 0
        p = self._enter()
        try:
            while done < total:
                want = <uint32_t>min(total - done, UINT32_MAX)
                self._claim(True, p, want, &span, deadline, done)
                for k in range(span.n):
                    b = encoded[done + k]
                    size = PyBytes_GET_SIZE(b)
                    memcpy(shmring_slot_payload(self._ring, span.pos + k), PyBytes_AS_STRING(b), size)
                    shmring_slot_set_len(self._ring, span.pos + k, <uint32_t>size)
                shmring_put_commit(p.ptr, &span)
                done += span.n
        finally:
            self._leave()
        return 0

    cdef Py_ssize_t _how_many(self, object n, str what) except -1:
        """A count of messages asked for: an integer of at least 1 (None: maxsize)."""
        if n is None:
            return self._maxsize
        if isinstance(n, bool) or not hasattr(n, "__index__"):
            raise TypeError(f"'{what}' must be an integer, got {n!r}")
        n = n.__index__()
        if n < 1:
            raise ValueError(f"'{what}' must be at least 1, got {n}")
        return min(n, PY_SSIZE_T_MAX)

    cdef inline void _count_lost(self, uint64_t n) noexcept:
        """Messages this process took and could not hand out (out of memory, Ctrl-C):
        lost, for stats() and join() to see, as if a consumer had died holding them."""
        if n and self._ring != NULL:
            shmring_count_lost(self._ring, n)

    @cython.final
    cdef object _get_one(self, uint64_t deadline):
        """One message as bytes (a corrupt slot's SegmentError is raised in its turn)."""
        cdef shmring_span_t span
        cdef _Participant p = self._enter()
        cdef int64_t size = 0
        cdef object raw = None
        try:
            p.raise_deferred()
            if shmring_get_claim(p.ptr, 1, 0, &span) <= 0:  # the common case without a call: one is there
                self._claim(False, p, 1, &span, deadline, 0)
            p.holding = True
            try:
                size = shmring_slot_len(self._ring, span.pos)
                if size >= 0:
                    raw = PyBytes_FromStringAndSize(<char *>shmring_slot_payload(self._ring, span.pos), size)
            finally:
                shmring_get_release(p.ptr, &span)
                p.holding = False
                if raw is None and size >= 0:
                    self._count_lost(1)  # the copy failed: out of memory
        finally:
            self._leave()
        if size < 0:
            _raise_rc(<int>size, self.name)  # this message's turn: the others are intact
        return raw

    cdef int _take(self, _Participant p, shmring_span_t *span, list out) except -1:
        """Copy the claimed messages into new bytes objects, then release the slots.

        A slot with an impossible length becomes a SegmentError in `out`, raised
        in its turn (see _decode), so the messages around it survive. If copying
        fails (out of memory), what this call took is counted lost.
        """
        cdef uint32_t k
        cdef int64_t size
        cdef Py_ssize_t before = len(out)
        p.holding = True
        try:
            for k in range(span.n):
                size = shmring_slot_len(self._ring, span.pos + k)
                if size < 0:
                    out.append(errors.SegmentError(f"{shmring_strerror(<int>size).decode()}: {self.name!r}"))
                else:
                    out.append(PyBytes_FromStringAndSize(
                        <char *>shmring_slot_payload(self._ring, span.pos + k), size))
        except BaseException:
            shmring_get_release(p.ptr, span)
            p.holding = False
            self._count_lost(before + span.n)
            raise
        shmring_get_release(p.ptr, span)
        p.holding = False
        return 0

    cdef list _get_raw(self, Py_ssize_t limit, uint64_t deadline):
        """1..limit messages as bytes (or SegmentError markers), waiting as asked."""
        cdef shmring_span_t span
        cdef _Participant p
        cdef list out = []
        p = self._enter()
        try:
            p.raise_deferred()
            self._claim(False, p, <uint32_t>min(limit, UINT32_MAX), &span, deadline, 0)
            while True:
                self._take(p, &span, out)
                if len(out) >= limit:
                    break
                # more may have arrived meanwhile: take it in the same call, never wait
                if shmring_get_claim(p.ptr, <uint32_t>min(limit - len(out), UINT32_MAX), 0, &span) <= 0:
                    break
        finally:
            self._leave()
        return out

    cdef list _decode(self, list raw):
        """Unpickle a batch in order. A message that fails is not fatal to the
        others: they are returned, and its error is raised by this thread's next
        get call (at once if it was the only one). Nothing is kept but errors. An
        interruption (Ctrl-C) is raised at once, and the messages of the batch it
        would have returned are counted lost (they are out of the ring)."""
        cdef list out = [], failed = []
        cdef Py_ssize_t i
        for i in range(len(raw)):
            item = raw[i]
            try:
                if isinstance(item, BaseException):
                    raise item
                out.append(_loads(item))
            except Exception as e:
                failed.append(e)
            except BaseException:
                self._defer(failed)
                self._count_lost(len(raw) - len(failed))
                raise
        if failed:
            if not out:
                first = failed.pop(0)
                self._defer(failed)
                raise first
            self._defer(failed)
        return out

    cdef int _defer(self, list errors) except -1:
        cdef _Participant p
        if errors and self._ring != NULL:
            p = self._me()
            if p.deferred is None:
                p.deferred = []
            p.deferred.extend(errors)
        return 0

    # ---- the public operations ----

    def put_bytes(self, data, block=True, timeout=None):
        """Put a bytes-like object as one message, without pickling."""
        cdef uint64_t deadline
        cdef Py_buffer view
        _deadline(block, timeout, &deadline)
        if type(data) is bytes:
            self._put_one(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), deadline)
            return
        try:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        except BufferError:  # not contiguous: copy it in C order
            data = memoryview(data).tobytes()
            self._put_one(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), deadline)
            return
        try:
            self._put_one(<const char *>view.buf, view.len, deadline)
        finally:
            PyBuffer_Release(&view)

    def get_bytes(self, block=True, timeout=None):
        """Remove and return one message as bytes (put with put_bytes)."""
        cdef uint64_t deadline
        _deadline(block, timeout, &deadline)
        return self._get_one(deadline)

    cdef bytes _encode(self, obj):
        """One message: a pickle, or a record of a records queue."""
        if not self._records:
            return _dumps(obj, PICKLE_PROTOCOL)
        np = numpy()
        if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype != self.dtype:
            raise TypeError(f"record of dtype {obj.dtype} put into a queue of {self.dtype}")
        data = np.asarray(obj, dtype=self.dtype).tobytes()
        if len(data) != self._slot_size:
            raise ValueError("put() takes one record; use put_array() for many")
        return data

    cdef object _decode_one(self, bytes raw):
        """The object of one message taken from the ring: an error in decoding
        is this message's, raised in its turn; an interruption loses it (counted)."""
        try:
            if not self._records:
                return _loads(raw)
            return numpy().frombuffer(raw, self.dtype)[0]
        except Exception:
            raise
        except BaseException:
            self._count_lost(1)
            raise

    def put(self, obj, block=True, timeout=None):
        """Put one object (pickled, protocol 5), or one record of a records queue."""
        cdef uint64_t deadline
        _deadline(block, timeout, &deadline)
        data = self._encode(obj)
        self._put_one(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), deadline)

    def get(self, block=True, timeout=None):
        """Remove and return one object (a numpy scalar from a records queue)."""
        cdef uint64_t deadline
        _deadline(block, timeout, &deadline)
        return self._decode_one(self._get_one(deadline))

    def put_nowait(self, obj):
        """put(obj, block=False)."""
        data = self._encode(obj)
        self._put_one(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), 0)

    def get_nowait(self):
        """get(block=False)."""
        return self._decode_one(self._get_one(0))

    def put_many(self, items, block=True, timeout=None):
        """Put every item, in order, claiming slots in batches.

        If the queue stays full past the timeout, Full is raised and its
        ``count`` says how many leading items were put.
        """
        cdef uint64_t deadline
        if self._records:
            return self.put_array(numpy().array(list(items), dtype=self.dtype), block, timeout)
        _deadline(block, timeout, &deadline)
        self._put_many([_dumps(item, PICKLE_PROTOCOL) for item in items], deadline)

    def get_many(self, max_items=None, block=True, timeout=None):
        """Remove and return a list of 1..max_items objects (default: up to maxsize).

        Blocks until at least one is there; returns what is there then.
        """
        cdef uint64_t deadline
        if self._records:
            arr = self.get_array(max_items, block, timeout)
            try:
                return list(arr)
            except BaseException:
                self._count_lost(len(arr))
                raise
        _deadline(block, timeout, &deadline)
        return self._decode(self._get_raw(self._how_many(max_items, "max_items"), deadline))

    # ---- records: arrays in, arrays out, zero-copy views ----

    cdef object _records_only(self, what):
        if not self._records:
            raise TypeError(f"{what} needs a records queue: Queue(maxsize, dtype=...)")

    cdef object _as_records(self, arr):
        """arr as a C-contiguous 1-D array of exactly our dtype (copied if not contiguous)."""
        np = numpy()
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"expected a numpy array of {self.dtype}, got {type(arr).__name__}")
        dt = arr.dtype
        if dt is not self._dtype_ok:
            if dt != self.dtype:
                raise TypeError(f"array of dtype {dt} put into a queue of {self.dtype}")
            self._dtype_ok = dt
        if arr.ndim != 1:
            raise ValueError(f"expected a 1-D array of records, got {arr.ndim} dimensions")
        return np.ascontiguousarray(arr)

    cdef void _copy(self, shmring_span_t *span, char *buf, bint into_ring) noexcept:
        cdef shmring_t *ring = self._ring
        if span.n * self._slot_size > COPY_WITHOUT_GIL:
            with nogil:
                shmring_copy_span(ring, span, buf, into_ring)
        else:
            shmring_copy_span(ring, span, buf, into_ring)

    def put_array(self, arr, block=True, timeout=None):
        """Put every record of a 1-D array of the queue's dtype, in order.

        Any length: an array longer than the queue streams through as space frees.
        A non-contiguous array is copied first; another dtype is a TypeError, more
        than one dimension a ValueError. If the queue stays full past the
        timeout, Full is raised and its ``count`` says how many records were put.
        """
        cdef uint64_t deadline
        cdef Py_buffer view
        cdef shmring_span_t span
        cdef Py_ssize_t total, done = 0
        cdef _Participant p
        self._records_only("put_array()")
        _deadline(block, timeout, &deadline)
        arr = self._as_records(arr)
        total = len(arr)
        if total == 0:
            return
        PyObject_GetBuffer(arr, &view, PyBUF_C_CONTIGUOUS)
        try:
            p = self._enter()
            try:
                while done < total:
                    self._claim(True, p, <uint32_t>min(total - done, UINT32_MAX), &span, deadline, done)
                    self._copy(&span, <char *>view.buf + done * self._slot_size, True)
                    shmring_put_commit(p.ptr, &span)
                    done += span.n
            finally:
                self._leave()
        finally:
            PyBuffer_Release(&view)

    def get_array(self, max_items=None, block=True, timeout=None, out=None):
        """Remove 1..max_items records and return them as an array of the dtype.

        With out= (a writable 1-D C-contiguous array of the dtype), fill it from
        the start instead, allocating nothing, and return the count.
        """
        cdef uint64_t deadline
        cdef Py_buffer view
        cdef shmring_span_t span
        cdef Py_ssize_t limit, got = 0
        cdef _Participant p
        cdef bint fill = out is not None
        self._records_only("get_array()")
        _deadline(block, timeout, &deadline)
        # Everything that can fail is done before claiming: nothing is taken then.
        if fill:
            if out is not self._as_records(out):
                raise ValueError("out= must be C-contiguous (it is filled in place)")
            limit = len(out) if max_items is None else min(self._how_many(max_items, "max_items"), len(out))
        else:
            limit = self._how_many(max_items, "max_items")
        if limit < 1:
            raise ValueError(f"'max_items' (and len(out)) must be at least 1, got {limit}")
        if not fill:  # room for what is there (some at least, to wait for), trimmed after
            out = numpy().empty(self._room_for(limit), self.dtype)
            limit = len(out)  # never claim more than there is room for
        try:
            PyObject_GetBuffer(out, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
        except (BufferError, ValueError):
            raise ValueError("out= must be a writable array (it is filled in place)") from None
        try:
            p = self._enter()
            try:
                self._claim(False, p, <uint32_t>min(limit, UINT32_MAX), &span, deadline, 0)
                while True:
                    self._copy(&span, <char *>view.buf + got * self._slot_size, False)
                    shmring_get_release(p.ptr, &span)
                    got += span.n
                    # out=: fill it further with what else is there, never waiting
                    if not fill or got >= limit or shmring_get_claim(
                            p.ptr, <uint32_t>min(limit - got, UINT32_MAX), 0, &span) <= 0:
                        break
            finally:
                self._leave()
        finally:
            PyBuffer_Release(&view)
        if fill:
            return got
        if got < len(out):
            try:
                # gives back the unused room; the records are in it (subarray dtypes: more dimensions)
                out.resize((got,) + out.shape[1:], refcheck=False)
            except BaseException:
                self._count_lost(got)
                raise
        return out

    cdef Py_ssize_t _room_for(self, Py_ssize_t limit) except -1:
        """How many records get_array allocates for before claiming: what the queue
        holds now (it may grow meanwhile: a claim takes at most this), and at least
        64 KiB worth, so that a consumer waiting on an empty queue still takes batches."""
        cdef shmring_stats_t st
        if self._ring == NULL:
            raise errors.QueueClosed(f"queue {self.name!r} is closed")
        shmring_get_stats(self._ring, &st)
        cdef uint64_t there = st.write_pos - st.read_pos if st.write_pos > st.read_pos else 0
        cdef uint64_t least = max(<uint64_t>1, ROOM_BYTES // self._slot_size)
        return <Py_ssize_t>min(<uint64_t>limit, self._maxsize, max(there, least))

    cdef object _slot_array(self, bint writable):
        """The payload area as one array of records (made once per handle): the
        arrays of reservations and views are slices of it, cheaper to make than
        an array each (a view of 4096 records costs about as much as copying them)."""
        cdef object slots = self._reserve_slots if writable else self._view_slots
        if slots is None:
            if self._closing or self._ring == NULL:
                raise errors.QueueClosed(f"queue {self.name!r} is closed")
            capacity = shmring_capacity(self._ring)
            buf = _SlotBuffer._make(self._map, <char *>shmring_slot_payload(self._ring, 0),
                                    capacity * self._slot_size, not writable)
            slots = numpy().ndarray((capacity,), self.dtype, buffer=buf)
            if writable:
                self._reserve_slots = slots
            else:
                self._view_slots = slots
        return slots

    cdef object _open_span(self, bint put, Py_ssize_t n, object block, object timeout):
        """Claim a contiguous run for a reservation or a view; (participant, span, array)."""
        cdef uint64_t deadline
        cdef shmring_span_t span
        cdef _Participant p
        cdef Py_ssize_t first
        _deadline(block, timeout, &deadline)
        slots = self._slot_array(put)
        p = self._enter()
        try:
            self._claim(put, p, <uint32_t>min(n, UINT32_MAX), &span, deadline, 0, SHMRING_CLAIM_CONTIGUOUS)
        except BaseException:
            self._leave()
            raise
        p.holding = True
        first = (shmring_slot_payload(self._ring, span.pos) - shmring_slot_payload(self._ring, 0)) // self._slot_size
        try:
            array = slots[first:first + span.n]  # the claim does not wrap (CONTIGUOUS)
        except BaseException:  # out of memory: a reservation is aborted, a view's records are lost
            self._end_span(p, &span, put, 0)
            if not put:
                self._count_lost(span.n)
            raise
        return p, span.pos, span.n, array

    cdef void _end_span(self, _Participant p, shmring_span_t *span, bint put, uint32_t keep) noexcept:
        if put:
            shmring_put_commit_partial(p.ptr, span, keep)
        else:
            shmring_get_release(p.ptr, span)
        p.holding = False
        self._leave()

    def reserve(self, n, block=True, timeout=None):
        """Claim up to n free slots as a writable array (fewer if the ring wraps).

        Fill it and commit: ``with q.reserve(n) as arr: arr[:] = ...`` commits on
        exit (an exception aborts instead: the slots are skipped); or call
        ``r = q.reserve(n); ...; r.commit(count)``. Until then this thread can do
        nothing else with the queue. After commit the array is marked read-only
        and no longer the queue's business (do not write through its base).
        """
        self._records_only("reserve()")
        p, pos, count, array = self._open_span(True, self._how_many(n, "n"), block, timeout)
        return _Span._make(self, p, pos, count, array, True)

    def view(self, max_items=None, block=True, timeout=None):
        """Claim up to max_items ready records as a read-only array, without copying.

        ``with q.view(n) as arr: total += arr["qty"].sum()`` releases the records
        on exit (or call ``v.release()``). Until then this thread can do nothing
        else with the queue. After release the array still exists but shows
        whatever the ring holds by then: copy what must outlive it.
        """
        self._records_only("view()")
        p, pos, count, array = self._open_span(False, self._how_many(max_items, "max_items"),
                                               block, timeout)
        return _Span._make(self, p, pos, count, array, False)

    def peek_array(self, max_items=None, block=True, timeout=None):
        """view() for explicit use: ``v = q.peek_array(n); v.array; v.release()``."""
        return self.view(max_items, block, timeout)


    def task_done(self):
        """Mark one message taken with get*() as processed (see join())."""
        cdef _Participant p = self._enter()
        cdef int rc = shmring_task_done(p.ptr, 1)
        self._leave()
        if rc == SHMRING_EJOIN:
            raise ValueError("task_done() called too many times")

    def join(self, timeout=None):
        """Block until every message ever put has been marked with task_done().

        Works across processes. Returns True, or False if timeout passed first.
        Messages lost to processes that died holding them count as done.
        """
        cdef uint64_t deadline, recover_at
        cdef uint32_t spin = SPIN
        cdef _Participant p
        _deadline(True, timeout, &deadline)
        p = self._enter()
        recover_at = shmring_now_ns() + self._recover_after_ns
        try:
            while shmring_unfinished(self._ring) != 0:
                # what join waits for can be held anywhere: recover every recover_after
                if shmring_now_ns() >= recover_at:
                    with nogil:
                        shmring_recover(self._ring)
                    recover_at = shmring_now_ns() + self._recover_after_ns
                    continue
                if not self._wait(p, SHMRING_WAIT_JOINED, deadline, spin, recover_at):
                    return False
                spin = 0
        finally:
            self._leave()
        return True

    def qsize(self):
        """Approximate number of messages in the queue (exact when it is quiet)."""
        cdef shmring_stats_t st
        if self._ring == NULL:
            raise errors.QueueClosed(f"queue {self.name!r} is closed")
        shmring_get_stats(self._ring, &st)
        return min(st.write_pos - st.read_pos, self._maxsize)

    def empty(self):
        """True if the queue looked empty (approximate, like qsize())."""
        return self.qsize() == 0

    def full(self):
        """True if the queue looked full (approximate, like qsize())."""
        return self.qsize() >= self._maxsize

    def stats(self):
        """Counters of the ring as a dict (a racy snapshot, exact when quiet)."""
        cdef shmring_stats_t st
        if self._ring == NULL:
            raise errors.QueueClosed(f"queue {self.name!r} is closed")
        shmring_get_stats(self._ring, &st)
        return {
            "put": st.write_pos,
            "got": st.read_pos,
            "tasks_done": st.tasks_done,
            "lost": st.lost,
            "recoveries": st.recoveries,
            "readers_waiting": st.readers_waiting,
            "writers_waiting": st.writers_waiting,
            "participants": shmring_participants_alive(self._ring),
        }


@cython.no_gc_clear
cdef class _Span:
    """A reservation (writable, committed at the end) or a view (read-only,
    released at the end) of consecutive slots of a records queue."""
    cdef RingQueue queue
    cdef _Participant p
    cdef shmring_span_t span
    cdef bint put, done
    cdef long fork                   # _forks of the process that made it
    cdef readonly object array

    @staticmethod
    cdef _Span _make(RingQueue queue, _Participant p, uint64_t pos, uint32_t n, object array, bint put):
        cdef _Span s = _Span.__new__(_Span)
        s.queue, s.p, s.array, s.put, s.fork = queue, p, array, put, _forks
        s.span.pos, s.span.n = pos, n
        return s

    cdef _finish(self, uint32_t keep):
        if self.queue is None:
            raise TypeError("not a reservation or view made by a queue")
        if self.done:
            raise ValueError("already committed" if self.put else "already released")
        if self.fork != _forks:
            raise RuntimeError("a reservation or view belongs to the process that made it")
        self.done = True
        if self.put:
            self.array.flags.writeable = False
        self.queue._end_span(self.p, &self.span, self.put, keep)

    def commit(self, count=None):
        """Publish the first `count` records (all by default); the rest are skipped."""
        if not self.put:
            raise TypeError("a view is released, not committed")
        keep = self.span.n if count is None else count
        if not 0 <= keep <= self.span.n:
            raise ValueError(f"count must be within 0..{self.span.n} (the records reserved), got {count!r}")
        self._finish(keep)

    def release(self):
        """Hand the viewed records back to producers."""
        if self.put:
            raise TypeError("a reservation is committed, not released")
        self._finish(0)

    def __len__(self):
        return self.span.n

    def __enter__(self):
        return self.array

    def __exit__(self, exc_type, exc, tb):
        if not self.done:
            self._finish(self.span.n if exc_type is None else 0)

    def __dealloc__(self):
        # Forgotten: abort a reservation (its slots are skipped), release a view.
        if not self.done and self.queue is not None and self.fork == _forks:
            self.done = True
            self.queue._end_span(self.p, &self.span, self.put, 0)
