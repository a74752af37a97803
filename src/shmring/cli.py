"""The `shmring` command: benchmark, and look inside the rings on this machine.

    shmring bench [--quick] ...      shmring beside the queues you use today
    shmring ls                       the shmring segments on this machine (queues and topics)
    shmring stat NAME [--watch]      one ring's live counters (a topic's: per subscriber)
    shmring rm NAME... | --stale [--prefix P]
                                     remove segments (refuses a live ring without --force)
"""
import argparse
import functools
import json
import math
import re
import sys
import time

from shmring import admin

DAY = 86400.0  # the longest --interval: time.sleep overflows near 1e10 seconds


def positive_int(text):
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def positive_float(text):
    """An argparse type: a finite number > 0 (float() also takes nan and inf)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive finite number")
    return value


def seconds(text):
    """An argparse type: an interval in seconds, > 0 and at most a day."""
    value = positive_float(text)
    if value > DAY:
        raise argparse.ArgumentTypeError(f"{text!r} seconds is more than a day ({DAY:.0f})")
    return value


def name_prefix(text):
    """An argparse type: the start of segment names (1-30 of A-Z a-z 0-9 . _ -)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,30}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not the start of a segment name "
                                         "(1-30 characters of A-Z a-z 0-9 . _ -)")
    return text


def cmd_ls(args, out):
    rings = list(admin.list_segments())
    if args.json:
        json.dump(rings, out, indent=1)
        print(file=out)
        return 0
    if not rings:
        print("no shmring segments", file=out)
        return 0
    print(f"{'NAME':<30} {'KIND':<13} {'MAXSIZE':>8} {'MSG SIZE':>8} {'FILL':>8} {'SUBS':>5} {'CREATOR':>8} "
          f"{'ALIVE':>7} {'SIZE':>10}", file=out)
    for r in rings:
        if "error" in r:
            print(f"{r['name']:<30} unreadable: {r['error']}", file=out)
            continue
        # a topic: FILL is its slowest subscriber's lag, SUBS its subscribers
        subs = len(r["subscribers"]) if "subscribers" in r else "-"
        print(f"{r['name']:<30} {r['kind']:<13} {r['maxsize']:>8} {r['msg_size']:>8} {admin.fill(r):>8} {subs:>5} "
              f"{r['creator_pid']:>8} {r['participants_alive']:>3}/{r['participants']:<3} "
              f"{admin.human_bytes(r['bytes']):>10}", file=out)
    return 0


def cmd_stat(args, out):
    previous, lines = None, 0
    interval = 1.0 if args.interval is None else args.interval
    count = sys.maxsize if args.count is None else args.count
    for i in range(count if args.watch else 1):
        if i:
            time.sleep(interval)
        info = admin.inspect(args.name)
        text = admin.describe(info, previous, interval)
        if lines and out.isatty():
            out.write(f"\x1b[{lines}F\x1b[J")  # refresh in place
        elif lines:
            print(file=out)
        out.write(text)
        out.flush()
        lines, previous = text.count("\n"), info
    return 0


def cmd_rm(args, out):
    names = admin.stale_segments(args.prefix or "") if args.stale else args.names
    removals = [(name, functools.partial(admin.remove, name, force=args.force)) for name in names]
    if args.stale:  # and what crashed creators and hand removals left of lock files
        removals += [(entry, functools.partial(admin.remove_lock_file, entry))
                     for entry in admin.orphaned_lock_files(args.prefix or "")]
    status = 0
    for name, remove in removals:
        removed, why = remove()
        print(f"{'removed' if removed else 'not removed'} {name}: {why}", file=out)
        status = status or (0 if removed else 1)
    if args.stale and not removals:
        print("no stale segments", file=out)
    return status


def main(argv=None, out=sys.stdout):
    ap = argparse.ArgumentParser(prog="shmring", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("bench", help="shmring beside the queues you use today", add_help=False)
    p = sub.add_parser("ls", help="the shmring segments on this machine")
    p.add_argument("--json", action="store_true", help="as JSON")
    stat = sub.add_parser("stat", help="one ring's live counters")
    stat.add_argument("name")
    stat.add_argument("--watch", action="store_true", help="refresh in place")
    # None where not given: without --watch, either one is an error, not ignored
    stat.add_argument("--interval", type=seconds, help="with --watch: seconds between refreshes (default 1)")
    stat.add_argument("--count", type=positive_int, help="with --watch: stop after this many refreshes")
    rm = sub.add_parser("rm", help="remove segments; a live ring only with --force")
    rm.add_argument("names", nargs="*")
    rm.add_argument("--stale", action="store_true", help="every segment whose participants are all dead")
    rm.add_argument("--prefix", type=name_prefix,
                    help="with --stale: only segments (and lock files) whose names start with PREFIX")
    rm.add_argument("--force", action="store_true",
                    help="also a ring that live processes use, or one of ours that fails validation "
                         "(another layout version); never a file that is not a shmring segment")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # its own parser, its own --help
        from shmring.bench.command import main as bench
        return bench(argv[1:], out)
    args = ap.parse_args(argv)
    if args.command == "rm" and not (args.names or args.stale):
        rm.error("needs segment names or --stale")
    if args.command == "rm" and args.names and args.stale:
        rm.error("segment names or --stale, not both")
    if args.command == "rm" and args.prefix is not None and not args.stale:
        rm.error("--prefix needs --stale")
    if args.command == "stat" and not args.watch and (args.interval, args.count) != (None, None):
        stat.error("--interval and --count need --watch")
    try:
        return {"ls": cmd_ls, "stat": cmd_stat, "rm": cmd_rm}[args.command](args, out)
    except (OSError, ValueError) as e:
        print(f"shmring {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # how stat --watch is usually ended: no traceback
        return 130
