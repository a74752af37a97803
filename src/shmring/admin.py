"""What the operator commands (shmring ls / stat / rm) know about segments."""
import errno
import mmap
import os
import re
import stat
import sys
import time

import _posixshmem

from shmring._core import _create_died, _unlink_segment, inspect  # inspect: a FIFO or a link is a SegmentError, never a wait
from shmring.errors import SegmentError

# Where POSIX shared memory objects show up as files (Linux; macOS has no such place).
SHM_DIR = "/dev/shm"
MAGIC = b"SHMRING1"
UNPUBLISHED = bytes(len(MAGIC))  # a segment whose creator has not written the magic (yet)
# A ring's lock file (csrc/liveness.c): its segment's name, "~", 16 random hex digits.
LOCK_FILE = re.compile(r"([A-Za-z0-9._-]{1,30})~[0-9a-f]{16}")


def read_magic(name):
    """The first len(MAGIC) bytes of segment `name` (fewer where it is shorter), or
    None where it is not a regular file. Never blocks and never follows a link:
    anyone may put a FIFO or a symbolic link in /dev/shm, and a plain open() of a
    FIFO waits for a writer forever."""
    if "/" in name:  # never a segment's name; in SHM_DIR, a way out of it
        raise ValueError(f"invalid segment name: {name!r}")
    if not os.path.isdir(SHM_DIR):
        return _mapped_magic(name)
    try:
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO):  # a symbolic link; a socket
            return None
        if e.errno == errno.ENAMETOOLONG:
            raise ValueError(f"invalid segment name (too long): {name!r}") from None
        raise
    try:
        return os.read(fd, len(MAGIC)) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    finally:
        os.close(fd)


def _mapped_magic(name):
    """read_magic where there is no SHM_DIR (macOS): there a shared memory object
    cannot be read(), only mapped, and the namespace holds nothing but such objects."""
    fd = _posixshmem.shm_open("/" + name, os.O_RDONLY, 0)
    try:
        size = min(os.fstat(fd).st_size, len(MAGIC))
        if not size:
            return b""
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
            return m[:]
    finally:
        os.close(fd)


def _entries(prefix=""):
    """The names in SHM_DIR that start with `prefix`, sorted."""
    return sorted(entry for entry in os.listdir(SHM_DIR) if entry.startswith(prefix))


def list_segments(prefix=""):
    """Every shmring segment this user can read (of those whose names start with
    `prefix`): dicts from inspect(), or {"name", "error"} for one that is broken or
    from another layout version."""
    if not os.path.isdir(SHM_DIR):
        raise OSError(f"listing segments needs {SHM_DIR} (Linux); on {sys.platform} use "
                      "`shmring stat NAME` with a name you know")
    for entry in _entries(prefix):
        try:
            if read_magic(entry) != MAGIC:
                continue
        except OSError:
            continue  # not ours to read
        try:
            yield inspect(entry)
        except (SegmentError, OSError, ValueError) as e:
            yield {"name": entry, "error": str(e)}


def stale_segments(prefix=""):
    """Segments whose participants are all dead (their creator killed, say), and
    those whose creator died before publishing them; only names that start with
    `prefix` are looked at."""
    stale = [r["name"] for r in list_segments(prefix) if "error" not in r and r["participants_alive"] == 0]
    return sorted(stale + [name for name in _entries(prefix) if _died_creating(name)])


def _died_creating(name):
    try:
        return read_magic(name) == UNPUBLISHED and _create_died(name)
    except (OSError, ValueError):
        return False


def _made_like_a_lock_file(entry):
    """Made like a lock file, by this user: an empty regular file of one link,
    read-write for its owner and for groups and others either read-write or
    nothing. Anything else of a lock file's name is not ours to remove."""
    try:
        st = os.lstat(os.path.join(SHM_DIR, entry))
    except OSError:
        return False
    mode = stat.S_IMODE(st.st_mode)
    return (stat.S_ISREG(st.st_mode) and st.st_size == 0 and st.st_nlink == 1 and st.st_uid == os.geteuid() and mode >> 6 == 6
            and (mode >> 3) & 7 in (0, 6) and mode & 7 in (0, 6))


def orphaned_lock_files(prefix=""):
    """This user's lock files whose ring is gone (its segment removed by hand):
    those whose segment is missing, or names another lock file. A segment being
    made or unreadable keeps its own; a creator that died making its ring is
    stale_segments()'s, which removes both. Only names that start with `prefix`."""
    if not os.path.isdir(SHM_DIR):
        return []
    orphans = []
    for entry in _entries(prefix):
        match = LOCK_FILE.fullmatch(entry)
        if not match or not _made_like_a_lock_file(entry):
            continue
        try:
            if read_magic(match[1]) != MAGIC or inspect(match[1])["lock_file"] == entry:
                continue
        except FileNotFoundError:
            pass  # no segment at all
        except (SegmentError, OSError, ValueError):
            continue
        orphans.append(entry)
    return orphans


