"""Binding of the C ring (csrc/): handles and the primitives of each ring kind.

Thin by design: typed handles, argument conversion, the GIL released around
every wait, C result codes turned into exceptions in one place (_raise_rc).
Waits are sliced: C sleeps at most SLICE_NS, then we check signals (Ctrl-C), the
deadline and whether the handle was closed, and go round again.

RingHandle is what every ring kind shares (opening, closing, fork repair, one
participant per thread, the mapping's lifetime, the codec's callables);
QueueHandle adds the queue's primitives, TopicHandle the topic's (with
_Subscription, one subscriber of it). What a message is - pickle, bytes, numpy records - is policy, in
codec.py, handed to the handle as callables; defaults, names, pickling of
handles and lifetime at exit are in queue.py and lifetime.py. This module
imports nothing from the package but shmring.errors.
"""
from cpython.buffer cimport (
    PyBUF_C_CONTIGUOUS,
    PyBUF_ND,
    PyBUF_SIMPLE,
    PyBUF_WRITABLE,
    PyBuffer_FillInfo,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno
from libc.stdint cimport UINT32_MAX, UINT64_MAX, int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.pyport cimport PY_SSIZE_T_MAX
from cpython.ref cimport Py_CLEAR, PyObject
from posix.unistd cimport getpid

cimport cython

from shmring._cshmring cimport *

import numbers
import os
import threading

from shmring import errors  # the binding's only import from the package


ctypedef int (*claim_fn)(shmring_participant_t *, uint32_t, int, shmring_span_t *) noexcept nogil


cdef int _topic_claim(shmring_participant_t *me, uint32_t max_n, int flags, shmring_span_t *span) noexcept nogil:
    """A topic's publish claim as a claim_fn (it takes no flags)."""
    return shmring_topic_publish_claim(me, max_n, span)


cdef extern from "pythread.h":
    unsigned long PyThread_get_thread_ident()


cdef extern from *:
    """
    #include <stdatomic.h>
    #include <stdint.h>
    /* L1: a word of a worker's lease (shmring/workers/), stored after what it
     * describes. Its partners are not concurrent loads: whoever relies on the
     * entries reads them after learning from the kernel that the writer died
     * (waitpid, a sentinel), which orders everything the dead process stored
     * before it. What must hold is program order against a SIGKILL at any
     * instruction (count never ahead of its entries), so a signal fence (a
     * compiler barrier) and a relaxed store are enough; stats() reads the word
     * alone, racily, which relaxed allows. */
    #define SHMRING_LEASE_STORE(word, value, type) do { \
        atomic_signal_fence(memory_order_release); \
        atomic_store_explicit((_Atomic type *)(word), (value), memory_order_relaxed); \
        atomic_signal_fence(memory_order_release); \
    } while (0)
    static inline void shmring_lease_store(uint32_t *word, uint32_t value) { SHMRING_LEASE_STORE(word, value, uint32_t); }
    static inline void shmring_lease_store64(uint64_t *word, uint64_t value) { SHMRING_LEASE_STORE(word, value, uint64_t); }
    """
    void shmring_lease_store(uint32_t *word, uint32_t value) nogil
    void shmring_lease_store64(uint64_t *word, uint64_t value) nogil


cdef extern from *:
    """
    #include <string.h>
    /* A subscriber's key against the last one's: keys are short, and a call
     * to memcmp cost more than the compare. */
    static inline int shmring_same_key(const char *a, const char *b, size_t n)
    {
        if (n > 16)
            return memcmp(a, b, n) == 0;
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i])
                return 0;
        return 1;
    }
    /* The (key, payload) pair a receive returns, in *last's tuple again when
     * nobody else holds it (the caller dropped it, as zip() finds its result
     * tuple), else in a new one kept in *last. Its items are bytes, which the
     * cycle collector need not see: a tuple it untracked stays so. Not where
     * references are counted per thread (free-threaded builds): there a count
     * of 1 may be stale; nor from 3.14 on, where a tuple caches its hash in
     * itself (a pair hashed, dropped and refilled would keep the old one). */
    static PyObject *shmring_pair(PyObject **last, PyObject *key, const char *data, Py_ssize_t size)
    {
        PyObject *t = *last, *payload = PyBytes_FromStringAndSize(data, size);
        if (payload == NULL)
            return NULL;
    #if !defined(Py_GIL_DISABLED) && PY_VERSION_HEX < 0x030E0000
        if (t != NULL && Py_REFCNT(t) == 1) {
            PyObject *k = PyTuple_GET_ITEM(t, 0), *d = PyTuple_GET_ITEM(t, 1);
            Py_INCREF(key);
            PyTuple_SET_ITEM(t, 0, key);
            PyTuple_SET_ITEM(t, 1, payload);
            Py_DECREF(k);
            Py_DECREF(d);
            Py_INCREF(t);
            return t;
        }
    #endif
        t = PyTuple_New(2);
        if (t == NULL) {
            Py_DECREF(payload);
            return NULL;
        }
        Py_INCREF(key);
        PyTuple_SET_ITEM(t, 0, key);
        PyTuple_SET_ITEM(t, 1, payload);
        Py_XSETREF(*last, t);
        Py_INCREF(t);
        return t;
    }
    """
    bint shmring_same_key(const char *a, const char *b, size_t n) nogil
    object shmring_pair(PyObject **last, object key, const char *data, Py_ssize_t size)


# Longest a C wait lasts before we look at signals, the deadline and close().
cdef uint64_t SLICE_NS = 50_000_000
# Busy-wait rounds before the first sleep of a blocking call (tens of microseconds),
# and the few rounds tried first while still holding the GIL.
cdef uint32_t SPIN = 2000
cdef uint32_t SPIN_WITH_GIL = 50
# Copies larger than this release the GIL (the claim keeps the slots ours meanwhile).
cdef uint64_t COPY_WITHOUT_GIL = 256 * 1024
# get_array allocates room for at least this many bytes of records before it claims.
cdef uint64_t ROOM_BYTES = 64 * 1024
# A topic's publisher waiting for a slot that a publisher a lap behind still
# writes looks again this often (that commit wakes subscribers, not publishers).
cdef uint64_t LAP_WAIT_NS = 2_000_000


# encode takes the object alone (see QueueHandle._set_codec)
cdef object _NO_ARG = object()


# Forks this process descends through. "Is this still the process that made
# it?" is asked of this, not of the pid: a child in a new pid namespace can have
# its parent's pid (both 1). Counted before any handle's own fork hook runs.
cdef long _forks = 0


def _count_fork():
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)


def _fork_count():
    """Forks this process descends through (policy layers tell a forked child by it)."""
    return _forks


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
        if rc == SHMRING_EKIND:
            rc = shmring_attach(c_name, SHMRING_KIND_TOPIC, SHMRING_ATTACH_READONLY, &ring)
    if rc != SHMRING_OK:
        _raise_rc(rc, name, _detail())
    try:
        shmring_params(ring, &params)
        shmring_info(ring, &info)
        topic = params.kind == SHMRING_KIND_TOPIC
        found = {
            "name": name,
            "kind": ("records topic" if topic else "records") if params.records else ("topic" if topic else "queue"),
            # for display: a schema that is not UTF-8 shows as escapes, whatever it holds
            "schema": params.schema.decode("utf-8", "backslashreplace") if params.records else None,
            "maxsize": params.maxsize,
            "msg_size": params.slot_size,
            "creator_pid": info.creator_pid,
            "created_unix_ns": info.created_unix_ns,
            "bytes": info.mapped_size,
            "participants": info.participants,
            "participants_alive": info.participants_alive,
            "lock_file": _lock_file_name(ring),
        }
        if topic:
            found["policy"] = "overwrite" if params.policy == SHMRING_POLICY_OVERWRITE else "block"
            found["max_topic_len"], found["max_subscribers"] = params.max_topic_len, params.max_subscribers
            found.update(_topic_stats(ring, params.max_subscribers))
            return found
        shmring_queue_stats(ring, &st)
        found.update(_queue_counters(&st))
        found["fill"] = st.write_pos - st.read_pos
        return found
    finally:
        shmring_close(ring)


cdef dict _queue_counters(const shmring_stats_t *st):
    """A queue's counters as stats() and inspect() show them."""
    return {
        "put": st.write_pos,
        "got": st.read_pos,
        "tasks_done": st.tasks_done,
        "lost": st.lost,
        "recoveries": st.recoveries,
        "discarded": st.discarded,
        "expired": st.expired,
        "shut_down": st.shut != SHMRING_SHUT_NO,
        "shut_down_immediate": st.shut == SHMRING_SHUT_IMMEDIATE,
        "readers_waiting": st.readers_waiting,
        "writers_waiting": st.writers_waiting,
    }


cdef object _lock_file_name(const shmring_t *ring):
    cdef const char *lock = shmring_lock_file(ring)
    return None if lock == NULL else lock[1:].decode()


def _create_died(str name):
    """Whether segment `name` was left unpublished by a creator that died making
    it (shmring rm): only then may a segment without our magic be removed."""
    cdef int rc = shmring_create_died(_segment_name(name))
    if rc < 0:
        _raise_rc(rc, name, _detail())
    return rc == 1


def _unlink_segment(str name):
    """Remove a segment's name (shmring rm); mappings that exist stay valid."""
    cdef int rc = shmring_unlink(_segment_name(name))
    if rc != SHMRING_OK:
        _raise_rc(rc, name, _detail())


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


# The exception each SHMRING_E* code raises. A code not listed is one of attach's
# validation failures (truncated, bad magic, bad offsets...): a SegmentError.
_ERRORS = {
    SHMRING_ESYS: errors.SystemCallError,       # OSError(errno, text): errno kept
    SHMRING_EINVAL: errors.InvalidArgument,
    SHMRING_ENAME: errors.InvalidArgument,
    SHMRING_ETOOBIG: errors.InvalidArgument,
    SHMRING_EJOIN: errors.InvalidArgument,
    SHMRING_EINTR: errors.InvalidArgument,
    SHMRING_ENOTFOUND: errors.SegmentNotFound,
    SHMRING_EEXIST: errors.SegmentExists,
    SHMRING_ELOCKFILE: errors.SegmentExists,
    SHMRING_EPERM: errors.PermissionDenied,
    SHMRING_ENOMEM: errors.OutOfMemory,
    SHMRING_EFULLTABLE: errors.TooManyParticipants,
    SHMRING_ECORRUPT: errors.SegmentError,
    SHMRING_EUNTRUSTED: errors.UntrustedSegment,
    SHMRING_ESHUTDOWN: errors.ShutDown,
    SHMRING_EFULLSUBS: errors.TooManyParticipants,
    SHMRING_ERECORD: errors.InvalidArgument,
}
# How their messages read where not "{what}" (the C reason, the name, the detail).
_TEMPLATES = {
    SHMRING_ESYS: "{strerror} ({what})",
    SHMRING_EUNTRUSTED: "{what}; attach with allow_world_writable=True to trust it anyway",
}


cdef str _detail():
    """The C layer's reason for this thread's last failed create / attach /
    unlink (it names the value and the limit), or None."""
    cdef const char *d = shmring_error_detail()
    return d.decode("utf-8", "backslashreplace") if d[0] else None


cdef int _raise_rc(int rc, object name, str detail=None) except -1:
    """Raise the exception of a SHMRING_E* code (see _ERRORS): the C reason, the
    segment's name, then `detail` (what the value and the limit were) if any."""
    cdef int err = errno
    what = shmring_strerror(rc).decode()
    if name is not None:
        what = f"{what}: {name!r}"
    if detail:
        what = f"{what}: {detail}"
    cls = _ERRORS.get(rc, errors.SegmentError)
    text = _TEMPLATES.get(rc, "{what}").format(what=what, strerror=os.strerror(err))
    raise errors.system_call_error(err, text) if cls is errors.SystemCallError else cls(text)


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


# ---- message deadlines: put's ttl= / deadline= (queue.c: the queue's area) ----

cdef class Expired:
    """A message whose deadline had passed, handed out by a get with
    ``expired="return"``: ``message`` (as that get hands messages out) and
    ``deadline`` (its CLOCK_MONOTONIC deadline, in seconds)."""
    cdef public object message, deadline

    def __init__(self, message, deadline):
        self.message = message
        self.deadline = deadline

    def __repr__(self):
        return f"Expired({self.message!r}, deadline={self.deadline!r})"

    def __eq__(self, other):
        if type(other) is not Expired:
            return NotImplemented
        return (self.message, self.deadline) == ((<Expired>other).message, (<Expired>other).deadline)

    __hash__ = None  # mutable, as the message it holds

    def __reduce__(self):  # forwarded through queues and pools like any message
        return (Expired, (self.message, self.deadline))


cdef object _DROP = "drop"  # the very object get's default is (the module's constants are one)


# The longest a message may live, in seconds (~9.5 years): a deadline further
# ahead is a mistake (a time.time() value, say).
cdef double TTL_MAX = 3e8


