"""shmring.Topic: publish / subscribe between processes, with prefix filters.

A Topic is the binding's TopicHandle (a multicast ring in shared memory and its
primitives, in Cython) with a codec (codec.py: pickle by default, or numpy
records) and the policy here: defaults, names, checks of arguments, where a
subscriber starts, what it does when it lagged, iteration, pickling of handles.

    topic = shmring.Topic(capacity=8192, msg_size=1024)
    pub = topic.publisher()
    sub = topic.subscribe(b"orders.")          # no prefix: everything
    pub.publish(b"orders.eu", {"id": 1})
    key, obj = sub.recv(timeout=1)
"""
import atexit
import os
import sys
import weakref

from shmring._core import TopicHandle
from shmring.codec import PickleCodec
from shmring.errors import Lagged, SegmentError, ShutDown
from shmring.handles import HandlePolicy, integer, within

__all__ = ["Topic", "Publisher", "Subscriber", "DEFAULT_CAPACITY", "POLICIES"]

#: Messages a topic retains by default.
DEFAULT_CAPACITY = 8192
#: Largest payload in bytes by default.
DEFAULT_MSG_SIZE = 1024
POLICIES = ("block", "overwrite")
SUBSCRIBERS_MAX = 1024   # csrc/layout.h, SHMRING_SUBSCRIBERS_MAX
TOPIC_LEN_MAX = 1024     # SHMRING_TOPIC_LEN_MAX
CAPACITY_MAX = 1 << 30
_SLOW_NOT_OVERWRITE = "slow_subscriber_timeout is for policy 'block' (overwrite never waits for subscribers)"


class Topic(HandlePolicy, TopicHandle):
    """A multicast ring in shared memory: every subscriber receives every message
    published after it subscribed whose key starts with one of its prefixes.

    ``Topic(capacity=8192, msg_size=1024, *, dtype=None, policy="block",
    max_subscribers=64, max_topic_len=32, slow_subscriber_timeout=None,
    name=None, mode=0o600, recover_after=0.1, max_participants=256)``

    - ``capacity``: messages the topic retains (what ``start="oldest"`` replays),
      and under ``block`` how far publishers may run ahead of the slowest live
      subscriber.
    - ``msg_size``: largest payload in bytes (the key is stored beside it, up to
      ``max_topic_len`` bytes, and does not count).
    - ``dtype``: a records topic: every payload is one record of this numpy dtype
      (``publish_array`` / ``recv_array`` move many at once).
    - ``policy``: ``"block"`` (lossless: publishers wait for the slowest live
      subscriber) or ``"overwrite"`` (publishers never wait; a subscriber that
      falls a whole capacity behind skips ahead and counts what it missed in
      ``lagged``).
    - ``slow_subscriber_timeout``: under ``block``, seconds a live subscriber
      that does not move may hold this handle's publishers before it is detached
      (None: never); its next call counts the gap in ``lagged`` and continues at
      the oldest message retained.
    - ``recover_after``: seconds a blocked call waits at one position before it
      looks for processes that died there (a subscriber that gates, a publisher
      that claimed and never committed) and recovers them.
    - ``name``, ``mode``, ``max_participants``: as for ``Queue``.

    The creating process owns the segment (unlinked at its close, collection
    or exit); other processes get a handle by pickling or ``Topic.attach(name)``.
    """

    _kind = "topic"
    #: Messages the topic retains (and, under block, how far publishers may run ahead).
    capacity = property(lambda self: self.maxsize)

    def __init__(self, capacity=DEFAULT_CAPACITY, msg_size=None, *, dtype=None, policy="block", max_subscribers=64,
                 max_topic_len=32, slow_subscriber_timeout=None, name=None, mode=0o600, recover_after=0.1,
                 max_participants=256):
        capacity = integer("capacity", capacity)
        within("capacity", capacity, 1, CAPACITY_MAX, "messages")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        within("max_subscribers", integer("max_subscribers", max_subscribers), 1, SUBSCRIBERS_MAX)
        within("max_topic_len", integer("max_topic_len", max_topic_len), 0, TOPIC_LEN_MAX, "bytes")
        if slow_subscriber_timeout is not None and policy == "overwrite":
            raise ValueError(_SLOW_NOT_OVERWRITE)
        chosen, msg_size, schema = self._checked(msg_size, dtype, PickleCodec(), max_participants, mode,
                                                 DEFAULT_MSG_SIZE)
        self._create(name, capacity, msg_size, chosen, mode, max_participants, recover_after, schema,
                     max_subscribers, max_topic_len, policy == "overwrite", slow_subscriber_timeout)

    @classmethod
    def attach(cls, name, *, recover_after=0.1, slow_subscriber_timeout=None, allow_world_writable=False):
        """Open a handle on an existing topic by segment name (its dtype, if any,
        is read from the segment). World-writable segments of other users are
        refused unless ``allow_world_writable=True``, as for ``Queue.attach``."""
        self = cls.__new__(cls)
        self._open(name, False, recover_after=recover_after, slow_subscriber_timeout=slow_subscriber_timeout,
                   trust_writable=bool(allow_world_writable))
        if slow_subscriber_timeout is not None and self.policy == "overwrite":  # the policy is the segment's
            self.close()
            raise ValueError(_SLOW_NOT_OVERWRITE)
        return self._attached(name, None, None, allow_world_writable)

    def publisher(self):
        """A Publisher for this process."""
        return Publisher(self)

    def subscribe(self, *prefixes, start="latest"):
        """A new Subscriber receiving the messages whose key starts with one of
        `prefixes` (bytes, or str as UTF-8; none at all, or ``b""``: every message).

        ``start``: ``"latest"`` (default), the messages published after this
        returns; ``"oldest"``, from the oldest message the topic retains; or a
        position (a value of ``Subscriber.position``), resumed if still retained,
        else from the oldest one, the gap counted in ``lagged``.
        """
        return Subscriber(self, prefixes, start)

    def __reduce__(self):
        self._closed_for_pickling()
        return (_unpickle_topic, (type(self), self.name, self.capacity, self.msg_size, self.recover_after,
                                  self.slow_subscriber_timeout, self.dtype, self._trust_writable))

    def _repr_size(self):
        return f"capacity={self.capacity}"

    def _repr_state(self):
        return f"policy={self.policy}"


