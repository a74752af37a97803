"""What Queue and Topic share above the binding: checks of the common
arguments, the codec a handle opens with (and, attaching, the one its segment's
schema says), the segment's name and size in errors, ``with``, and repr."""
import secrets

from shmring import lifetime
from shmring.codec import PickleCodec, RecordsCodec
from shmring.errors import InvalidArgument, SegmentError
from shmring.records import dtype_to_schema, schema_to_dtype

__all__ = ["HandlePolicy", "integer", "within", "ring_size", "NAME_PREFIX", "MSG_SIZE_MAX", "MAXSIZE_MAX",
           "PARTICIPANTS_MAX"]

#: Prefix of generated segment names (/dev/shm/shmring-...).
NAME_PREFIX = "shmring-"
# Bounds the C core sets (csrc/shmring.h): slot sizes and maxsize up to 2**30,
# up to 1024 participants.
MSG_SIZE_MAX = 1 << 30
MAXSIZE_MAX = 1 << 30
PARTICIPANTS_MAX = 1024


def integer(what, value):
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    return value.__index__()


def within(what, value, low, high, unit=""):
    if not low <= value <= high:
        raise InvalidArgument(f"{what} must be {low} to {high}{' ' + unit if unit else ''}, got {value}")


def ring_size(maxsize, msg_size, what="maxsize"):
    """What a ring of maxsize messages of msg_size bytes takes, at least (its slots);
    what: the parameter's name (a topic's is capacity)."""
    slots = 1 << (maxsize - 1).bit_length()  # the capacity: a power of two
    size, unit = float(slots * msg_size), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if size < 1024 or unit == "EiB":
            break
        size /= 1024
    rounded = f" (rounded up to {slots} slots)" if slots != maxsize else ""
    return (f"{what} {maxsize}{rounded} of msg_size {msg_size} bytes needs at least "
            f"{slots * msg_size} bytes ({size:.4g} {unit}) of shared memory")


class HandlePolicy:
    """Mixed into Queue and Topic (before their binding class)."""

    # attached with allow_world_writable=True (pickled handles keep it)
    _trust_writable = False
    _codec = None
    _kind = "queue"

    @staticmethod
    def _checked(msg_size, dtype, chosen, max_participants, mode, default_msg_size):
        """The common arguments checked: (codec, msg_size, schema). A dtype makes
        a records ring (its itemsize is the msg_size); else `chosen` is the codec."""
        within("max_participants", integer("max_participants", max_participants), 1, PARTICIPANTS_MAX)
        if not 0 <= integer("mode", mode) <= 0o777:
            raise InvalidArgument(f"mode must be permission bits, 0o000 to 0o777, got {mode:#o}")
        schema = None
        if dtype is not None:
            chosen = RecordsCodec(dtype)
            dtype = chosen.dtype
            if msg_size is not None and int(msg_size) != dtype.itemsize:
                raise ValueError(f"msg_size {msg_size} differs from the itemsize {dtype.itemsize} of {dtype}")
            msg_size, schema = dtype.itemsize, dtype_to_schema(dtype)
        msg_size = default_msg_size if msg_size is None else integer("msg_size", msg_size)
        within("msg_size", msg_size, 1, MSG_SIZE_MAX, "bytes")
        return chosen, msg_size, schema

    def _create(self, name, maxsize, msg_size, chosen, *open_args):
        """Create the ring (`_open` of the binding), then install the codec."""
        if name is None:
            name = NAME_PREFIX + secrets.token_hex(8)
        try:
            self._open(name, True, maxsize, msg_size, *open_args)
        except MemoryError as e:  # say how much was asked for
            what = "capacity" if self._kind == "topic" else "maxsize"  # the parameter's name
            raise type(e)(f"{e}: {ring_size(maxsize, msg_size, what)}") from None
        self._use(chosen)
        lifetime.track(self, created=True)

    def _use(self, codec):
        """Install the codec on the open handle; one that fails closes it."""
        try:
            codec.install(self)
        except BaseException:
            self.close()  # unlinks what this process made
            raise
        self._codec = codec

    def _attached(self, name, chosen, codec, allow_world_writable):
        """After an attach: the codec asked for, or the records the segment's schema says."""
        schema = self._schema_bytes
        if schema is not None:
            try:
                if chosen is not None:
                    # a SegmentError: also what a pickled handle whose name a records ring took sees
                    raise SegmentError(f"{name!r} is a records {self._kind}: it has no other codec, got codec={codec!r}")
                chosen = RecordsCodec(schema_to_dtype(schema, self.msg_size, name))
            except BaseException:
                self.close()  # unlinks what this process made
                raise
        self._use(chosen if chosen is not None else PickleCodec())
        self._trust_writable = bool(allow_world_writable)
        lifetime.track(self, created=False)
        return self

    @property
    def dtype(self):
        """numpy dtype of a records ring, else None."""
        return getattr(self._codec, "dtype", None)

    def _closed_for_pickling(self):
        if self.closed:
            raise ValueError(f"cannot pickle closed {self._kind} {self.name!r}")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        cls = type(self).__qualname__
        if self.closed:
            return f"<shmring.{cls} name={self.name!r} closed>"
        what = f"dtype={self.dtype}" if self.dtype is not None else f"msg_size={self.msg_size}"
        return f"<shmring.{cls} name={self.name!r} {self._repr_size()} {what} {self._repr_state()}>"
