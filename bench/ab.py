"""A/B of `shmring bench` rows between two builds: is any shmring row slower after a change?

    python bench/ab.py --base REV [--head REV] [--rounds N] [--quick] [--only WORDS]
                       [--max-slowdown 0.03] [--markdown FILE]

Builds the extension of two revisions, each in a temporary directory of its own
(base: `git archive REV`; head: the working tree as it is, or `git archive REV`),
with this interpreter and `setup.py build_ext --inplace`, installing nothing. Each
build's rows are its own bench rows (`shmring.bench.command.build_rows`), each
repetition run by a fresh process whose PYTHONPATH is that build's src/ alone
(checked before the first round: see check_imports).

A round runs every selected row once on each build, back to back, A then B in even
rounds and B then A in odd ones, and measures where the two benchmark CPUs sit
(bench/placement.c: one cache line's round trip between them) before, between and
after the two: a pair of repetitions. On a VM the host moves the virtual CPUs
between cores that share a cache and cores that do not every few seconds, and
two-process rows follow it (records rows by 3-4x), so pairs are compared only within
one placement: the run's round trips split at their widest gap (if it spans GAP x), and a
pair is "near" when all three probes are below it, "far" when none is, else left out ("moved").

Rows: the shmring rows that --only selects as `shmring bench --only` does (default:
the throughput, latency and records scenarios' shmring rows). B/A is the median over
a placement's pairs of each pair's B / A; rates are higher-is-better, round trips (us)
lower-is-better. A row is SLOWER where a placement with at least MIN_PAIRS pairs has
B worse than A by more than --max-slowdown; "few pairs" where no placement has that
many. Exit status 0 when every row is ok, 1 otherwise (2: usage or build error).
"""
import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ONLY = ["throughput", "latency", "records"]
METRICS = {"rate": False, "median_us": True, "recovery_s": True}  # a row's metric: is lower better?
UNITS = {"median_us": "us", "recovery_s": "s"}  # a rate's unit is the row's, per second
SHM_DIR = Path("/dev/shm")
GAP = 1.5        # round trips this many times apart are two placements (see split)
MIN_PAIRS = 10   # pairs a placement needs for a verdict

# Run with a build's environment: where the bench process and a worker started as
# the bench starts its row processes (shmring.bench.runner.context()) import shmring from.
CHECK_IMPORTS = """
import json, shmring, shmring._core
from shmring.bench import runner
where = "[__import__('importlib').import_module(m).__file__ for m in ('shmring', 'shmring._core')]"
with runner.context().Pool(1) as pool:
    worker = pool.apply(eval, (where,))
print(json.dumps({"bench": [shmring.__file__, shmring._core.__file__], "worker": worker}))
"""

# Run with a build's environment, arguments WORDS PAYLOADS SCALE METRICS [KEY] (JSON): without
# KEY print the selected shmring rows as {key: unit}; with it run one repetition of that row and
# print {"metric": ..., "value": ...} (or {"error": ...}). A fresh process for each repetition, as
# each `shmring bench` run is: nothing an earlier row left in the process can weigh on a later one.
DRIVER = """
import json, sys
from shmring.bench import command
words, payloads, scale, metrics, *key = map(json.loads, sys.argv[1:])
rows = {}
for scenario, (table, _) in command.build_rows(payloads).items():
    for row in table:
        if row.name.startswith("shmring") and command.selected(row, scenario, words) and not row.missing():
            rows[f"{scenario}: {row.label()}"] = row
if not key:
    print(json.dumps({k: row.unit for k, row in rows.items()}))
else:
    row = rows[key[0]]
    try:
        result = row.run(max(100, int(row.count * scale)))
        metric = next(m for m in metrics if m in result)
        print(json.dumps({"metric": metric, "value": result[metric]}))
    except Exception as e:
        print(json.dumps({"error": repr(e)}))
"""

# Run with a build's environment, arguments PIDS NAME...: remove the segments of those names that one
# of the comma-separated PIDS created and no live process uses (admin.remove refuses a live one).
REMOVE_OURS = """
import sys
from shmring import admin
pids = {int(p) for p in sys.argv[1].split(",")}
for name in sys.argv[2:]:
    try:
        ours = admin.inspect(name)["creator_pid"] in pids
    except Exception:  # gone already, or not a segment we can read: not ours to remove
        continue
    if ours:
        admin.remove(name)
"""