def _unpickle_topic(cls, name, capacity, msg_size, recover_after, slow, dtype=None, trust_writable=False):
    t = cls.attach(name, recover_after=recover_after, slow_subscriber_timeout=slow,
                   allow_world_writable=trust_writable)
    if (t.capacity, t.msg_size, t.dtype) != (capacity, msg_size, dtype):
        found = (t.capacity, t.msg_size, t.dtype)
        t.close()
        raise SegmentError(f"segment {name!r} has capacity, msg_size, dtype = {found}, the pickled handle "
                           f"expected {(capacity, msg_size, dtype)}: the name was reused by another topic")
    return t


class _OfThisProcess:
    """Made in the process that uses it: a forked child makes its own. Its calls
    are the binding's bound methods, set on the instance (no Python frame between
    the caller and Cython); after a fork, the child's copy refuses them."""

    _calls = ()

    def __init__(self, topic):
        if not isinstance(topic, Topic):
            raise TypeError(f"expected a shmring.Topic, got {type(topic).__name__}")
        self._topic = topic
        _made_here.add(self)

    def _bind(self, source):
        for name in self._calls:
            setattr(self, name, getattr(source, name))

    def _unbind(self):
        for name in self._calls:
            self.__dict__.pop(name, None)

    def _disown(self):
        """In a forked child: every call refuses."""
        for name in self._calls:
            setattr(self, name, self._refuse)

    def _refuse(self, *args, **kwargs):
        made = "topic.publisher()" if isinstance(self, Publisher) else "topic.subscribe()"
        raise RuntimeError(f"this {type(self).__name__} belongs to the process that made it: make another in this "
                           f"one ({made})")

    @property
    def topic(self):
        return self._topic

    def __reduce__(self):
        raise TypeError(f"a {type(self).__name__} is made in the process that uses it: pass the Topic "
                        f"(it pickles) and call topic.{'publisher()' if isinstance(self, Publisher) else 'subscribe()'} there")