def remove_lock_file(entry):
    """(removed, why) for an entry of orphaned_lock_files()."""
    try:
        os.unlink(os.path.join(SHM_DIR, entry))
    except OSError as e:
        return False, e.strerror
    return True, "lock file of no ring"


def remove(name, force=False):
    """(removed, why). Only a segment that starts with MAGIC is ever removed; one
    that some live process still uses, or that fails validation (another layout
    version, say), only if forced."""
    try:
        magic = read_magic(name)
        if magic == UNPUBLISHED and _create_died(name):
            _unlink_segment(name)
            return True, "its creator died while making it"
        if magic != MAGIC:
            return False, "not a shmring segment"
        info = inspect(name)
    except FileNotFoundError:
        return False, "no such segment"
    except SegmentError as e:
        if not force:
            return False, f"unreadable ({e}); --force removes it anyway"
        info = None
    except ValueError as e:  # an invalid name: --force cannot help
        return False, str(e)
    if info is not None and info["participants_alive"] and not force:
        return False, f"{info['participants_alive']} live participant(s); --force removes it anyway"
    _unlink_segment(name)
    alive = info["participants_alive"] if info else "?"
    return True, f"{alive} live participant(s)" if alive else "no live participant"


def human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def fill(info):
    """A queue's fill; a topic's: how far its slowest subscriber is behind."""
    if "subscribers" in info:
        return max((s["lag"] for s in info["subscribers"]), default=0)
    return info["fill"]


def _head(info, kind, size):
    """The first lines of `shmring stat`: name, kind (and schema), size, creation."""
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["created_unix_ns"] / 1e9))
    return [f"name            {info['name']}",
            f"kind            {kind}" + (f"  {info['schema']}" if info["schema"] else ""),
            size,
            f"created         {created} by pid {info['creator_pid']}"]


def describe_topic(info, previous=None, interval=1.0):
    """The lines `shmring stat` prints for a topic: its counters, then each subscriber."""
    lines = _head(info, f"{info['kind']}, policy {info['policy']}",
                  f"capacity        {info['maxsize']} messages of up to {info['msg_size']} bytes, keys of up to "
                  f"{info['max_topic_len']} bytes ({human_bytes(info['bytes'])} mapped)")
    lines.append(f"published       {info['published']}" + (" (shut down)" if info["shut_down"] else ""))
    if previous is not None:
        lines.append(f"rate            {(info['published'] - previous['published']) / interval:,.0f} published/s")
    lines += [
        f"holes           {info['holes']} (claimed by publishers that died), {info['recoveries']} recoveries, "
        f"{info['detached']} subscribers detached as slow",
        f"waiting         {info['readers_waiting']} subscribers, {info['writers_waiting']} publishers",
        f"participants    {info['participants_alive']} alive of {info['participants']} registered",
        f"subscribers     {len(info['subscribers'])} of {info['max_subscribers']}",
    ]
    if info["subscribers"]:
        lines.append(f"  {'#':>4} {'PID':>8} {'POSITION':>12} {'LAG':>10} {'LAGGED':>10} {'RECEIVED':>12}  STATE")
        for s in info["subscribers"]:
            state = "dead" if not s["alive"] else "detached" if s["detached"] else "attached"
            lines.append(f"  {s['index']:>4} {s['pid']:>8} {s['position']:>12} {s['lag']:>10} {s['lagged']:>10} "
                         f"{s['received']:>12}  {state}")
    return "\n".join(lines) + "\n"


def describe(info, previous=None, interval=1.0):
    """The lines `shmring stat` prints; rates from the previous snapshot if any."""
    if "subscribers" in info:
        return describe_topic(info, previous, interval)
    lines = _head(info, info["kind"], f"maxsize         {info['maxsize']} messages of up to {info['msg_size']} bytes "
                                      f"({human_bytes(info['bytes'])} mapped)")
    lines += [
        f"fill            {info['fill']} / {info['maxsize']} ({100 * info['fill'] / info['maxsize']:.0f}%)",
        f"messages in     {info['put']}",
        f"messages out    {info['got']}",
    ]
    if previous is not None:
        lines.append(f"rate            {(info['put'] - previous['put']) / interval:,.0f} in/s, "
                     f"{(info['got'] - previous['got']) / interval:,.0f} out/s")
    lines += [
        f"tasks done      {info['tasks_done']}",
        f"waiting         {info['readers_waiting']} readers, {info['writers_waiting']} writers",
        f"participants    {info['participants_alive']} alive of {info['participants']} registered",
        f"lost            {info['lost']} messages (held by processes that died), "
        f"{info['recoveries']} recoveries",
        f"expired         {info['expired']} messages (dropped by gets: their deadline had passed)",
    ]
    if info["shut_down"]:
        lines.append("shut down       at once (immediate): gets refuse, "
                     f"{info['discarded']} messages discarded" if info["shut_down_immediate"] else
                     "shut down       puts refuse, gets drain what is left")
    return "\n".join(lines) + "\n"