def fail(message):
    """Stop with exit status 2 (1 says that a row is slower)."""
    print(message, file=sys.stderr)
    sys.exit(2)


def git(*args, **kwargs):
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, **kwargs)


def short_rev(rev):
    try:
        return git("rev-parse", "--short", f"{rev}^{{commit}}", capture_output=True, text=True).stdout.strip()
    except subprocess.CalledProcessError:
        fail(f"{rev!r} is not a commit of {REPO}")


def export_revision(rev, dest):
    """The files of commit rev, under dest."""
    archive = git("archive", "--format=tar", rev, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def export_working_tree(dest):
    """The working tree as it is (tracked files and untracked ones git does not ignore), under dest."""
    names = git("ls-files", "-z", "--cached", "--others", "--exclude-standard",
                capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def build_extension(root):
    """setup.py build_ext --inplace in root, with this interpreter; the compiler's output only on failure."""
    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=root,
                          capture_output=True, text=True)
    if done.returncode:
        fail(f"build in {root} failed:\n{done.stdout}{done.stderr}")


def build_env(root):
    """The environment of a process that must import root's shmring and no other."""
    env = dict(os.environ, PYTHONPATH=str(root / "src"))
    env.pop("PYTHONHOME", None)
    return env


def check_imports(root):
    """Exit unless the bench process and its workers import shmring and its _core from root/src."""
    done = subprocess.run([sys.executable, "-c", CHECK_IMPORTS], cwd=root, env=build_env(root),
                          capture_output=True, text=True)
    if done.returncode:
        fail(f"shmring does not import from {root}:\n{done.stderr}")
    paths = json.loads(done.stdout)
    src = (root / "src").resolve()
    wrong = [p for where in paths.values() for p in where if not Path(p).resolve().is_relative_to(src)]
    if wrong:
        fail(f"a process of the build in {root} imports shmring from elsewhere: {wrong}")


class Driver:
    """A build's rows (DRIVER): `rows` maps each selected row's key to its unit; run(key) is
    one repetition's (metric, value), in a fresh process. `pids`: the processes it started
    (the rings a row makes are its process's)."""

    def __init__(self, root, words, payloads, scale):
        self.root, self.pids = root, []
        self.args = [json.dumps(words), json.dumps(payloads), json.dumps(scale), json.dumps(list(METRICS))]
        self.rows = self._call()

    def _call(self, *key):
        with subprocess.Popen([sys.executable, "-c", DRIVER, *self.args, *map(json.dumps, key)], cwd=self.root,
                              env=build_env(self.root), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as proc:
            self.pids.append(proc.pid)
            out, err = proc.communicate()
        if proc.returncode:
            fail(f"the bench driver of {self.root} failed (exit status {proc.returncode}):\n{err}")
        return json.loads(out)

    def run(self, key):
        answer = self._call(key)
        if "error" in answer:
            fail(f"{key} failed in {self.root}: {answer['error']}")
        return answer["metric"], answer["value"]


def build_probe(work):
    """bench/placement.c built in work, or None (no compiler): then every pair is one placement."""
    exe = work / "placement"
    done = subprocess.run([os.environ.get("CC", "cc"), "-O2", "-std=c11", str(REPO / "bench" / "placement.c"),
                           "-o", str(exe)], capture_output=True)
    return exe if done.returncode == 0 else None


def bench_cpus():
    """The two CPUs a row's consumer and producer are pinned to (shmring.bench.runner.pin(0), pin(1))."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    return usable[0], usable[1 % len(usable)]


def probe(exe):
    """One cache line's round trip between the two benchmark CPUs now, in ns (None without a probe)."""
    if exe is None:
        return None
    done = subprocess.run([str(exe), *map(str, bench_cpus())], capture_output=True, text=True, check=True)
    return float(done.stdout)


def split(trips):
    """The round trip that separates the near placement from the far one: the middle of the
    widest gap between the sorted round trips of the run, if it spans GAP x; else None (one
    placement). A ratio, not a fixed number of ns, so that it holds on any machine."""
    trips = sorted(trips)
    gaps = [(b / a, (a * b) ** 0.5) for a, b in zip(trips, trips[1:]) if a > 0]
    widest = max(gaps, default=(0, None))
    return widest[1] if widest[0] >= GAP else None


def placement(probes, threshold):
    """"near", "far" or "moved" for a pair measured between these probes ("any": no probe or no split)."""
    if threshold is None or any(p is None for p in probes):
        return "any"
    near = [p < threshold for p in probes]
    return "near" if all(near) else "far" if not any(near) else "moved"


def verdict(ratio, lower_is_better, max_slowdown):
    """"ok" or "SLOWER": is B / A worse than the threshold allows, in the row's direction?"""
    slower = ratio > 1 + max_slowdown if lower_is_better else ratio < 1 - max_slowdown
    return "SLOWER" if slower else "ok"


def compare(pairs, units, max_slowdown):
    """Table lines (key, unit, {placement: (pairs, A, B, B/A)}, verdict) from pairs
    {key: [(a, b, metric, (p0, p1, p2)), ...]}: each placement's medians (None for "moved")."""
    threshold = split(p for prs in pairs.values() for *_, probes in prs for p in probes if p is not None)
    lines = []
    for key, prs in pairs.items():
        by_place = {}
        for a, b, _, probes in prs:
            by_place.setdefault(placement(probes, threshold), []).append((a, b))
        lower_is_better = METRICS[prs[0][2]]
        cells, verdicts = {}, []
        for place, ab in by_place.items():
            if place == "moved":
                cells[place] = (len(ab), None, None, None)
                continue
            ratio = statistics.median(b / a for a, b in ab)
            cells[place] = (len(ab), statistics.median(a for a, _ in ab), statistics.median(b for _, b in ab), ratio)
            if len(ab) >= MIN_PAIRS:
                verdicts.append(verdict(ratio, lower_is_better, max_slowdown))
        overall = "few pairs" if not verdicts else "SLOWER" if "SLOWER" in verdicts else "ok"
        lines.append((key, units[key], cells, overall))
    return lines

def format_number(value):
    return f"{value:,.0f}" if value >= 100 else f"{value:#.3g}"


def markdown_table(lines):
    places = [p for p in ("near", "far", "any", "moved") if any(p in cells for _, _, cells, _ in lines)]
    head = ["row"]
    for p in places:
        head += [f"{p}: pairs"] + ([] if p == "moved" else [f"{p}: A", f"{p}: B", f"{p}: B/A"])
    head.append("verdict")
    cells_out = [head]
    for key, unit, cells, overall in lines:
        line = [key]
        for p in places:
            n, a, b, ratio = cells.get(p, (0, None, None, None))
            line.append(str(n))
            if p != "moved":
                line += ["-" if a is None else f"{format_number(a)} {unit}",
                         "-" if b is None else f"{format_number(b)} {unit}",
                         "-" if ratio is None else f"{ratio:.3f}"]
        cells_out.append(line + [overall])
    widths = [max(len(c[i]) for c in cells_out) for i in range(len(head))]
    text = ["| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
            + " |" for line in cells_out]
    text.insert(1, "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths))
                + "|")
    return "\n".join(text)

def shmring_segments():
    return {p.name for p in SHM_DIR.glob("shmring-*")}


def remove_leftovers(before, pids, root):
    """Remove the shmring segments that appeared in /dev/shm since `before`, that a bench process
    of ours (pids) made and no live process uses, with root's shmring.admin. Other sessions make
    rings here too: theirs stay, and so does a lock file whose ring is gone; say what is left."""
    new = sorted(n for n in shmring_segments() - before if "~" not in n)  # "~": a ring's lock file
    if new and pids and root is not None:
        subprocess.run([sys.executable, "-c", REMOVE_OURS, ",".join(map(str, pids)), *new],
                       cwd=root, env=build_env(root))
    left = sorted(shmring_segments() - before)
    if left:
        print(f"new in {SHM_DIR} since the start, left there (not ours, or live): {' '.join(left)}",
              file=sys.stderr)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="revision A")
    ap.add_argument("--head", help="revision B (default: the working tree as it is)")
    ap.add_argument("--rounds", type=int, default=10, help="pairs of repetitions per row (default 10)")
    ap.add_argument("--quick", action="store_true",
                    help="as shmring bench --quick: 64-byte payloads only, a quarter of the work per repetition")
    ap.add_argument("--only", type=lambda t: [w.strip() for w in t.split(",") if w.strip()],
                    default=DEFAULT_ONLY, help="shmring bench --only words (default throughput,latency,records)")
    ap.add_argument("--max-slowdown", type=float, default=0.03, help="allowed slowdown, a fraction (default 0.03)")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table and the command to FILE")
    ap.add_argument("--json", metavar="FILE", help="also write every pair: {row: [[A, B, metric, probes], ...]}")
    args = ap.parse_args(argv)
    if args.rounds < 1 or not args.only:
        ap.error("--rounds must be at least 1 and --only have a word")
    for option, path in (("--markdown", args.markdown), ("--json", args.json)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            ap.error(f"{option} {path}: no such directory")  # found now, not after the rounds
    return args


def run_rounds(drivers, rounds, exe):
    """{key: [(a, b, metric, probes), ...]} over `rounds` rounds of every row both builds have."""
    keys = [k for k in drivers["A"].rows if k in drivers["B"].rows]
    pairs = {k: [] for k in keys}
    for k in range(rounds):
        t0 = time.monotonic()
        order = ("A", "B") if k % 2 == 0 else ("B", "A")
        for key in keys:
            probes, got = [probe(exe)], {}
            for label in order:
                metric, got[label] = drivers[label].run(key)
                probes.append(probe(exe))
            pairs[key].append((got["A"], got["B"], metric, tuple(probes)))
        print(f"round {k + 1}/{rounds}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return pairs


def main(argv=None):
    args = parse_args(argv)
    name_a = short_rev(args.base)
    name_b = short_rev(args.head) if args.head else f"working tree on {short_rev('HEAD')}"
    payloads, scale = ([64], 0.25) if args.quick else ([64, 1024], 1.0)
    segments_before = shmring_segments()
    work = Path(tempfile.mkdtemp(prefix="shmring-ab-"))
    builds, drivers = {"A": work / "a", "B": work / "b"}, {}
    try:
        for label, root in builds.items():
            root.mkdir()
            rev = args.base if label == "A" else args.head
            if rev:
                export_revision(rev, root)
            else:
                export_working_tree(root)
            print(f"building {label} ({name_a if label == 'A' else name_b}) in {root}", file=sys.stderr)
            build_extension(root)
            check_imports(root)
            drivers[label] = Driver(root, args.only, payloads, scale)
        exe = build_probe(work)
        if exe is None:
            print("no C compiler for bench/placement.c: pairs are not told apart by placement", file=sys.stderr)
        pairs = run_rounds(drivers, args.rounds, exe)
        units = {key: UNITS.get(prs[0][2], f"{drivers['A'].rows[key]}/s") for key, prs in pairs.items()}
    finally:
        pids = [pid for d in drivers.values() for pid in d.pids]
        remove_leftovers(segments_before, pids, builds["A"] if drivers else None)
        shutil.rmtree(work, ignore_errors=True)
    missing = sorted(set(drivers["A"].rows) ^ set(drivers["B"].rows))
    lines = compare(pairs, units, args.max_slowdown)
    command = shlex.join(["python", "bench/ab.py", *(sys.argv[1:] if argv is None else argv)])
    trips = [p for prs in pairs.values() for *_, probes in prs for p in probes if p is not None]
    threshold = split(trips)
    where = (f"near: every probe's round trip under {threshold:.0f} ns, the middle of the widest gap between the "
             f"run's {len(trips)} ({min(trips):.0f}-{max(trips):.0f} ns); far: none; moved: left out"
             if threshold else "one placement: any")
    text = (f"`{command}`\n\nA = {name_a}, B = {name_b}; {args.rounds} rounds, each one repetition of every "
            f"row on each build, back to back; pairs by placement of the two CPUs ({where}); B/A: the median of the "
            f"pairs' ratios; SLOWER: worse by more than {args.max_slowdown:.0%} in a placement with "
            f">= {MIN_PAIRS} pairs\n\n" + markdown_table(lines)
            + (f"\n\nrows only one build has: {', '.join(missing)}" if missing else ""))
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(pairs, indent=1) + "\n")
    return 0 if not missing and all(v == "ok" for *_, v in lines) else 1

if __name__ == "__main__":
    sys.exit(main())