_made_here = weakref.WeakSet()


def _disown_after_fork():
    for obj in list(_made_here):
        obj._disown()


os.register_at_fork(after_in_child=_disown_after_fork)

_exit_hook_pid = None


def _close_subscribers():
    """At exit: free this process's subscriber entries, so that they gate nobody
    (a multiprocessing child ends with os._exit: its finalizers run this too)."""
    for obj in list(_made_here):
        if isinstance(obj, Subscriber):
            try:
                obj.close()
            except Exception:  # in use by a thread still blocked in it: recovery frees it
                pass


def _close_subscribers_at_exit():
    global _exit_hook_pid
    if _exit_hook_pid == os.getpid():
        return
    _exit_hook_pid = os.getpid()
    atexit.register(_close_subscribers)
    util = sys.modules.get("multiprocessing.util")
    if util is not None:  # before the handles' own finalizer (priority 0) unlinks
        util.Finalize(None, _close_subscribers, exitpriority=1)


class Publisher(_OfThisProcess):
    """Publishes to a topic from this process (``topic.publisher()``). After
    ``topic.shutdown()``, publishing raises ``shmring.ShutDown``.

    - ``publish(key, obj, block=True, timeout=None)``: `obj` pickled (or one
      record of a dtype topic) under `key` (bytes, or str as UTF-8; ``b""``: no
      topic). Under policy block, waits while the slowest live subscriber is a
      capacity behind: ``Full`` after `timeout` seconds (at once with block=False).
    - ``publish_bytes(key, data, ...)``: a bytes-like payload as it is.
    - ``publish_many([(key, obj), ...], ...)``, ``publish_many_bytes(...)``: in
      order, one claim per contiguous run; ``Full.count`` says how many went out.
    - ``publish_array(arr, key=b"", ...)``: a dtype topic's records, one claim per run.
    """

    _calls = ("publish", "publish_bytes", "publish_many", "publish_many_bytes", "publish_array")

    def __init__(self, topic):
        super().__init__(topic)
        self._bind(topic)

    def __repr__(self):
        return f"<shmring.Publisher of {self._topic.name!r}>"


ON_LAG = ("count", "raise")


