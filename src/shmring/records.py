"""Typed records: how a numpy dtype is written into a segment and read back.

A records queue stores, in its segment, a JSON description of its dtype, so
that any process (and `Queue.attach`) knows what a record is without being
told. numpy is imported only when records are used.
"""
import json

from shmring.errors import SegmentError

__all__ = ["check_dtype", "dtype_to_schema", "schema_to_dtype"]


def check_dtype(dtype):
    """The numpy dtype a queue can carry: fixed size, no Python objects."""
    import numpy as np

    dt = np.dtype(dtype)
    if dt.hasobject:
        raise TypeError(f"dtype {dt} holds Python objects; records must be plain data")
    if dt.itemsize == 0:
        raise TypeError(f"dtype {dt} has no size")
    return dt


def _encode(dt):
    if dt.names is None:
        if dt.subdtype is not None:
            base, shape = dt.subdtype
            return {"base": _encode(base), "shape": list(shape)}
        return dt.str  # e.g. '<f8', '|u1', '<M8[ns]': byte order included
    return {
        "names": list(dt.names),
        "formats": [_encode(dt.fields[name][0]) for name in dt.names],
        "offsets": [dt.fields[name][1] for name in dt.names],
        "itemsize": dt.itemsize,
        "aligned": dt.isalignedstruct,
    }


def _decode(obj):
    import numpy as np

    if isinstance(obj, str):
        return np.dtype(obj)
    if "base" in obj:
        return np.dtype((_decode(obj["base"]), tuple(obj["shape"])))
    return np.dtype({
        "names": obj["names"],
        "formats": [_decode(f) for f in obj["formats"]],
        "offsets": obj["offsets"],
        "itemsize": obj["itemsize"],
    }, align=bool(obj.get("aligned", False)))


def dtype_to_schema(dt):
    return json.dumps({"numpy": _encode(dt)}, separators=(",", ":"))


# How deep a schema may nest (a record of arrays of records...): far beyond any
# real dtype, and far below what would exhaust the stack parsing it.
SCHEMA_DEPTH_MAX = 32


def _depth(obj, limit):
    """How deep obj nests, counting no further than limit + 1."""
    if limit < 0 or not isinstance(obj, (dict, list)):
        return 0
    children = obj.values() if isinstance(obj, dict) else obj
    return 1 + max((_depth(c, limit - 1) for c in children), default=0)


def schema_to_dtype(schema, itemsize, name):
    """The dtype a segment's schema (bytes) describes; SegmentError if it makes no sense.

    The schema comes from shared memory that any process able to write the
    segment may have written: whatever it holds is a SegmentError, never another
    exception (not UTF-8, not JSON, nested too deep, not a dtype).
    """
    try:
        obj = json.loads(schema.decode("utf-8"))
        if _depth(obj, SCHEMA_DEPTH_MAX) > SCHEMA_DEPTH_MAX:
            raise ValueError(f"nested more than {SCHEMA_DEPTH_MAX} levels deep")
        dt = check_dtype(_decode(obj["numpy"]))
    except Exception as e:  # anything a crafted schema can provoke
        raise SegmentError(f"segment {name!r} has an unreadable record schema: {type(e).__name__}: {e}") from None
    if dt.itemsize != itemsize:
        raise SegmentError(f"segment {name!r}: schema itemsize {dt.itemsize} != slot size {itemsize}")
    return dt
