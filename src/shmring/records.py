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


def schema_to_dtype(schema, itemsize, name):
    """The dtype a segment's schema describes; SegmentError if it makes no sense."""
    try:
        dt = check_dtype(_decode(json.loads(schema)["numpy"]))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise SegmentError(f"segment {name!r} has an unreadable record schema: {e}") from None
    if dt.itemsize != itemsize:
        raise SegmentError(f"segment {name!r}: schema itemsize {dt.itemsize} != slot size {itemsize}")
    return dt