class Subscriber(_OfThisProcess):
    """Receives a topic's messages (``topic.subscribe(...)``), from one thread at a
    time. ``lagged`` counts exactly the positions of the stream it missed (every
    message published in a gap, whatever its key); ``on_lag = "raise"``
    makes the call after a gap raise ``shmring.Lagged`` once instead (the next
    continues). Iterating blocks for the next message and ends once the topic
    is shut down and drained. ``close()`` frees its entry in the topic.

    - ``recv(block=True, timeout=None)``: the next message as (key, obj), key
      bytes; ``Empty`` after `timeout` seconds (at once with block=False);
      ``ShutDown`` once the topic is shut down and this subscriber has it all.
    - ``recv_bytes(...)``: as (key, bytes), not unpickled.
    - ``recv_many(max_items=None, ...)``, ``recv_many_bytes(...)``: a list of
      1..max_items, waiting for the first, then taking what is there.
    - ``recv_array(max_items=None, ..., out=None)``: a dtype topic's matching
      records as an array, or with out= (a writable array of the dtype) filled
      from its start: the count.
    """

    _calls = ("recv", "recv_bytes", "recv_many", "recv_many_bytes", "recv_array")

    def __init__(self, topic, prefixes=(), start="latest"):
        super().__init__(topic)
        if isinstance(start, str):
            if start not in ("latest", "oldest"):
                raise ValueError(f"start must be 'latest', 'oldest' or a position, got {start!r}")
            position = None
        elif isinstance(start, bool) or not hasattr(start, "__index__"):
            raise TypeError(f"start must be 'latest', 'oldest' or a position (an int), got {start!r}")
        else:
            position = start.__index__()  # its range (0 to the end) is checked as the entry is taken
        self._on_lag = "count"
        prefixes = topic._prefixes(prefixes)  # bad ones refused before an entry is taken
        self._sub = topic._subscribe(start if position is None else "latest", position)
        if prefixes:
            try:
                topic._filter(self._sub, prefixes, True)
            except BaseException:  # out of memory, Ctrl-C: the entry gates nobody
                topic._unsubscribe(self._sub)
                raise
        self._bind(self._sub)
        _close_subscribers_at_exit()

    # ---- filters ----

    def subscribe(self, *prefixes):
        """Also receive messages whose key starts with one of `prefixes`, from the
        next message not yet received on."""
        self._topic._filter(self._sub, prefixes, True)

    def unsubscribe(self, *prefixes):
        """Stop receiving messages for `prefixes` (only those given before)."""
        self._topic._filter(self._sub, prefixes, False)

    # ---- lag ----

    @property
    def on_lag(self):
        """``"count"`` (default: just count in ``lagged``) or ``"raise"``."""
        return self._on_lag

    @on_lag.setter
    def on_lag(self, value):
        if value not in ON_LAG:
            raise ValueError(f"on_lag must be one of {ON_LAG}, got {value!r}")
        self._sub._take_lag()  # only gaps from now on raise
        self._on_lag = value
        self._rebind()

    def _rebind(self):
        """The binding's calls while gaps only count; else the methods below, which
        raise Lagged."""
        if self._on_lag == "count":
            self._bind(self._sub)
        elif getattr(self.__dict__.get("recv"), "__func__", None) is not _OfThisProcess._refuse:
            self._unbind()  # (a forked child's copy keeps refusing)

    @property
    def lagged(self):
        """Exact number of positions of the stream this subscriber missed (lapped
        under overwrite, or detached under block, or started at a position no
        longer retained): every message published in the gap, matching its
        prefixes or not, holes too. The keys of overwritten messages can no
        longer be read, so how many of them it had asked for is not known: a
        ``b"a."`` subscriber that missed 94 positions lagged 94, even if only 9
        of them were ``a.*`` messages."""
        return self._sub.lagged

    @property
    def position(self):
        """The stream position this subscriber reads next (for start=<position>)."""
        return self._sub.position

    # ---- receiving while on_lag is "raise" ----
    # Each call takes its messages as (key, raw bytes) and gives them back to the
    # binding to hold; after a gap it raises Lagged, else (and on the next call
    # after Lagged, whichever it is) the binding hands the held messages out as
    # that call's own type, in order: nothing is lost, nothing changes shape.

    def _lag_checked(self, got):
        """Hold what a call took (a list of (key, raw)); raise Lagged if it came after a gap."""
        self._sub._hold(got)
        missed = self._sub._take_lag()
        if missed:
            raise Lagged(f"subscriber of topic {self._topic.name!r} missed {missed} messages", missed)

    def recv(self, block=True, timeout=None):
        self._lag_checked([self._sub.recv_bytes(block, timeout)])
        return self._sub.recv(False)

    def recv_bytes(self, block=True, timeout=None):
        self._lag_checked([self._sub.recv_bytes(block, timeout)])
        return self._sub.recv_bytes(False)

    def recv_many(self, max_items=None, block=True, timeout=None):
        self._lag_checked(self._sub.recv_many_bytes(max_items, block, timeout))
        return self._sub.recv_many(max_items, False)

    def recv_many_bytes(self, max_items=None, block=True, timeout=None):
        self._lag_checked(self._sub.recv_many_bytes(max_items, block, timeout))
        return self._sub.recv_many_bytes(max_items, False)

    def recv_array(self, max_items=None, block=True, timeout=None, out=None):
        self._topic.recv_array(self._sub, max_items, out=out, check_only=True)  # bad arguments: nothing taken
        if max_items is None and out is not None and getattr(out, "ndim", None) == 1 and len(out):
            max_items = len(out)  # no more than out= takes (more would only be held)
        self._lag_checked(self._sub.recv_many_bytes(max_items, block, timeout))
        return self._sub.recv_array(max_items, False, None, out)

    def __iter__(self):
        while True:
            try:
                yield self.recv()
            except ShutDown:
                return

    def close(self):
        """Leave the topic: this subscriber's entry is freed (it gates nobody)."""
        self._topic._unsubscribe(self._sub)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"<shmring.Subscriber of {self._topic.name!r} at {self.position} lagged={self.lagged}>"