# A worker's lease (QueueHandle._take_leased; the rest of its header is shmring/workers/lease.py's):
# the count word at 0 (u32, messages held), the finishing word (u32, see
# _finish_leased), for _adopt_leased the taker's claim (u64 position at 80, u32
# participant index + 1 at 88, u32 count before the claim at 92), entries from
# LEASE_HEADER on, each LEASE_ENTRY bytes before its payload.
cdef uint64_t C_LEASE_HEADER = 128
cdef uint64_t C_LEASE_FINISHING = 4
cdef uint64_t C_LEASE_CLAIM_POS = 80
cdef uint64_t C_LEASE_TAKER = 88
cdef uint64_t C_LEASE_CLAIM_BASE = 92
cdef uint64_t C_LEASE_ENTRY = 16
cdef uint32_t C_LEASE_CORRUPT = 0xFFFFFFFF
LEASE_HEADER, LEASE_FINISHING, LEASE_TAKER, LEASE_ENTRY, LEASE_CORRUPT = (
    C_LEASE_HEADER, C_LEASE_FINISHING, C_LEASE_TAKER, C_LEASE_ENTRY, C_LEASE_CORRUPT)


cdef int _lease_buffer(object lease, Py_buffer *view) except -1:
    """*view of a lease, checked: writable, C-contiguous, a header long, 8-byte
    aligned (released again if not)."""
    try:
        PyObject_GetBuffer(lease, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
    except (BufferError, ValueError, TypeError):
        raise ValueError("a lease must be a writable C-contiguous buffer") from None
    if <uint64_t>view.len < C_LEASE_HEADER or (<size_t>view.buf) % 8:
        PyBuffer_Release(view)
        raise ValueError("not a lease: too short or not 8-byte aligned")
    return 0


cdef double _seconds(str what, object value) except? -1:
    if type(value) is float:  # the common case, without the ABC's isinstance below
        return <double>value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"'{what}' must be a number of seconds, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"'{what}' must be a number of seconds, got {value!r}: too large") from None


cdef int _one_of(object ttl, object deadline) except -1:
    if ttl is not None and deadline is not None:
        raise TypeError(f"give ttl= or deadline=, not both (got ttl={ttl!r}, deadline={deadline!r})")
    return 0


cdef inline uint64_t _expiry_ns(object ttl, object deadline, uint64_t default_ttl_ns) except 0xFFFFFFFFFFFFFFFF:
    """A message's deadline in CLOCK_MONOTONIC ns (at least 1), or 0: none
    (UINT64_MAX, never a deadline: the error value, so 0 costs no check)."""
    cdef double t
    if ttl is None and deadline is None:
        return shmring_now_ns() + default_ttl_ns if default_ttl_ns else 0
    _one_of(ttl, deadline)
    if ttl is not None:
        t = _seconds("ttl", ttl)
        if not 0 <= t <= TTL_MAX:  # also refuses NaN
            raise ValueError(f"'ttl' must be a number of seconds from 0 to {TTL_MAX:g}, got {ttl!r}")
        return shmring_now_ns() + <uint64_t>(t * 1e9)
    t = _seconds("deadline", deadline)
    if not t * 1e9 <= shmring_now_ns() + TTL_MAX * 1e9:  # also refuses NaN
        raise ValueError(f"'deadline' must be a CLOCK_MONOTONIC time in seconds (time.monotonic() on Linux) "
                         f"at most {TTL_MAX:g} s from now, got {deadline!r} (a time.time() value?)")
    return max(<uint64_t>(t * 1e9), <uint64_t>1) if t > 0 else 1


cdef inline bint _marked(object expired) except -1:
    """get's expired=: "drop" (False) or "return" (True)."""
    if expired is _DROP:  # the default, at the cost of a pointer comparison
        return False
    return _marked_slow(expired)


cdef bint _marked_slow(object expired) except -1:
    if isinstance(expired, str) and expired in ("drop", "return"):
        return expired == "return"
    raise ValueError(f"'expired' must be 'drop' or 'return', got {expired!r}")


cdef object _expiries(object ttl, object deadline, uint64_t default_ttl_ns, Py_ssize_t n):
    """Deadlines of a batch of n messages: None (none), one ns value for all, or
    a list of n (0: none), when ttl= or deadline= is a list or tuple of n."""
    cdef uint64_t one
    _one_of(ttl, deadline)
    for what, given in (("ttl", ttl), ("deadline", deadline)):
        if isinstance(given, (list, tuple)):
            if len(given) != n:
                raise ValueError(f"'{what}' has {len(given)} values for {n} messages: give one, or one per message")
            return [_expiry_ns(g, None, default_ttl_ns) if what == "ttl" else _expiry_ns(None, g, default_ttl_ns)
                    for g in given]
    one = _expiry_ns(ttl, deadline, default_ttl_ns)
    return one if one else None


def default_ttl_ns(seconds):
    """Queue(default_ttl=) checked, in ns (0: None)."""
    if seconds is None:
        return 0
    cdef double t = _seconds("default_ttl", seconds)
    if not 0 < t <= TTL_MAX:  # also refuses NaN
        raise ValueError(f"'default_ttl' must be None or a number of seconds above 0 and at most {TTL_MAX:g}, "
                         f"got {seconds!r}")
    return max(<uint64_t>(t * 1e9), <uint64_t>1)


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
cdef class RingHandle:
    """What a handle on any ring kind is: this process's mapping of one ring, its
    name and ownership, the participant of each thread, fork repair, and the
    accounting that lets close() wait for the calls in flight. A ring kind's
    handle (QueueHandle) adds its primitives on top."""
    cdef _Mapping _map
    cdef shmring_t *_ring            # == _map.ring while open
    cdef uint64_t _slot_size
    cdef uint64_t _maxsize
    cdef bytes _cname                # b"/name"
    cdef bint _owner                 # created by this process: it unlinks
    cdef long _creator_pid
    cdef bint _unlinked
    cdef bint _closing
    cdef bint _records               # fixed-size records (a schema in the segment)
    cdef bytes _schema               # the segment's record schema (records rings), else None
    cdef int _active                 # operations in flight (they may be waiting without the GIL)
    # participant of the first thread that used the handle, then one per other thread
    cdef unsigned long _tid0
    cdef _Participant _part0
    cdef object _local
    cdef long _fork                  # _forks when this process got the handle (a child's fork hook moves it)
    # objects over the payload area that a ring kind makes once per handle (the
    # arrays that views / reservations slice): dropped at close, in this class so
    # that __dealloc__ needs no subclass's fields (Cython has cleared them by then)
    cdef object _view_slots          # read-only
    cdef object _reserve_slots       # writable
    cdef object __weakref__
    cdef bint _topic                 # a topic: its waits are shmring_topic_wait's
    cdef uint64_t _recover_after_ns  # what the C layer was given (shmring_set_recover_after)
    # the codec's single-message callables: encode(obj[, encode_arg]) -> bytes, decode(bytes) -> obj
    cdef object _encode
    cdef object _encode_arg          # _NO_ARG: encode takes the object alone
    cdef object _decode
    # records rings (see _set_records): the codec's check, allocation, trim; the
    # array type and dtype object it vouches for; make_slots, seal for spans
    cdef object _rec_check
    cdef object _rec_new
    cdef object _rec_trim
    cdef object _rec_array_of
    cdef object _rec_type
    cdef object _rec_dtype
    cdef object _rec_seen            # the last other dtype object an array passed check() with
    cdef object _make_slots
    cdef object _seal

    # ---- opening and closing ----

    @cython.final
    cdef int _open_ring(self, str name, uint32_t kind, bint create, shmring_params_t *params,
                        bint trust_writable) except -1:
        """Create (from *params) or attach the ring `name`, then join it from this thread."""
        cdef shmring_t *ring = NULL
        cdef int rc
        cdef bytes cname = _segment_name(name)
        if self._map is not None:
            raise RuntimeError(f"{self._kind_word()} {self.name!r} is open already: a handle opens one ring, once")
        if create:
            rc = shmring_create(cname, params, &ring)
        else:
            rc = shmring_attach(cname, kind, SHMRING_ATTACH_TRUST_WRITABLE if trust_writable else 0, &ring)
        if rc != SHMRING_OK:
            _raise_rc(rc, name, _detail())
        self._map = _Mapping()
        self._map.ring = ring
        self._ring = ring
        shmring_params(ring, params)
        self._slot_size = params.slot_size
        self._maxsize = params.maxsize
        self._records = params.records
        self._schema = params.schema if params.records else None
        self._cname = cname
        self._owner = create
        self._creator_pid = getpid()
        self._fork = _forks
        self._local = threading.local()
        try:
            self._me_slow()  # register this thread now: attached means present
        except BaseException:
            self._unlink_if_owner()
            self._finish_close()  # nobody else has the handle yet
            raise
        return 0

    @cython.final
    cdef int _params(self, shmring_params_t *params, uint32_t kind, uint64_t maxsize, uint64_t msg_size,
                     uint32_t mode, uint32_t max_participants, object recover_after, bytes schema) except -1:
        """What every kind's _open starts with: refuse a second open, take
        recover_after, and the common parameters (schema: a records ring's; the
        kind's own are 0 until it sets them). schema must outlive the open."""
        if self._map is not None:
            raise RuntimeError(f"{self._kind_word()} {self.name!r} is open already: a handle opens one ring, once")
        self._recover_after_ns = _recover_after_ns(recover_after)
        params.slot_size = msg_size
        params.maxsize = maxsize
        params.kind = kind
        params.max_participants = max_participants
        params.mode = mode
        params.records = schema is not None
        params.schema = schema if schema is not None else b""
        params.max_subscribers = params.max_topic_len = params.policy = 0
        return 0

    @cython.final
    cdef void _unlink_if_owner(self) noexcept:
        if self._owner and not self._unlinked and getpid() == self._creator_pid and self._ring != NULL:
            shmring_remove(self._ring)  # only our segment: its name may be another ring's by now
            self._unlinked = True

    @cython.final
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

    @cython.final
    cdef str _kind_word(self):
        return "topic" if self._topic else "queue"

    @property
    def maxsize(self):
        """Most messages the queue holds at once (exact)."""
        return self._maxsize

    @property
    def msg_size(self):
        """Largest encoded message in bytes."""
        return self._slot_size

    @property
    def name(self):
        """Name of the shared-memory segment (without the leading '/')."""
        return self._cname[1:].decode("ascii") if self._cname is not None else None

    @property
    def recover_after(self):
        """Seconds a blocked call waits before recovering from dead participants."""
        return self._recover_after_ns / 1e9

    @property
    def _schema_bytes(self):
        """The record schema the segment holds (a records ring), else None."""
        return self._schema

    # ---- the codec (codec.py installs it at open) ----

    def _set_codec(self, encode, decode, encode_arg=_NO_ARG):
        """What put/get (and put_many/get_many) do with objects: `encode(obj,
        encode_arg)` (or `encode(obj)`) returns the message's bytes, `decode(raw)`
        the object. Called from here, they cost one C-level call each (a
        functools.partial with a keyword would cost a dict per call)."""
        if self._encode is not None:
            raise RuntimeError(f"{self._kind_word()} {self.name!r} has its codec already: it is set once, at open")
        if not callable(encode) or not callable(decode):
            raise TypeError(f"encode and decode must be callable, got {encode!r} and {decode!r}")
        self._encode, self._decode, self._encode_arg = encode, decode, encode_arg

    def _set_records(self, *, check, new, trim, array_of, array_type, dtype, make_slots, seal):
        """What records are, for a records ring (the codec's policy, as callables):

        - ``check(arr)``: raise TypeError / ValueError naming what is wrong, or
          return arr as a C-contiguous 1-D array of records (copied if need be);
          ``type(arr) is array_type and arr.dtype is dtype`` (that very object)
          with a 1-D C-contiguous buffer is taken as checked;
        - ``new(count, dtype)``: a new writable array of `count` records;
          ``trim(arr, count)``: arr cut to its first `count` records;
          ``array_of(items)``: put_many's items as an array of records (cast as
          numpy casts); get_many returns the records of get_array as a list;
        - ``make_slots(buffer, count)``: once per handle and way, a sliceable over
          the `count` slots of a buffer over the payload area (read-only for
          views, writable for reservations); ``seal(part)``: called on a
          reservation's slice once it is committed (to mark it read-only).
        """
        for what, fn in (("check", check), ("new", new), ("trim", trim), ("array_of", array_of),
                         ("make_slots", make_slots), ("seal", seal)):
            if not callable(fn):
                raise TypeError(f"{what} must be callable, got {fn!r}")
        if not isinstance(array_type, type):
            raise TypeError(f"array_type must be a type, got {array_type!r}")
        self._records_ring("_set_records()")
        if self._rec_check is not None:
            raise RuntimeError(f"{self._kind_word()} {self.name!r} has its records already: they are set once, at open")
        if getattr(dtype, "itemsize", None) != self._slot_size:
            raise ValueError(f"a record of {dtype!r} is not {self._slot_size} bytes, this {self._kind_word()}'s "
                             f"slot size")
        self._rec_check, self._rec_new, self._rec_trim, self._rec_array_of = check, new, trim, array_of
        self._rec_type, self._rec_dtype = array_type, dtype
        self._make_slots, self._seal = make_slots, seal

    @cython.final
    cdef object _records_ring(self, what):
        if not self._records:
            raise TypeError(f"{what} needs a records {self._kind_word()}: "
                            f"{'Topic(capacity' if self._topic else 'Queue(maxsize'}, dtype=...)")

    @cython.final
    cdef object _records_only(self, what):
        self._records_ring(what)
        if self._rec_check is None:
            raise TypeError(f"this handle has no records codec: {what} needs one "
                            f"(shmring.{'Topic' if self._topic else 'Queue'} sets it)")

    @cython.final
    cdef inline object _encoded(self, obj):
        if self._encode_arg is _NO_ARG:
            return self._encode(obj)
        return self._encode(obj, self._encode_arg)

    @cython.final
    cdef inline int _codec_set(self) except -1:
        if self._encode is None:
            raise TypeError(f"this handle has no codec: {'publish/recv' if self._topic else 'put/get'} need one "
                            f"(shmring.{'Topic' if self._topic else 'Queue'} sets it)")
        return 0

    # ---- participants and in-flight accounting ----

    @cython.final
    cdef _Participant _join(self):
        cdef _Participant p = _Participant.__new__(_Participant)
        cdef int rc = shmring_participant_join(self._ring, &p.ptr)
        if rc != SHMRING_OK:
            _raise_rc(rc, self.name)
        p.mapping = self._map
        return p

    @cython.final
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

    @cython.final
    cdef inline _Participant _me(self):
        """This thread's participant (joining at first use)."""
        if PyThread_get_thread_ident() == self._tid0:
            return self._part0
        return self._me_slow()

    @cython.final
    cdef inline _Participant _enter(self):
        """Start an operation: this thread's participant; close() waits for us."""
        cdef _Participant p = self._part0
        # the common case, inlined: the first thread, open, holding no claim
        if (not self._closing and self._ring != NULL and p is not None
                and PyThread_get_thread_ident() == self._tid0 and not p.holding):
            self._active += 1
            return p
        return self._enter_checked()

    @cython.final
    cdef _Participant _enter_checked(self):
        cdef _Participant p
        if self._closing or self._ring == NULL:
            raise errors.QueueClosed(f"{self._kind_word()} {self.name!r} is closed")
        p = self._me()
        if p.holding and self._topic:
            raise RuntimeError(
                f"this thread holds a claim on the topic {self.name!r} (a publish waiting to write it when a "
                "signal handler or finalizer ran): publish from there once that call returned")
        if p.holding:
            raise RuntimeError(
                "this thread holds a claim on the queue (an open reserve() or view(), or "
                "a message being taken when a finalizer ran): commit or release it first")
        self._active += 1
        return p

    @cython.final
    cdef inline void _leave(self) noexcept:
        self._active -= 1
        if self._closing and self._active == 0:
            self._finish_close()

    @cython.final
    cdef int _wait(self, _Participant p, int what, uint64_t deadline, uint32_t spin,
                   uint64_t wake_by, shmring_topic_sub_t *sub=NULL, const shmring_span_t *span=NULL) except -1:
        """Wait one slice for `what`, at most until wake_by (0: no bound); a
        topic's waits say for which subscriber, or which pending claim.
        1: try again; 0: the deadline has passed."""
        cdef uint64_t now = shmring_now_ns(), slice_ns = SLICE_NS
        cdef shmring_participant_t *me = p.ptr
        cdef int rc
        cdef bint topic = self._topic
        if deadline == 0 or now >= deadline:
            return 0
        if deadline != UINT64_MAX and deadline - now < slice_ns:
            slice_ns = deadline - now
        if wake_by != 0:
            slice_ns = min(slice_ns, wake_by - now if wake_by > now else 0)
        with nogil:
            if topic:
                rc = shmring_topic_wait(me, sub, span, what, slice_ns, spin)
            else:
                rc = shmring_queue_wait(me, what, slice_ns, spin)
        # SHMRING_EINTR: a signal came; its handler runs here. Also after any
        # other result, for a signal that came to another thread meanwhile.
        PyErr_CheckSignals()
        if rc < 0 and rc != SHMRING_EINTR:
            _raise_rc(rc, self.name)
        if self._closing:
            raise errors.QueueClosed(f"{self._kind_word()} {self.name!r} was closed while waiting")
        return 1

    @cython.final
    cdef int _until(self, _Participant p, int what, uint64_t deadline, uint32_t *spin,
                    shmring_topic_sub_t *sub=NULL, const shmring_span_t *span=NULL,
                    uint64_t wake_by=0) except -1:
        """What a call does after its attempt found nothing. The C layer decides
        whether what it waits for has been held by an unfinished claim long enough
        (recover_after, across calls: polling counts too) and recovers, or (a
        topic's publishers) whether a slow subscriber is detached: then 1, attempt
        again at once. Else one wait slice (spinning *spin rounds first, the first
        time), at most until the C layer's time to look again and wake_by: 1,
        attempt again; 0, the deadline passed."""
        cdef shmring_t *ring = self._ring
        cdef shmring_participant_t *me = p.ptr
        cdef bint topic = self._topic
        cdef uint64_t recheck = 0
        cdef int ran
        with nogil:  # recovery makes system calls
            if topic:
                ran = shmring_topic_unstick(me, sub, span, what, 0, &recheck)
            else:
                ran = shmring_queue_unstick(ring, what, 0, &recheck)
        if ran == 1:
            return 1
        if wake_by != 0 and (recheck == 0 or recheck > wake_by):
            recheck = wake_by
        ran = self._wait(p, what, deadline, spin[0], recheck, sub, span)
        spin[0] = 0
        return ran

    @cython.final
    cdef int _claim(self, bint put, _Participant p, uint32_t max_n, shmring_span_t *span,
                    uint64_t deadline, Py_ssize_t done, int flags=0) except -1:
        """Claim 1..max_n slots to write (put, or a topic's publish) or messages to
        read (a queue's get), waiting as asked. Raises Full (with `done` as its
        count) or Empty when the deadline passes, ShutDown (with `done`) once
        shut down."""
        cdef claim_fn claim = (_topic_claim if self._topic else
                               shmring_queue_put_claim if put else shmring_queue_get_claim)
        cdef int what = SHMRING_WAIT_WRITABLE if put else SHMRING_WAIT_READABLE
        cdef uint32_t spin = SPIN
        cdef int n = claim(p.ptr, max_n, flags, span)
        if n == 0 and deadline != 0:
            # What arrives within a microsecond or so is cheaper to wait for
            # holding the GIL than with a GIL hand-off.
            if self._topic:
                shmring_topic_wait(p.ptr, NULL, NULL, what, 0, SPIN_WITH_GIL)
            else:
                shmring_queue_wait(p.ptr, what, 0, SPIN_WITH_GIL)
            n = claim(p.ptr, max_n, flags, span)
        while n == 0 and self._until(p, what, deadline, &spin):
            n = claim(p.ptr, max_n, flags, span)
        if n == 0 and put:
            raise errors.Full(f"{self._kind_word()} {self.name!r} is full" +
                              (f": its slowest subscriber is {self._maxsize} messages behind" if self._topic else ""),
                              done)
        if n == 0:
            raise errors.Empty(f"queue {self.name!r} is empty")
        if n == SHMRING_ESHUTDOWN:  # with `done` as its count, as Full
            raise errors.ShutDown(f"topic {self.name!r} is shut down: publishing stopped" if self._topic else
                                  f"queue {self.name!r} is shut down: puts refused" if put else
                                  f"queue {self.name!r} is shut down and drained", done)
        if n < 0:
            _raise_rc(n, self.name)
        return n

    @cython.final
    cdef int _check_sizes(self, list encoded) except -1:
        """Every item of a batch as bytes (bytes-like only), each within msg_size."""
        cdef Py_ssize_t i, size
        for i in range(len(encoded)):
            if type(encoded[i]) is not bytes:
                encoded[i] = _as_bytes(encoded[i], i)
            size = PyBytes_GET_SIZE(encoded[i])
            if <uint64_t>size > self._slot_size:
                raise self._too_large(size)
        return 0

    cdef object _too_large(self, Py_ssize_t size):
        """MessageTooLarge for a message of `size` bytes (a topic's names its keys' own limit)."""
        if self._topic:
            return errors.MessageTooLarge(size, self._slot_size, "topic", getattr(self, "max_topic_len"))
        return errors.MessageTooLarge(size, self._slot_size)

    @cython.final
    cdef int _begin(self, _Participant p, shmring_span_t *span, uint64_t deadline, Py_ssize_t done) except -1:
        """Wait until a claim's slots may be written. A claim given up (timeout,
        Ctrl-C) is committed as holes, which subscribers skip."""
        cdef uint32_t spin = 0
        if shmring_topic_publish_begin(p.ptr, span):
            return 0
        p.holding = True
        try:
            while not shmring_topic_publish_begin(p.ptr, span):
                if not self._until(p, SHMRING_WAIT_WRITABLE, deadline, &spin, NULL, span,
                                   shmring_now_ns() + LAP_WAIT_NS):
                    raise errors.Full(f"topic {self.name!r} is full: its slowest subscriber is "
                                      f"{self._maxsize} messages behind", done)
        except BaseException:
            shmring_topic_publish_commit(p.ptr, span, 0)
            raise
        finally:
            p.holding = False
        return 0

    @cython.final
    cdef int _put_many(self, list encoded, uint64_t deadline, list keys=None, object expires=None) except -1:
        """Put bytes objects in order (a topic: publish them, under keys); all are
        checked before any is put. expires: _expiries'."""
        self._check_sizes(encoded)
        return self._put_runs(len(encoded), encoded, NULL, deadline, keys, None, expires)

    @cython.final
    cdef int _put_view(self, Py_buffer *view, uint64_t deadline, bytes key=None, object expires=None) except -1:
        """Put the records of a C-contiguous buffer (a topic: under key), streaming as space frees."""
        if <uint64_t>view.len % self._slot_size:
            raise ValueError(f"a buffer of {view.len} bytes is not a whole number of "
                             f"{self._slot_size}-byte records")
        return self._put_runs(<Py_ssize_t>(<uint64_t>view.len // self._slot_size), None, <const char *>view.buf,
                              deadline, None, key, expires)

    @cython.final
    cdef int _put_runs(self, Py_ssize_t total, list encoded, const char *records, uint64_t deadline,
                       list keys, bytes key=None, object expires=None) except -1:
        """Put `total` messages in order, one claim per run (a topic: publish them):
        the bytes objects of `encoded` (under `keys`), or whole records of slot_size
        bytes from `records` (under `key`); a queue's with the deadlines `expires`
        (_expiries: None, one for all, or one per message)."""
        cdef Py_ssize_t done = 0
        cdef uint32_t k
        cdef shmring_span_t span
        cdef _Participant p
        cdef bytes b, kb
        # one deadline for all: _set_expiries writes every claimed slot's
        cdef int flags = SHMRING_CLAIM_EXPIRY_SET if expires is not None and type(expires) is not list else 0
        if total == 0:
            return 0
        p = self._enter()
        try:
            while done < total:
                self._claim(True, p, <uint32_t>min(total - done, UINT32_MAX), &span, deadline, done, flags)
                if self._topic:
                    self._begin(p, &span, deadline, done)
                if records != NULL and self._topic:
                    kb = key if key is not None else b""
                    shmring_topic_fill_records(self._ring, &span, records + done * self._slot_size,
                                               PyBytes_AS_STRING(kb), <uint32_t>PyBytes_GET_SIZE(kb))
                elif records != NULL:
                    self._copy(&span, <char *>records + done * self._slot_size, True)
                for k in range(span.n if records == NULL else 0):
                    b = encoded[done + k]
                    if keys is None:
                        memcpy(shmring_slot_payload(self._ring, span.pos + k), PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
                        shmring_slot_set_len(self._ring, span.pos + k, <uint32_t>PyBytes_GET_SIZE(b))
                    else:
                        kb = keys[done + k]
                        shmring_topic_fill(self._ring, span.pos + k, PyBytes_AS_STRING(kb),
                                           <uint32_t>PyBytes_GET_SIZE(kb), PyBytes_AS_STRING(b),
                                           <uint32_t>PyBytes_GET_SIZE(b))
                if self._topic:
                    shmring_topic_publish_commit(p.ptr, &span, span.n)
                else:
                    if expires is not None:
                        self._set_expiries(&span, expires, done)
                    shmring_queue_put_commit(p.ptr, &span)
                done += span.n
        finally:
            self._leave()
        return 0

    @cython.final
    cdef int _set_expiries(self, shmring_span_t *span, object expires, Py_ssize_t done) except -1:
        """Deadlines of a claimed span of a batch (_expiries), before its commit."""
        cdef uint32_t k
        cdef uint64_t d
        if type(expires) is not list:
            shmring_queue_set_expiry(self._ring, span.pos, span.n, <uint64_t>expires)
            return 0
        for k in range(span.n):
            d = (<list>expires)[done + k]
            if d:
                shmring_queue_set_expiry(self._ring, span.pos + k, 1, d)
        return 0

    @cython.final
    cdef void _copy(self, shmring_span_t *span, char *buf, bint into_ring) noexcept:
        cdef shmring_t *ring = self._ring
        if span.n * self._slot_size > COPY_WITHOUT_GIL:
            with nogil:
                shmring_copy_span(ring, span, buf, into_ring)
        else:
            shmring_copy_span(ring, span, buf, into_ring)

    @cython.final
    cdef inline void _count_lost(self, uint64_t n) noexcept:
        """Messages this process took and could not hand out (out of memory, Ctrl-C):
        lost, for stats() and join() to see, as if a consumer had died holding them."""
        if n and self._ring != NULL:
            shmring_queue_count_lost(self._ring, n)

    @cython.final
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


@cython.no_gc_clear
cdef class QueueHandle(RingHandle):
    """The queue's primitives on a RingHandle: messages as bytes one and many,
    records in and out of a caller's buffer, reservations and views of
    consecutive slots, task_done/join, sizes, waiting. What a message *is* comes
    from above: the layer over this one hands over a codec's encode/decode
    callables (_set_codec) and, for records rings, how to make arrays over the
    slots (_set_records). Nothing here knows pickle or numpy."""
    cdef uint64_t _default_ttl_ns    # put's deadline when none is given (0: none)
    cdef uint64_t _supervisor        # _take_leased's claims are for this supervisor to adopt (0: none)
    cdef long _supervisor_fork       # _forks when it was named: a forked child's takes are not its

    def _open(self, str name, bint create, uint64_t maxsize=0, uint64_t msg_size=0,
              uint32_t mode=0o600, uint32_t max_participants=0, recover_after=0.1,
              str schema=None, bint trust_writable=False):
        """Create (create=True: maxsize, msg_size, mode, max_participants, schema of
        a records ring) or attach queue `name`."""
        cdef shmring_params_t params
        cdef bytes schema_bytes = schema.encode() if schema is not None else b""
        self._params(&params, SHMRING_KIND_QUEUE, maxsize, msg_size, mode, max_participants, recover_after,
                     schema_bytes if schema is not None else None)
        self._open_ring(name, SHMRING_KIND_QUEUE, create, &params, trust_writable)
        shmring_set_recover_after(self._ring, self._recover_after_ns)

    # ---- claiming (blocking as asked) ----

    @cython.final
    cdef bint _wait_until(self, int what, object timeout) except -1:
        """wait_readable / wait_writable / join: True once `what` looks true, False
        when the timeout passed first. Recovers from the dead as a blocked claim does."""
        cdef uint64_t deadline
        cdef uint32_t spin = SPIN
        cdef _Participant p
        _deadline(True, timeout, &deadline)
        p = self._enter()
        try:
            while True:
                if shmring_queue_wait(p.ptr, what, 0, 0) == 1:  # looks at the ring, never sleeps
                    return True
                if not self._until(p, what, deadline, &spin):
                    return False
        finally:
            self._leave()

    def wait_readable(self, timeout=None):
        """Wait until the queue may have a message to get, at most `timeout` seconds
        (None: as long as it takes). True: it looked readable (another consumer
        may take the message first, so a get(block=False) after it can still raise
        Empty); False: the timeout passed. Releases the GIL while it sleeps, raises
        KeyboardInterrupt (or what a signal handler raises) within 50 ms, and
        QueueClosed if the handle is closed meanwhile."""
        return self._wait_until(SHMRING_WAIT_READABLE, timeout)

    def wait_writable(self, timeout=None):
        """Wait until the queue may have room for a message, at most `timeout`
        seconds: True, or False when the timeout passed (as wait_readable; another
        producer may fill the room first)."""
        return self._wait_until(SHMRING_WAIT_WRITABLE, timeout)

    # ---- moving bytes ----

    @cython.final
    cdef int _put_one(self, const char *data, Py_ssize_t size, uint64_t deadline, uint64_t expires) except -1:
        cdef shmring_span_t span
        cdef _Participant p = self._enter()  # first: a closed (or never opened) handle says so
        try:
            if <uint64_t>size > self._slot_size:
                raise self._too_large(size)
            # the common case in one C call: room now, claimed, filled and committed
            if shmring_queue_put_deadline(p.ptr, data, size, expires) <= 0:
                self._claim(True, p, 1, &span, deadline, 0, SHMRING_CLAIM_EXPIRY_SET if expires else 0)
                memcpy(shmring_slot_payload(self._ring, span.pos), data, size)
                shmring_slot_set_len(self._ring, span.pos, <uint32_t>size)
                if expires:
                    shmring_queue_set_expiry(self._ring, span.pos, 1, expires)
                shmring_queue_put_commit(p.ptr, &span)
        finally:
            self._leave()
        return 0

    @cython.final
    cdef int _put_buffer(self, object data, uint64_t deadline, uint64_t expires) except -1:
        """Put any bytes-like object as one message (a non-contiguous one copied first)."""
        cdef Py_buffer view
        cdef bytes b = _bytes_or_buffer(data, &view)
        if b is not None:
            return self._put_one(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), deadline, expires)
        try:
            self._put_one(<const char *>view.buf, view.len, deadline, expires)
        finally:
            PyBuffer_Release(&view)
        return 0

    @cython.final
    cdef object _get_one(self, uint64_t deadline):
        """One message as bytes (a corrupt slot's SegmentError is raised in its turn).
        Marked ones (expired="return") come by _get_marked."""
        cdef shmring_span_t span
        cdef _Participant p = self._enter()
        cdef int64_t size = 0
        cdef object raw = None
        try:
            p.raise_deferred()
            if shmring_queue_get_claim(p.ptr, 1, 0, &span) <= 0:  # the common case without a call: one is there
                self._claim(False, p, 1, &span, deadline, 0)
            p.holding = True
            try:
                size = shmring_slot_len(self._ring, span.pos)
                if size >= 0:
                    raw = PyBytes_FromStringAndSize(<char *>shmring_slot_payload(self._ring, span.pos), size)
            finally:
                shmring_queue_get_release(p.ptr, &span)
                p.holding = False
                if raw is None and size >= 0:
                    self._count_lost(1)  # the copy failed: out of memory
        finally:
            self._leave()
        if size < 0:
            _raise_rc(<int>size, self.name)  # this message's turn: the others are intact
        return raw

    @cython.final
    cdef object _get_marked(self, uint64_t deadline):
        """One message as bytes, or as Expired if its deadline passed (expired="return")."""
        return self._decode_batch(self._get_raw(1, deadline, True), None)[0]

    @cython.final
    cdef inline uint64_t _passed(self, uint64_t pos) noexcept:
        """The deadline of the claimed message at pos if it has passed, else 0."""
        cdef uint64_t d
        cdef shmring_clock_t clock = [0, 0]
        if shmring_queue_expiry(self._ring, pos, &d) and shmring_deadline_passed(&clock, d):
            return d if d else 1
        return 0

    @cython.final
    cdef int _take(self, _Participant p, shmring_span_t *span, list out, bint marked=False) except -1:
        """Copy the claimed messages into new bytes objects, then release the slots.

        A slot with an impossible length becomes a SegmentError in `out`, raised
        in its turn (see _decode_batch), so the messages around it survive. If
        copying fails (out of memory), what this call took is counted lost.
        marked (expired="return"): one whose deadline passed as Expired.
        """
        cdef uint32_t k
        cdef int64_t size
        cdef uint64_t passed
        cdef Py_ssize_t before = len(out)
        p.holding = True
        try:
            for k in range(span.n):
                size = shmring_slot_len(self._ring, span.pos + k)
                if size < 0:
                    out.append(errors.SegmentError(f"{shmring_strerror(<int>size).decode()}: {self.name!r}"))
                else:
                    raw = PyBytes_FromStringAndSize(<char *>shmring_slot_payload(self._ring, span.pos + k), size)
                    passed = self._passed(span.pos + k) if marked else 0
                    out.append(Expired(raw, passed / 1e9) if passed else raw)
        except BaseException:
            shmring_queue_get_release(p.ptr, span)
            p.holding = False
            self._count_lost(before + span.n)
            raise
        shmring_queue_get_release(p.ptr, span)
        p.holding = False
        return 0

    @cython.final
    cdef list _get_raw(self, Py_ssize_t limit, uint64_t deadline, bint marked=False):
        """1..limit messages as bytes (or SegmentError markers; marked: Expired
        ones too), waiting as asked."""
        cdef shmring_span_t span
        cdef _Participant p
        cdef list out = []
        cdef int flags = SHMRING_CLAIM_EXPIRED if marked else 0
        p = self._enter()
        try:
            p.raise_deferred()
            self._claim(False, p, <uint32_t>min(limit, UINT32_MAX), &span, deadline, 0, flags)
            while True:
                self._take(p, &span, out, marked)
                if len(out) >= limit:
                    break
                # more may have arrived meanwhile: take it in the same call, never wait
                if shmring_queue_get_claim(p.ptr, <uint32_t>min(limit - len(out), UINT32_MAX), flags, &span) <= 0:
                    break
        finally:
            self._leave()
        return out

    @cython.final
    cdef list _decode_batch(self, list raw, object decode):
        """Decode a batch in order (decode None: keep the bytes). A message that
        fails is not fatal to the others: they are returned, and its error is
        raised by this thread's next get call (at once if it was the only one).
        Nothing is kept but errors. An interruption (Ctrl-C) is raised at once,
        and the messages of the batch it would have returned are counted lost
        (they are out of the ring)."""
        cdef list out = [], failed = []
        cdef Py_ssize_t i
        for i in range(len(raw)):
            item = raw[i]
            try:
                if isinstance(item, BaseException):
                    raise item
                if type(item) is Expired:  # only from expired="return"
                    if decode is not None:
                        item.message = decode(item.message)
                    out.append(item)
                    continue
                out.append(item if decode is None else decode(item))
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

    @cython.final
    cdef int _defer(self, list failed) except -1:
        cdef _Participant p
        if failed and self._ring != NULL:
            p = self._me()
            if p.deferred is None:
                p.deferred = []
            p.deferred.extend(failed)
        return 0

    @cython.final
    cdef object _decode_one(self, bytes raw):
        """The object of one message taken from the ring: an error in decoding
        is this message's, raised in its turn; an interruption loses it (counted)."""
        try:
            return self._decode(raw)
        except Exception:
            raise
        except BaseException:
            self._count_lost(1)
            raise

    # ---- the public operations: bytes ----

    # binding=False (and a clinic signature for inspect): the single-message
    # calls' argument handling costs less (docs/design.md, "The binding and its codecs")
    @cython.binding(False)
    @cython.embedsignature.format("clinic")
    def put_bytes(self, data, block=True, timeout=None, *, ttl=None, deadline=None):
        """Put a bytes-like object as one message, without encoding it (ttl=,
        deadline=: as put)."""
        cdef uint64_t wait
        cdef uint64_t expires = _expiry_ns(ttl, deadline, self._default_ttl_ns)
        _deadline(block, timeout, &wait)
        if type(data) is bytes:
            self._put_one(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), wait, expires)
            return
        self._put_buffer(data, wait, expires)

    @cython.binding(False)
    @cython.embedsignature.format("clinic")
    def get_bytes(self, block=True, timeout=None, *, expired="drop"):
        """Remove and return one message as bytes, without decoding it (expired=: as get)."""
        cdef uint64_t wait
        cdef bint marked = _marked(expired)
        _deadline(block, timeout, &wait)
        return self._get_marked(wait) if marked else self._get_one(wait)

    def put_many_bytes(self, items, block=True, timeout=None, *, ttl=None, deadline=None):
        """Put every bytes-like item as one message, in order, claiming slots in
        batches, without encoding. Every item is checked (bytes-like, fits a slot)
        before any is put. If the queue stays full past the timeout, Full is raised
        and its ``count`` says how many leading items were put. ttl=, deadline=:
        one for all, or a list of one per item (as put_many)."""
        cdef uint64_t wait
        items = list(items)
        expires = _expiries(ttl, deadline, self._default_ttl_ns, len(items))
        _deadline(block, timeout, &wait)
        self._put_many(items, wait, None, expires)

    def get_many_bytes(self, max_items=None, block=True, timeout=None, *, expired="drop"):
        """Remove and return a list of 1..max_items messages as bytes (default: up
        to maxsize), never decoding them. Blocks until at least one is there. A
        slot found corrupt is a SegmentError raised by this thread's next get
        call; the messages around it are returned. expired=: as get."""
        cdef uint64_t wait
        cdef bint marked = _marked(expired)
        _deadline(block, timeout, &wait)
        return self._decode_batch(self._get_raw(self._how_many(max_items, "max_items"), wait, marked), None)

    def _count_expired(self, n):
        """Count n messages a caller took and dropped as expired (the worker pool:
        taken with their deadlines by _take_leased, checked just before the handler)."""
        if self._ring != NULL:
            shmring_queue_count_expired(self._ring, n)

    # ---- leases: messages held by a worker of a pool, crash-safe (shmring/workers/) ----

    @property
    def _lease_stride(self):
        """Bytes of one entry of a lease of this queue: u32 length (LEASE_CORRUPT:
        the slot's length was impossible), u32 unused, u64 deadline in
        CLOCK_MONOTONIC ns (0: none), then msg_size bytes of payload, rounded up to 8."""
        return self._stride()

    @cython.final
    cdef inline uint64_t _stride(self) noexcept:
        """_lease_stride, for the binding's own lease calls."""
        return C_LEASE_ENTRY + ((self._slot_size + 7) & ~<uint64_t>7)

    def _take_leased(self, lease, max_items, block=True, timeout=None):
        """Take 1..max_items messages into `lease` (a writable C-contiguous buffer,
        8-byte aligned, of at least LEASE_HEADER + max_items * _lease_stride bytes,
        max_items capped at 2**32 - 1, the count word's range; whose count word
        is 0), expired ones included (the caller drops them and
        counts them, _count_expired); how many it took. Each claim's messages are
        copied with their lengths and deadlines, the count word is stored after
        them (L1), and only then is the claim released: a message is in the
        ring, claimed (a taker killed then is a dead consumer: the pool adopts
        its claim, _adopt_leased, or else recovery counts it lost), or in the
        lease. Waits as get does (Empty, ShutDown)."""
        cdef uint64_t wait
        cdef Py_buffer view
        cdef Py_ssize_t limit
        cdef uint64_t stride = self._stride()
        cdef uint32_t got = 0
        cdef shmring_span_t span
        cdef _Participant p
        cdef int flags = SHMRING_CLAIM_EXPIRED
        if type(max_items) is int and 1 <= max_items <= PY_SSIZE_T_MAX:  # a worker's every call: no checks to pay
            limit = max_items
        else:
            limit = self._how_many(max_items, "max_items")
        _deadline(block, timeout, &wait)
        if self._ring == NULL:
            raise errors.QueueClosed(f"queue {self.name!r} is closed")
        try:
            PyObject_GetBuffer(lease, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
        except (BufferError, ValueError, TypeError):
            raise ValueError("a lease must be a writable C-contiguous buffer") from None
        # Everything that can fail is checked before claiming: nothing is taken then.
        if <uint64_t>limit > UINT32_MAX:  # the count word's range; the room check below without a product that wraps
            limit = UINT32_MAX
        try:
            if <uint64_t>view.len < C_LEASE_HEADER or <uint64_t>limit > (<uint64_t>view.len - C_LEASE_HEADER) // stride:
                raise ValueError(f"a lease of {view.len} bytes has no room for {limit} messages of this queue "
                                 f"({C_LEASE_HEADER} + {limit} x {stride} bytes)")
            if (<size_t>view.buf) % 8:
                raise ValueError("a lease must be 8-byte aligned")
            if (<uint32_t *>view.buf)[0] != 0:
                raise ValueError("the lease holds messages: finish them first (_finish_leased)")
            p = self._enter()
            try:
                if self._supervisor != 0 and self._supervisor_fork == _forks:
                    # this thread's participant names the supervisor (a store), before it claims
                    shmring_queue_supervise(p.ptr, self._supervisor)
                    flags |= SHMRING_CLAIM_SUPERVISED
                # who claims, for the pool to adopt the claim if this process dies holding it
                shmring_lease_store(<uint32_t *>(<char *>view.buf + C_LEASE_TAKER), shmring_participant_index(p.ptr) + 1)
                self._claim(False, p, <uint32_t>min(limit, UINT32_MAX), &span, wait, 0, flags)
                while True:
                    p.holding = True
                    got = self._lease_copy(<char *>view.buf, stride, got, &span)
                    shmring_queue_get_release(p.ptr, &span)
                    p.holding = False
                    # more may have arrived meanwhile: take it in the same call, never wait
                    if got >= limit or shmring_queue_get_claim(
                            p.ptr, <uint32_t>min(limit - got, UINT32_MAX), flags, &span) <= 0:
                        break
            finally:
                self._leave()
        finally:
            PyBuffer_Release(&view)
        return got

    @cython.final
    cdef uint32_t _lease_copy(self, char *lease, uint64_t stride, uint32_t got, const shmring_span_t *span) noexcept:
        """Copy a read claim's messages into a lease's entries from index got
        (lengths, deadlines, payloads; a corrupt slot's length is LEASE_CORRUPT)
        and store the count that covers them (L1); the new count. Before it, the
        count the claim adds to and the claim's position, in that order: a
        taker killed in between, whose claim the pool adopts, leaves the
        position of an earlier claim, or this one's with the count still at
        the base (copy them) or covering them (L1 done: they are there)."""
        cdef uint32_t k, length
        cdef int64_t size
        cdef uint64_t d
        cdef char *entry
        shmring_lease_store(<uint32_t *>(lease + C_LEASE_CLAIM_BASE), got)
        shmring_lease_store64(<uint64_t *>(lease + C_LEASE_CLAIM_POS), span.pos)
        for k in range(span.n):
            entry = lease + C_LEASE_HEADER + (got + k) * stride
            size = shmring_slot_len(self._ring, span.pos + k)
            if size < 0:
                length = C_LEASE_CORRUPT
            else:
                length = <uint32_t>size
                memcpy(entry + C_LEASE_ENTRY, shmring_slot_payload(self._ring, span.pos + k), size)
            (<uint64_t *>(entry + 8))[0] = d if shmring_queue_expiry(self._ring, span.pos + k, &d) else 0
            (<uint32_t *>entry)[0] = length
        shmring_lease_store(<uint32_t *>lease, got + span.n)  # L1, before the release
        return got + span.n

    def _participant_token(self):
        """Who this process's handle is to the queue while it stays open (its
        first participant): what a supervisor gives its consumers to name it
        (_supervise)."""
        if self._part0 is None:  # none yet: make it (nothing can be held then)
            self._enter()
            self._leave()
        if self._closing or self._ring == NULL:
            raise errors.QueueClosed(f"queue {self.name!r} is closed")
        return shmring_participant_token(self._part0.ptr)

    def _supervise(self, uint64_t token):
        """From now on, in this process, the claims of _take_leased are the
        supervisor's (token: its _participant_token) to adopt if this process
        dies holding one: recovery leaves them to it while it lives. A
        supervisor must adopt every dead taker's claim (_adopt_leased) or close."""
        cdef _Participant p = self._enter()
        try:
            rc = shmring_queue_supervise(p.ptr, token)  # checks the token before anything is named
            if rc != SHMRING_OK:
                _raise_rc(rc, self.name, _detail())
            self._supervisor, self._supervisor_fork = token, _forks
        finally:
            self._leave()

    def _adopt_leased(self, lease, pid):
        """The read claim that the dead taker of `lease` (process `pid`) held in
        _take_leased, if recovery has not counted it lost yet: its messages
        are copied into the lease after those the count covers (killed before
        L1), or are there already (killed between L1 and the release); the
        slots are released either way, nothing counted lost
        (shmring_queue_adopt). How many messages the claim held; 0 if there
        was nothing to adopt, or the lease had no room for them (its count
        word overwritten): lost then, counted."""
        cdef Py_buffer view
        cdef shmring_adoption_t ad
        cdef uint32_t count, who, adopted
        cdef uint64_t stride = self._stride()
        cdef int32_t taker = pid  # OverflowError for what no process is
        if self._ring == NULL:
            raise errors.QueueClosed(f"queue {self.name!r} is closed")
        _lease_buffer(lease, &view)
        try:
            who = (<uint32_t *>(<char *>view.buf + C_LEASE_TAKER))[0]
            if who == 0 or shmring_queue_adopt(self._ring, who - 1, taker, &ad) <= 0:
                return 0  # no taker yet, another's entry, nothing held, or recovery was first
            adopted = ad.span.n
            count = (<uint32_t *>view.buf)[0]
            if not ((<uint64_t *>(<char *>view.buf + C_LEASE_CLAIM_POS))[0] == ad.span.pos and
                    count == (<uint32_t *>(<char *>view.buf + C_LEASE_CLAIM_BASE))[0] + ad.span.n):
                if <uint64_t>count + ad.span.n <= (<uint64_t>view.len - C_LEASE_HEADER) // stride:
                    self._lease_copy(<char *>view.buf, stride, count, &ad.span)
                else:
                    shmring_queue_count_lost(self._ring, ad.span.n)
                    adopted = 0
            shmring_queue_adopt_release(self._ring, &ad)
        finally:
            PyBuffer_Release(&view)
        return adopted

    def _finish_leased(self, lease, n=None):
        """The lease's messages are finished (handled, dead-lettered, dropped):
        mark n (default: the count word) as finishing, empty the lease, mark
        them done for join() (task_done), clear the mark; one C sequence, no
        Python code in between. A process killed in it leaves finishing == count
        (not emptied yet: only done is owed) or finishing > 0 with count 0 (done
        owed, or just paid: the window of one store)."""
        cdef Py_buffer view
        cdef uint32_t count
        cdef _Participant p
        cdef int rc = SHMRING_OK
        _lease_buffer(lease, &view)
        try:
            count = (<uint32_t *>view.buf)[0] if n is None else <uint32_t>n
            p = self._enter()
            shmring_lease_store(<uint32_t *>(<char *>view.buf + C_LEASE_FINISHING), count)  # L1
            shmring_lease_store(<uint32_t *>view.buf, 0)  # L1
            rc = shmring_queue_task_done(p.ptr, count) if count else SHMRING_OK
            shmring_lease_store(<uint32_t *>(<char *>view.buf + C_LEASE_FINISHING), 0)  # L1
            self._leave()
        finally:
            PyBuffer_Release(&view)
        if rc == SHMRING_EJOIN:
            raise ValueError("task_done() called too many times")
        return count

    def _decode_message(self, raw):
        """One message's bytes decoded by the queue's codec (what get would return)."""
        self._codec_set()
        return self._decode(raw)

    # ---- the public operations: objects, through the codec ----

    @cython.binding(False)
    @cython.embedsignature.format("clinic")
    def put(self, obj, block=True, timeout=None, *, ttl=None, deadline=None):
        """Put one object, encoded by the queue's codec.

        ``ttl=`` (seconds from now) or ``deadline=`` (a CLOCK_MONOTONIC time in
        seconds: ``time.monotonic()`` on Linux, ``time.clock_gettime(
        time.CLOCK_MONOTONIC)`` everywhere): once it has passed, no get returns
        the message; the get that meets it drops it and counts it in
        ``stats()["expired"]`` (and as done for ``join()``). Default: the queue's
        ``default_ttl``, else none."""
        cdef uint64_t wait
        cdef uint64_t expires = _expiry_ns(ttl, deadline, self._default_ttl_ns)
        _deadline(block, timeout, &wait)
        self._codec_set()
        data = self._encoded(obj)
        if type(data) is bytes:
            self._put_one(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), wait, expires)
        else:
            self._put_buffer(data, wait, expires)

    @cython.binding(False)
    @cython.embedsignature.format("clinic")
    def get(self, block=True, timeout=None, *, expired="drop"):
        """Remove and return one object, decoded by the queue's codec.

        ``expired="drop"`` (the default) drops messages whose deadline passed;
        ``expired="return"`` hands such a message back as ``shmring.Expired``
        (``.message``, ``.deadline``) instead, counted nowhere."""
        cdef uint64_t wait
        cdef bint marked = _marked(expired)
        _deadline(block, timeout, &wait)
        self._codec_set()
        if not marked:
            return self._decode_one(self._get_one(wait))
        raw = self._get_marked(wait)
        if type(raw) is Expired:
            (<Expired>raw).message = self._decode_one((<Expired>raw).message)
            return raw
        return self._decode_one(raw)

    def put_nowait(self, obj):
        """put(obj, block=False)."""
        cdef uint64_t expires = _expiry_ns(None, None, self._default_ttl_ns)
        self._codec_set()
        data = self._encoded(obj)
        if type(data) is bytes:
            self._put_one(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), 0, expires)
        else:
            self._put_buffer(data, 0, expires)

    def get_nowait(self):
        """get(block=False)."""
        self._codec_set()
        return self._decode_one(self._get_one(0))

    def put_many(self, items, block=True, timeout=None, *, ttl=None, deadline=None):
        """Put every item, in order, claiming slots in batches; every item is
        encoded before any is put.

        If the queue stays full past the timeout, Full is raised and its
        ``count`` says how many leading items were put. ``ttl=`` / ``deadline=``
        (as put): one for the batch, or a list or tuple of one per item (None:
        that item gets the default, ``default_ttl``).
        """
        cdef uint64_t wait
        if self._records:  # one array, one copy per run (and numpy's casts)
            self._records_only("put_many()")
            return self.put_array(self._rec_array_of(items), block, timeout, ttl=ttl, deadline=deadline)
        _deadline(block, timeout, &wait)
        self._codec_set()
        if self._encode_arg is _NO_ARG:
            encoded = [self._encode(item) for item in items]
        else:
            encoded = [self._encode(item, self._encode_arg) for item in items]
        self._put_many(encoded, wait, None, _expiries(ttl, deadline, self._default_ttl_ns, len(encoded)))

    def get_many(self, max_items=None, block=True, timeout=None, *, expired="drop"):
        """Remove and return a list of 1..max_items objects (default: up to maxsize).

        Blocks until at least one is there; returns what is there then. A message
        that fails to decode does not lose the others: they are returned, and its
        error is raised by this thread's next get call. expired=: as get (a
        records queue drops them, always).
        """
        cdef uint64_t wait
        cdef bint marked = _marked(expired)
        if self._records:  # the records of one get_array, as numpy scalars
            if marked:
                raise ValueError("a records queue drops expired records: expired='return' is for the other queues")
            arr = self.get_array(max_items, block, timeout)
            try:
                return list(arr)
            except BaseException:  # out of memory, Ctrl-C: taken, never handed out
                self._count_lost(len(arr))
                raise
        _deadline(block, timeout, &wait)
        self._codec_set()
        return self._decode_batch(self._get_raw(self._how_many(max_items, "max_items"), wait, marked), self._decode)

    @property
    def default_ttl(self):
        """Seconds a message put without ttl=/deadline= lives (None: for ever);
        this handle's, pickled with it."""
        return self._default_ttl_ns / 1e9 if self._default_ttl_ns else None

    def _set_default_ttl(self, uint64_t ns):
        """ns: from default_ttl_ns."""
        self._default_ttl_ns = ns

    # ---- records: in and out of a caller's buffer, reservations and views ----

    @cython.final
    cdef bint _known_records(self, object arr, Py_buffer *view, int flags) except -1:
        """The fast way in: an array of the very type and dtype object the codec
        vouched for (_set_records), 1-D and C-contiguous, gets its buffer at once.
        False: not that (no buffer held); the codec's check decides."""
        if type(arr) is not self._rec_type or self._rec_type is None:
            return False
        dt = arr.dtype
        if dt is not self._rec_dtype and dt is not self._rec_seen:
            return False
        try:
            PyObject_GetBuffer(arr, view, flags | PyBUF_ND)
        except (BufferError, ValueError):
            return False
        if view.ndim != 1:
            PyBuffer_Release(view)
            return False
        return True

    @cython.final
    cdef Py_ssize_t _take_view(self, Py_buffer *view, Py_ssize_t limit, uint64_t deadline, bint fill) except -1:
        """Take 1..limit records into a writable buffer from its start; how many.
        One claim, or with fill further claims of what else is there, never waiting;
        a claim cut short by an expired record (dropped by the next) is followed
        by another either way."""
        cdef shmring_span_t span
        cdef Py_ssize_t got = 0
        cdef _Participant p
        if limit < 1:
            raise ValueError(f"'max_items' (and len(out)) must be at least 1, got {limit}")
        if <uint64_t>view.len < <uint64_t>limit * self._slot_size:
            raise ValueError(f"a buffer of {view.len} bytes has no room for {limit} records of "
                             f"{self._slot_size} bytes")
        p = self._enter()
        try:
            self._claim(False, p, <uint32_t>min(limit, UINT32_MAX), &span, deadline, 0)
            while True:
                self._copy(&span, <char *>view.buf + got * self._slot_size, False)
                shmring_queue_get_release(p.ptr, &span)
                got += span.n
                if not (fill or self._passed(span.pos + span.n)) or got >= limit or shmring_queue_get_claim(
                        p.ptr, <uint32_t>min(limit - got, UINT32_MAX), 0, &span) <= 0:
                    break
        finally:
            self._leave()
        return got

    @cython.final
    cdef int _writable_view(self, object out, Py_buffer *view) except -1:
        try:
            PyObject_GetBuffer(out, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
        except (BufferError, ValueError):
            raise ValueError("out= must be a writable array (it is filled in place)") from None
        return 0

    def put_array(self, arr, block=True, timeout=None, *, ttl=None, deadline=None):
        """Put every record of a 1-D array of the queue's dtype, in order.

        Any length: an array longer than the queue streams through as space frees.
        A non-contiguous array is copied first; another dtype is a TypeError, more
        than one dimension a ValueError. If the queue stays full past the
        timeout, Full is raised and its ``count`` says how many records were put.
        ``ttl=`` / ``deadline=``: as put_many, one for all or one per record;
        get_array, get_many and view drop expired records (counted).
        """
        cdef uint64_t wait
        cdef Py_buffer view
        self._records_only("put_array()")
        _deadline(block, timeout, &wait)
        if not self._known_records(arr, &view, PyBUF_C_CONTIGUOUS):
            checked = self._rec_check(arr)  # raises, or a C-contiguous 1-D array of the dtype
            if checked is arr and type(arr) is self._rec_type:
                self._rec_seen = arr.dtype  # equal to ours: the next one goes the fast way
            PyObject_GetBuffer(checked, &view, PyBUF_C_CONTIGUOUS)
        try:
            expires = _expiries(ttl, deadline, self._default_ttl_ns, view.len // self._slot_size) if (
                ttl is not None or deadline is not None or self._default_ttl_ns) else None
        except BaseException:
            PyBuffer_Release(&view)
            raise
        try:
            self._put_view(&view, wait, None, expires)
        finally:
            PyBuffer_Release(&view)

    def get_array(self, max_items=None, block=True, timeout=None, out=None):
        """Remove 1..max_items records and return them as an array of the dtype.

        With out= (a writable 1-D C-contiguous array of the dtype), fill it from
        the start instead, allocating nothing, and return the count.
        """
        cdef uint64_t deadline
        cdef Py_buffer view
        cdef Py_ssize_t limit, got
        self._records_only("get_array()")
        _deadline(block, timeout, &deadline)
        # Everything that can fail is done before claiming: nothing is taken then.
        if out is not None:
            if not self._known_records(out, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS):
                if out is not self._rec_check(out):
                    raise ValueError("out= must be C-contiguous (it is filled in place)")
                self._writable_view(out, &view)
                if type(out) is self._rec_type:
                    self._rec_seen = out.dtype
            try:
                limit = <Py_ssize_t>(<uint64_t>view.len // self._slot_size)
                if max_items is not None:
                    limit = min(self._how_many(max_items, "max_items"), limit)
                return self._take_view(&view, limit, deadline, True)
            finally:
                PyBuffer_Release(&view)
        # room for what is there (some at least, to wait for), trimmed after
        limit = self._room_for(self._how_many(max_items, "max_items"))
        out = self._rec_new(limit, self._rec_dtype)
        self._writable_view(out, &view)
        try:
            got = self._take_view(&view, limit, deadline, False)
        finally:
            PyBuffer_Release(&view)
        if got < limit:
            try:
                out = self._rec_trim(out, got)  # gives back the unused room
            except BaseException:
                self._count_lost(got)
                raise
        return out

    def _put_records(self, records, block=True, timeout=None):
        """put_array() of any C-contiguous buffer of whole records, unchecked."""
        cdef uint64_t deadline
        cdef Py_buffer view
        self._records_ring("_put_records()")
        _deadline(block, timeout, &deadline)
        PyObject_GetBuffer(records, &view, PyBUF_C_CONTIGUOUS)
        try:
            self._put_view(&view, deadline)
        finally:
            PyBuffer_Release(&view)

    def _get_records(self, out, Py_ssize_t limit, block=True, timeout=None, bint fill=False):
        """get_array() into any writable C-contiguous buffer with room for `limit`
        records, unchecked; how many it took."""
        cdef uint64_t deadline
        cdef Py_buffer view
        self._records_ring("_get_records()")
        _deadline(block, timeout, &deadline)
        self._writable_view(out, &view)
        try:
            return self._take_view(&view, limit, deadline, fill)
        finally:
            PyBuffer_Release(&view)

    @cython.final
    cdef Py_ssize_t _room_for(self, Py_ssize_t limit) except -1:
        """How many records get_array makes room for before it claims: what the
        queue holds now (it may grow meanwhile: a claim takes at most this), and at
        least 64 KiB worth, so that a consumer waiting on an empty queue still
        takes batches."""
        cdef shmring_stats_t st
        if self._ring == NULL:
            raise errors.QueueClosed(f"queue {self.name!r} is closed")
        shmring_queue_stats(self._ring, &st)
        cdef uint64_t there = st.write_pos - st.read_pos if st.write_pos > st.read_pos else 0
        cdef uint64_t least = max(<uint64_t>1, ROOM_BYTES // self._slot_size)
        return <Py_ssize_t>min(<uint64_t>limit, self._maxsize, max(there, least))

    @cython.final
    cdef object _slots(self, bint writable):
        """Every slot as one object made by make_slots (once per handle): the arrays
        of reservations and views are slices of it, cheaper to make than an array
        each (a view of 4096 records costs about as much as copying them)."""
        cdef object slots = self._reserve_slots if writable else self._view_slots
        if slots is None:
            if self._closing or self._ring == NULL:
                raise errors.QueueClosed(f"queue {self.name!r} is closed")
            if self._make_slots is None:
                raise TypeError("this handle cannot make arrays over its slots (shmring.Queue sets it up)")
            capacity = shmring_capacity(self._ring)
            buf = _SlotBuffer._make(self._map, <char *>shmring_slot_payload(self._ring, 0),
                                    capacity * self._slot_size, not writable)
            slots = self._make_slots(buf, capacity)
            if writable:
                self._reserve_slots = slots
            else:
                self._view_slots = slots
        return slots

    @cython.final
    cdef _Span _open_span(self, bint put, Py_ssize_t n, object block, object timeout, uint64_t expires=0):
        """Claim a contiguous run for a reservation (whose commit gives its records
        the deadline `expires`) or a view, as a _Span over its slots."""
        cdef uint64_t deadline
        cdef _Participant p
        cdef Py_ssize_t first
        cdef _Span s = _Span.__new__(_Span)  # made before claiming: nothing is taken if it fails
        _deadline(block, timeout, &deadline)
        slots = self._slots(put)
        p = self._enter()
        try:
            self._claim(put, p, <uint32_t>min(n, UINT32_MAX), &s.span, deadline, 0, SHMRING_CLAIM_CONTIGUOUS)
        except BaseException:
            self._leave()
            raise
        p.holding = True
        s.queue, s.p, s.put, s.fork, s.expires = self, p, put, _forks, expires
        first = (shmring_slot_payload(self._ring, s.span.pos) - shmring_slot_payload(self._ring, 0)) // self._slot_size
        try:
            s.array = slots[first:first + s.span.n]  # the claim does not wrap (CONTIGUOUS)
        except BaseException:  # out of memory: a reservation is aborted, a view's records are lost
            s.done = True
            self._end_span(p, &s.span, put, 0)
            if not put:
                self._count_lost(s.span.n)
            raise
        return s

    @cython.final
    cdef void _end_span(self, _Participant p, shmring_span_t *span, bint put, uint32_t keep) noexcept:
        if put:
            shmring_queue_put_commit_partial(p.ptr, span, keep)
        else:
            shmring_queue_get_release(p.ptr, span)
        p.holding = False
        self._leave()

    def reserve(self, n, block=True, timeout=None, *, ttl=None, deadline=None):
        """Claim up to n free slots as a writable array (fewer if the ring wraps);
        what it commits has the deadline of ttl= / deadline= (as put).

        Fill it and commit: ``with q.reserve(n) as arr: arr[:] = ...`` commits on
        exit (an exception aborts instead: the slots are skipped); or call
        ``r = q.reserve(n); ...; r.commit(count)``. Until then this thread can do
        nothing else with the queue. After commit the array is marked read-only
        and no longer the queue's business (do not write through its base).
        """
        self._records_only("reserve()")
        cdef uint64_t expires = _expiry_ns(ttl, deadline, self._default_ttl_ns)
        return self._open_span(True, self._how_many(n, "n"), block, timeout, expires)

    def view(self, max_items=None, block=True, timeout=None):
        """Claim up to max_items ready records as a read-only array, without copying.

        ``with q.view(n) as arr: total += arr["qty"].sum()`` releases the records
        on exit (or call ``v.release()``). Until then this thread can do nothing
        else with the queue. After release the array still exists but shows
        whatever the ring holds by then: copy what must outlive it.
        """
        self._records_only("view()")
        return self._open_span(False, self._how_many(max_items, "max_items"), block, timeout)

    # ---- completion, sizes, counters ----

    def task_done(self):
        """Mark one message taken with get*() as processed (see join())."""
        cdef _Participant p = self._enter()
        cdef int rc = shmring_queue_task_done(p.ptr, 1)
        self._leave()
        if rc == SHMRING_EJOIN:
            raise ValueError("task_done() called too many times")

    def join(self, timeout=None):
        """Block until every message ever put has been marked with task_done().

        Works across processes. Returns True, or False if timeout passed first.
        Messages lost to processes that died holding them count as done (what
        join waits for can be held anywhere: it recovers every recover_after
        while tasks are unfinished).
        """
        return self._wait_until(SHMRING_WAIT_JOINED, timeout)

    def _shutdown(self, bint immediate):
        """shmring_queue_shutdown from this thread's participant (Queue.shutdown
        says what it does). Discarding makes claims: the GIL is released. A
        plain shutdown claims nothing, so a thread that holds a claim may make
        it; not an immediate one, whose discard would announce claims over it."""
        cdef _Participant p
        cdef int rc
        if self._closing or self._ring == NULL:
            self._enter()  # raises QueueClosed
        p = self._me()
        if p.holding and immediate:
            raise RuntimeError(
                f"shutdown(immediate=True) discards what is left of the queue {self.name!r} by claiming it as a "
                "get does, and this thread holds a claim on it (an open reserve() or view()): commit or release "
                "that first, or call shutdown() without immediate, which claims nothing")
        self._active += 1
        try:
            with nogil:
                rc = shmring_queue_shutdown(p.ptr, immediate)
        finally:
            self._leave()
        if rc < 0:
            _raise_rc(rc, self.name)

    def qsize(self):
        """Approximate number of messages in the queue (exact when it is quiet)."""
        cdef shmring_stats_t st
        if self._ring == NULL:
            raise errors.QueueClosed(f"queue {self.name!r} is closed")
        shmring_queue_stats(self._ring, &st)
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
        shmring_queue_stats(self._ring, &st)
        found = _queue_counters(&st)
        found["participants"] = shmring_participants_alive(self._ring)
        return found


cdef bytes _bytes_or_buffer(object data, Py_buffer *view):
    """data as bytes if it is bytes (or not contiguous: then copied in C order);
    else None, with its buffer in *view, to be released."""
    if type(data) is bytes:
        return data
    try:
        PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    except BufferError:  # not contiguous: copy it in C order
        return memoryview(data).tobytes()
    return None


cdef object _as_bytes(object item, Py_ssize_t i):
    """An item of put_many_bytes (or a codec's output) as bytes: bytes-like only."""
    try:
        return memoryview(item).tobytes()
    except TypeError:
        raise TypeError(f"item {i} is a {type(item).__name__}, not a bytes-like object") from None


@cython.no_gc_clear
cdef class _Span:
    """A reservation (writable, committed at the end) or a view (read-only,
    released at the end) of consecutive slots of a records queue."""
    cdef QueueHandle queue
    cdef _Participant p
    cdef shmring_span_t span
    cdef bint put, done
    cdef uint64_t expires            # a reservation's deadline for what it commits (0: none)
    cdef long fork                   # _forks of the process that made it
    cdef readonly object array

    cdef _finish(self, uint32_t keep):
        if self.queue is None:
            raise TypeError("not a reservation or view made by a queue")
        if self.done:
            raise ValueError("already committed" if self.put else "already released")
        if self.fork != _forks:
            raise RuntimeError("a reservation or view belongs to the process that made it")
        self.done = True
        if self.put:
            try:
                self.queue._seal(self.array)
            finally:
                if self.expires and keep:
                    shmring_queue_set_expiry(self.queue._ring, self.span.pos, keep, self.expires)
                self.queue._end_span(self.p, &self.span, self.put, keep)
        else:
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


# ---- topics ----

_STARTS = {"latest": SHMRING_START_LATEST, "oldest": SHMRING_START_OLDEST}


cdef uint64_t _slow_timeout_ns(object seconds) except? 0:
    """slow_subscriber_timeout in ns: None is 0 (never)."""
    cdef double t
    if seconds is None:
        return 0
    t = seconds
    if not (0 < t <= RECOVER_AFTER_MAX):  # also refuses NaN and infinities
        raise ValueError(f"'slow_subscriber_timeout' must be None or a number of seconds above 0 and at most "
                         f"{RECOVER_AFTER_MAX:.0f}, got {seconds!r}")
    return max(<uint64_t>(t * 1e9), <uint64_t>1)


cdef class TopicHandle(RingHandle)


@cython.no_gc_clear
@cython.final
cdef class _Subscription:
    """One subscriber of a topic in this process: its entry in the topic's
    table (the C subscriber: cursor, lag, prefixes) and room for the message
    being copied out. Used by one thread at a time, in the process that made it."""
    cdef shmring_topic_sub_t *ptr
    cdef _Mapping mapping
    cdef long fork
    cdef bint busy
    cdef char *buf                   # max_topic_len bytes of key, then a payload
    cdef uint32_t key_room
    # taken past the cursor and not handed out yet, in stream order: messages as
    # (key, raw bytes) and the errors of messages (raised in their turn); every
    # receive hands these out first, as its own type (_held_out)
    cdef list held
    cdef TopicHandle topic           # whose subscriber it is
    cdef bytes last_key              # the key of the last message: handed out again when the next has it too
    cdef PyObject *last_pair         # the (key, payload) tuple last returned, reused once nobody holds it

    # What a Subscriber calls (bound methods: no Python frame between it and C).
    # recv_bytes: a method descriptor, not a Cython function object (as Queue.get_bytes)
    @cython.binding(False)
    @cython.embedsignature.format("clinic")
    def recv_bytes(self, block=True, timeout=None):
        """The next message as (key, bytes), never decoded (TopicHandle.recv_bytes)."""
        cdef uint64_t deadline
        _deadline(block, timeout, &deadline)
        return self.topic._receive(self, 0, deadline)

    def recv(self, block=True, timeout=None):
        """The next message as (key, object) (TopicHandle.recv)."""
        return self.topic.recv(self, block, timeout)

    def recv_many_bytes(self, max_items=None, block=True, timeout=None):
        return self.topic.recv_many_bytes(self, max_items, block, timeout)

    def recv_many(self, max_items=None, block=True, timeout=None):
        return self.topic.recv_many(self, max_items, block, timeout)

    def recv_array(self, max_items=None, block=True, timeout=None, out=None):
        return self.topic.recv_array(self, max_items, block, timeout, out)

    @property
    def position(self):
        """The stream position this subscriber reads next."""
        return shmring_topic_position(self.ptr) if self.ptr != NULL else None

    @property
    def lagged(self):
        """Messages this subscriber missed (lapped, or detached), in all."""
        return shmring_topic_lagged(self.ptr) if self.ptr != NULL else 0

    def _take_lag(self):
        """Messages missed since this was last asked."""
        return shmring_topic_take_lag(self.ptr) if self.ptr != NULL else 0

    def _hold(self, list items):
        """Put (key, raw bytes) messages already taken back in front of what is
        held: the next receives hand them out first, in order."""
        if self.held is None:
            self.held = []
        self.held[0:0] = items

    def __reduce__(self):
        # its entry, cursor and buffer are this process's: another makes its own
        raise TypeError("a Subscriber (its recv calls too) is made in the process that uses it: pass the Topic "
                        "(it pickles) and call topic.subscribe() there")

    def __dealloc__(self):
        if self.ptr != NULL:
            if self.mapping is not None and self.mapping.ring != NULL:
                shmring_topic_unsubscribe(self.ptr)  # another process's: its memory alone (C checks)
            else:
                shmring_topic_sub_free(self.ptr)  # the ring is closed: the entry is no longer gating
            self.ptr = NULL
        PyMem_Free(self.buf)
        self.buf = NULL
        Py_CLEAR(self.last_pair)


@cython.no_gc_clear
cdef class TopicHandle(RingHandle):
    """The topic's primitives on a RingHandle: publishing keyed messages (bytes,
    objects through the codec, records), subscriptions (_Subscription) and
    receiving, shut-down, stats. Policy (start names, on_lag, iteration) is
    pubsub.py's."""
    cdef readonly uint32_t max_topic_len   # bytes of key stored beside each message
    cdef readonly uint32_t max_subscribers
    cdef bint _overwrite
    cdef uint64_t _slow_ns

    def _open(self, str name, bint create, uint64_t capacity=0, uint64_t msg_size=0, uint32_t mode=0o600,
              uint32_t max_participants=0, recover_after=0.1, str schema=None, uint32_t max_subscribers=0,
              uint32_t max_topic_len=0, bint overwrite=False, slow_subscriber_timeout=None,
              bint trust_writable=False):
        """Create (create=True: the topic's parameters) or attach topic `name`."""
        cdef shmring_params_t params
        cdef bytes schema_bytes = schema.encode() if schema is not None else b""
        self._topic = True
        self._params(&params, SHMRING_KIND_TOPIC, capacity, msg_size, mode, max_participants, recover_after,
                     schema_bytes if schema is not None else None)
        self._slow_ns = _slow_timeout_ns(slow_subscriber_timeout)
        params.max_subscribers = max_subscribers
        params.max_topic_len = max_topic_len
        params.policy = SHMRING_POLICY_OVERWRITE if overwrite else SHMRING_POLICY_BLOCK
        self._open_ring(name, SHMRING_KIND_TOPIC, create, &params, trust_writable)
        shmring_set_recover_after(self._ring, self._recover_after_ns)
        shmring_topic_set_slow_timeout(self._ring, self._slow_ns)
        self.max_topic_len = params.max_topic_len
        self.max_subscribers = params.max_subscribers
        self._overwrite = params.policy == SHMRING_POLICY_OVERWRITE

    @property
    def policy(self):
        """"block" (publishers wait for the slowest live subscriber) or "overwrite"."""
        return "overwrite" if self._overwrite else "block"

    @property
    def slow_subscriber_timeout(self):
        """Seconds a live subscriber may hold this handle's publishers before it is detached (None: never)."""
        return self._slow_ns / 1e9 if self._slow_ns else None

    # ---- keys and errors ----

    @cython.final
    cdef bytes _key(self, object key, str what="topic key"):
        """A topic key (or a prefix: what) as bytes (str: UTF-8), within max_topic_len."""
        cdef bytes k
        if type(key) is bytes:
            k = key
        elif isinstance(key, str):
            k = (<str>key).encode("utf-8")
        else:
            try:
                k = memoryview(key).tobytes()
            except TypeError:
                raise TypeError(f"a {what} is bytes or str, got {type(key).__name__}") from None
        if <uint64_t>len(k) > self.max_topic_len:
            raise errors.InvalidArgument(
                f"{what} of {len(k)} bytes is longer than this topic's max_topic_len of "
                f"{self.max_topic_len} bytes: {k[:48]!r}")
        return k

    def _prefixes(self, prefixes):
        """Prefixes as a list of bytes (str: UTF-8), each within max_topic_len:
        checked before a subscriber is made or changed."""
        return [self._key(prefix, "prefix") for prefix in prefixes]

    # ---- publishing ----

    @cython.final
    cdef int _publish_one(self, bytes key, const char *data, Py_ssize_t size, uint64_t deadline) except -1:
        cdef shmring_span_t span
        cdef int rc
        cdef _Participant p = self._enter()  # first: a closed (or never opened) handle says so
        try:
            if <uint64_t>size > self._slot_size:
                raise self._too_large(size)
            if self._records and <uint64_t>size != self._slot_size:
                raise self._not_a_record("publish_bytes()", size)
            rc = shmring_topic_publish(p.ptr, PyBytes_AS_STRING(key), <uint32_t>PyBytes_GET_SIZE(key), data,
                                       <uint32_t>size, &span)
            if rc == 1:
                return 0
            if rc == 0:
                self._claim(True, p, 1, &span, deadline, 0)
            elif rc == SHMRING_ESHUTDOWN:
                raise errors.ShutDown(f"topic {self.name!r} is shut down: publishing stopped")
            elif rc != SHMRING_TOPIC_PENDING:
                _raise_rc(rc, self.name)
            self._begin(p, &span, deadline, 0)
            shmring_topic_fill(self._ring, span.pos, PyBytes_AS_STRING(key), <uint32_t>PyBytes_GET_SIZE(key), data,
                               <uint32_t>size)
            shmring_topic_publish_commit(p.ptr, &span, span.n)
        finally:
            self._leave()
        return 0

    cdef object _not_a_record(self, str call, Py_ssize_t size):
        """The error of a payload of `size` bytes given to a records topic's `call`."""
        return errors.InvalidArgument(
            f"{call} of a records topic takes one record of {self._rec_dtype} ({self._slot_size} bytes), "
            f"got {size} bytes: nothing was published")

    @cython.final
    cdef int _publish_buffer(self, bytes key, object data, uint64_t deadline) except -1:
        """Publish any bytes-like payload (as _put_buffer)."""
        cdef Py_buffer view
        cdef bytes b = _bytes_or_buffer(data, &view)
        if b is not None:
            return self._publish_one(key, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), deadline)
        try:
            self._publish_one(key, <const char *>view.buf, view.len, deadline)
        finally:
            PyBuffer_Release(&view)
        return 0

    @cython.binding(False)
    @cython.embedsignature.format("clinic")
    def publish_bytes(self, key, data, block=True, timeout=None):
        """Publish a bytes-like payload under `key` (bytes, or str as UTF-8), as it is."""
        cdef uint64_t deadline
        _deadline(block, timeout, &deadline)
        if type(key) is bytes and type(data) is bytes and <uint64_t>PyBytes_GET_SIZE(key) <= self.max_topic_len:
            self._publish_one(key, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), deadline)  # the common case
            return
        self._publish_buffer(self._key(key), data, deadline)

    def publish(self, key, obj, block=True, timeout=None):
        """Publish one object under `key`, encoded by the topic's codec."""
        cdef uint64_t deadline
        _deadline(block, timeout, &deadline)
        self._codec_set()
        k = self._key(key)
        self._publish_buffer(k, self._encoded(obj), deadline)

    def publish_many_bytes(self, items, block=True, timeout=None):
        """Publish (key, bytes-like) pairs in order, one claim per contiguous run.
        If the topic stays full past the timeout, Full says in ``count`` how many were published."""
        cdef uint64_t deadline
        _deadline(block, timeout, &deadline)
        pairs = [(self._key(key), data) for key, data in items]
        payloads = [d for _, d in pairs]
        if self._records:  # one record each, all checked before any is published
            self._check_sizes(payloads)
            for data in payloads:
                if <uint64_t>PyBytes_GET_SIZE(data) != self._slot_size:
                    raise self._not_a_record("publish_many_bytes()", PyBytes_GET_SIZE(data))
        self._put_many(payloads, deadline, [k for k, _ in pairs])

    def publish_many(self, items, block=True, timeout=None):
        """Publish (key, object) pairs in order, each encoded before any is published."""
        cdef uint64_t deadline
        _deadline(block, timeout, &deadline)
        self._codec_set()
        keys, encoded = [], []
        for key, obj in items:
            keys.append(self._key(key))
            encoded.append(self._encoded(obj))
        self._put_many(encoded, deadline, keys)

    def publish_array(self, arr, key=b"", block=True, timeout=None):
        """Publish every record of a 1-D array of the topic's dtype, in order,
        one claim per run of up to capacity records, all under `key`."""
        cdef uint64_t deadline
        cdef Py_buffer view
        cdef bytes k = self._key(key)
        self._records_only("publish_array()")
        _deadline(block, timeout, &deadline)
        checked = self._rec_check(arr)  # raises, or a C-contiguous 1-D array of the dtype
        PyObject_GetBuffer(checked, &view, PyBUF_C_CONTIGUOUS)
        try:
            self._put_view(&view, deadline, k)
        finally:
            PyBuffer_Release(&view)

    def shutdown(self):
        """Stop publishing (publish raises ShutDown from now on); subscribers drain what was published, then end."""
        if self._ring == NULL:
            raise errors.QueueClosed(f"topic {self.name!r} is closed")
        shmring_topic_shutdown(self._ring)

    # ---- subscribing and receiving ----

    def _subscribe(self, start="latest", position=None):
        """A new subscriber of this topic (entry owned by this handle): start
        "latest", "oldest", or at `position`."""
        cdef _Subscription s = _Subscription.__new__(_Subscription)
        cdef int mode, rc
        cdef uint64_t at = 0
        cdef _Participant p
        cdef shmring_topic_stats_t st
        mode = SHMRING_START_AT if position is not None else _STARTS[start]
        s.key_room = self.max_topic_len
        s.buf = <char *>PyMem_Malloc(self.max_topic_len + self._slot_size + 1)
        if s.buf == NULL:
            raise MemoryError()
        p = self._enter()
        try:
            if position is not None and not 0 <= position <= UINT64_MAX:
                # as the C layer says of a position beyond the end (its detail), never a wrap-around
                shmring_topic_stats(self._ring, &st)
                _raise_rc(SHMRING_EINVAL, self.name,
                          f"start position {position} is out of range: 0 to {st.published}, the stream's end")
            if position is not None:
                at = position
            rc = shmring_topic_subscribe(self._part0.ptr, mode, at, &s.ptr)
            if rc == SHMRING_EFULLSUBS:
                raise errors.TooManyParticipants(
                    f"topic {self.name!r} has all its subscriber entries in use: max_subscribers is "
                    f"{self.max_subscribers} (close a Subscriber, or make the topic with more)")
            if rc != SHMRING_OK:
                _raise_rc(rc, self.name, _detail() if rc == SHMRING_EINVAL else None)
            s.mapping = self._map
            s.fork = _forks
            s.topic = self
        finally:
            self._leave()
        return s

    @cython.final
    cdef int _use(self, _Subscription s) except -1:
        """s is this handle's, this process's, and not in use by another thread."""
        if s.mapping is not self._map or s.ptr == NULL:
            raise ValueError("not a subscriber of this topic (or already closed)")
        if self._ring == NULL or self._map is None or self._map.ring == NULL:
            # the ring was freed by close(): its subscriber memory points into it
            raise errors.QueueClosed(f"topic {self.name!r} is closed")
        if s.fork != _forks:
            raise RuntimeError("a subscriber belongs to the process that made it: subscribe in this process")
        if s.busy:
            raise RuntimeError("this subscriber is in use by another thread (a subscriber is used by one thread at a time)")
        s.busy = True
        return 0

    def _unsubscribe(self, _Subscription s):
        """Free s's entry now (closing a Subscriber)."""
        if s.ptr == NULL:
            return
        if s.busy:
            raise RuntimeError("this subscriber is in use by another thread")
        if s.mapping is not None and s.mapping.ring != NULL:
            shmring_topic_unsubscribe(s.ptr)
        else:
            shmring_topic_sub_free(s.ptr)
        s.ptr = NULL
        Py_CLEAR(s.last_pair)  # the last message's payload is not kept alive by a closed subscriber

    def _filter(self, _Subscription s, prefixes, bint add):
        """Add or remove prefixes of s (bytes, or str as UTF-8)."""
        cdef bytes k
        cdef int rc
        keys = self._prefixes(prefixes)
        self._enter()  # close() waits for us, and a closed handle says so
        try:
            self._use(s)
            try:
                for k in keys:
                    rc = shmring_topic_filter(s.ptr, PyBytes_AS_STRING(k), <uint32_t>PyBytes_GET_SIZE(k), add)
                    if rc == SHMRING_ENOMEM:
                        raise MemoryError()
            finally:
                s.busy = False
        finally:
            self._leave()

    @cython.final
    cdef int _recv_wait(self, _Subscription s, _Participant p, uint64_t deadline, char *records,
                        uint32_t limit, uint32_t *klen, uint32_t *len, uint64_t *pos, int rc) except -1:
        """The next message of s into its buffer (records: up to limit records
        into `records`), waiting as asked: the count (1 for a message). rc: what
        the caller's first attempt (_try_recv) returned."""
        cdef uint32_t spin = SPIN
        if rc == 0 and deadline != 0:  # as a claim: a few rounds holding the GIL first
            shmring_topic_wait(p.ptr, s.ptr, NULL, SHMRING_WAIT_READABLE, 0, SPIN_WITH_GIL)
            rc = self._try_recv(s, records, limit, klen, len, pos)
        while rc == 0 and self._until(p, SHMRING_WAIT_READABLE, deadline, &spin, s.ptr):
            rc = self._try_recv(s, records, limit, klen, len, pos)
        if rc == 0:
            raise errors.Empty(f"topic {self.name!r} has no message for this subscriber")
        if rc == SHMRING_ESHUTDOWN:
            raise errors.ShutDown(f"topic {self.name!r} is shut down and this subscriber has read all of it")
        if rc < 0:
            _raise_rc(rc, self.name)  # a corrupt slot: that message alone
        return rc

    @cython.final
    cdef inline int _try_recv(self, _Subscription s, char *records, uint32_t limit, uint32_t *klen,
                              uint32_t *len, uint64_t *pos) noexcept:
        if records != NULL:
            return shmring_topic_recv_records(s.ptr, records, limit)
        return shmring_topic_recv(s.ptr, s.buf, klen, s.buf + s.key_room, len, pos)

    @cython.final
    cdef tuple _recv_one(self, _Subscription s, _Participant p, uint64_t deadline):
        cdef uint32_t klen = 0, size = 0
        cdef uint64_t pos
        cdef int rc = shmring_topic_recv(s.ptr, s.buf, &klen, s.buf + s.key_room, &size, &pos)
        if rc != 1:  # the common case is a message there now: one C call, no other
            self._recv_wait(s, p, deadline, NULL, 0, &klen, &size, &pos, rc)
        # a stream has few keys: the same one is the same (immutable) bytes object, not a new one each time
        key = s.last_key
        if key is None or PyBytes_GET_SIZE(key) != klen or not shmring_same_key(PyBytes_AS_STRING(key), s.buf, klen):
            key = s.last_key = PyBytes_FromStringAndSize(s.buf, klen)
        return shmring_pair(&s.last_pair, key, s.buf + s.key_room, size)

    @cython.final
    cdef object _receive(self, _Subscription s, Py_ssize_t limit, uint64_t deadline):
        """The next message for s as (key, bytes) (limit 0), or a list of 1..limit:
        waits for the first, then takes what is there."""
        cdef _Participant p = self._enter()
        cdef list out
        try:
            self._use(s)
            try:
                if s.held:
                    return _held_out(s.held, limit)
                if limit == 0:
                    return self._recv_one(s, p, deadline)
                out = [self._recv_one(s, p, deadline)]
                while len(out) < limit:
                    try:
                        out.append(self._recv_one(s, p, 0))
                    except (errors.Empty, errors.ShutDown):
                        break
                    except Exception as e:
                        # the messages taken already are past the cursor: return them,
                        # and raise this error on the next call on s
                        s._hold([e])
                        break
                return out
            finally:
                s.busy = False
        finally:
            self._leave()

    def recv_bytes(self, _Subscription s, block=True, timeout=None):
        """The next message for s as (key, bytes), never decoded."""
        cdef uint64_t deadline
        _deadline(block, timeout, &deadline)
        return self._receive(s, 0, deadline)

    def recv(self, _Subscription s, block=True, timeout=None):
        """The next message for s as (key, object), decoded by the codec."""
        cdef uint64_t deadline
        _deadline(block, timeout, &deadline)
        self._codec_set()
        key, raw = self._receive(s, 0, deadline)
        try:
            return key, self._decode(raw)
        except BaseException as e:
            if not isinstance(e, Exception):  # interrupted (Ctrl-C): the next call receives it
                s._hold([(key, raw)])
            raise  # else this message's own error, in its turn

    def recv_many_bytes(self, _Subscription s, max_items=None, block=True, timeout=None):
        """1..max_items messages for s as (key, bytes) (default: up to capacity):
        waits for the first, then takes what is there."""
        cdef uint64_t deadline
        cdef Py_ssize_t limit = self._how_many(max_items, "max_items")
        _deadline(block, timeout, &deadline)
        return self._receive(s, limit, deadline)

    def recv_many(self, _Subscription s, max_items=None, block=True, timeout=None):
        """As recv_many_bytes, decoded, in order. A message that fails to decode
        ends the batch: the ones before it are returned and its error is raised by
        the next call on s (at once if it was the first); the ones after it are
        held on s for the calls after, as is the whole batch if decoding is
        interrupted (Ctrl-C): nothing taken is lost."""
        cdef list batch, out = []
        cdef Py_ssize_t i = 0
        self._codec_set()
        batch = self.recv_many_bytes(s, max_items, block, timeout)
        try:
            for i in range(len(batch)):
                key, raw = batch[i]
                out.append((key, self._decode(raw)))
        except Exception as e:
            s._hold(batch[i + 1:] if not out else [e] + batch[i + 1:])
            if not out:
                raise
        except BaseException:
            s._hold(batch)
            raise
        return out

    def recv_array(self, _Subscription s, max_items=None, block=True, timeout=None, out=None, bint check_only=False):
        """Records for s: 1..max_items as a new array (default: up to capacity),
        or, with out= (a writable 1-D C-contiguous array of the dtype), filled
        from its start: the count. check_only: the checks of the arguments alone
        (raise, or 0), nothing received."""
        cdef uint64_t deadline
        cdef Py_buffer view
        cdef Py_ssize_t limit
        cdef int got
        cdef uint32_t klen, size
        cdef uint64_t pos
        cdef _Participant p
        self._records_only("recv_array()")
        _deadline(block, timeout, &deadline)
        limit = self._how_many(max_items, "max_items")
        made = out is None
        if made:
            arr = self._rec_new(min(limit, <Py_ssize_t>self._maxsize), self._rec_dtype)
        else:
            arr = self._rec_check(out)
            if arr is not out:
                raise ValueError("out= must be C-contiguous (it is filled in place)")
        try:
            PyObject_GetBuffer(arr, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
        except (BufferError, ValueError):
            raise ValueError("out= must be a writable array (it is filled in place)") from None
        try:
            limit = min(limit, <Py_ssize_t>(<uint64_t>view.len // self._slot_size), <Py_ssize_t>UINT32_MAX)
            if limit < 1:
                raise ValueError("out= has no room for a record")
            if check_only:
                return 0
            p = self._enter()
            try:
                self._use(s)
                try:
                    if s.held:
                        got = self._held_records(s, <char *>view.buf, <uint32_t>limit)
                    else:
                        got = self._recv_wait(s, p, deadline, <char *>view.buf, <uint32_t>limit, &klen, &size,
                                              &pos, self._try_recv(s, <char *>view.buf, <uint32_t>limit, &klen,
                                                                   &size, &pos))
                finally:
                    s.busy = False
            finally:
                self._leave()
        finally:
            PyBuffer_Release(&view)
        if not made:
            return got
        return self._rec_trim(arr, got)

    @cython.final
    cdef int _held_records(self, _Subscription s, char *records, uint32_t limit) except -1:
        """recv_array's records out of what s holds (not empty): up to limit, in
        order, stopping before an error or a message that is not one record; either
        of these in front is raised instead, in its turn."""
        cdef list held = s.held
        cdef uint32_t n = 0
        cdef bytes raw
        while n < limit and n < <uint32_t>len(held) and not isinstance(held[n], BaseException):
            raw = held[n][1]
            if <uint64_t>PyBytes_GET_SIZE(raw) != self._slot_size:
                break
            memcpy(records + <uint64_t>n * self._slot_size, PyBytes_AS_STRING(raw), self._slot_size)
            n += 1
        if n == 0:
            first = held.pop(0)
            if isinstance(first, BaseException):
                raise first
            raise errors.InvalidArgument(
                f"a message of {len(first[1])} bytes in records topic {self.name!r} is not one record of "
                f"{self._rec_dtype} ({self._slot_size} bytes): not received as one")
        del held[:n]
        return n

    # ---- counters ----

    def stats(self):
        """Counters of the topic and its subscribers, as a dict (a racy snapshot, exact when quiet)."""
        if self._ring == NULL:
            raise errors.QueueClosed(f"topic {self.name!r} is closed")
        return _topic_stats(self._ring, self.max_subscribers)


cdef object _held_out(list held, Py_ssize_t limit):
    """What a receive hands out of a subscriber's held messages (not empty): the
    first (limit 0), or a list of the first ones up to limit, stopping before an
    error; an error in front is raised (its message's turn)."""
    cdef Py_ssize_t n = 1
    first = held[0]
    if isinstance(first, BaseException):
        del held[0]
        raise first
    if limit == 0:
        del held[0]
        return first
    while n < limit and n < len(held) and not isinstance(held[n], BaseException):
        n += 1
    out = held[:n]
    del held[:n]
    return out


cdef dict _topic_stats(shmring_t *ring, uint32_t max_subscribers):
    cdef shmring_topic_stats_t st
    cdef shmring_topic_sub_info_t info
    cdef uint32_t i
    shmring_topic_stats(ring, &st)
    subs = []
    for i in range(max_subscribers):
        if shmring_topic_subscriber(ring, i, &info) == 1:
            subs.append({"index": i, "position": info.position,
                         "lag": st.published - info.position if st.published > info.position else 0,
                         "lagged": info.lagged, "received": info.received, "alive": bool(info.alive),
                         "detached": bool(info.detached), "pid": info.pid})
    return {
        "published": st.published,
        "holes": st.holes,
        "recoveries": st.recoveries,
        "detached": st.detached,
        "shut_down": bool(st.shut),
        "readers_waiting": st.readers_waiting,
        "writers_waiting": st.writers_waiting,
        "participants": shmring_participants_alive(ring),
        "subscribers": subs,
    }
