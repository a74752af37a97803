"""A/B of `shmring bench` between two builds: is any shmring row slower after a change?

    python bench/ab.py --base REV [--head REV] [--rounds N] [--quick] [--only WORDS]
                       [--max-slowdown 0.03] [--markdown FILE]

Builds the extension of two revisions, each in a temporary directory of its own
(base: `git archive REV`; head: the working tree as it is, or `git archive REV`),
with this interpreter and `setup.py build_ext --inplace`, installing nothing. Then
runs `python -m shmring bench --json` from each build in turn, A (base), B (head),
A, B, ... for N rounds, each a fresh process whose PYTHONPATH is that build's src/
alone; the bench's workers are children of that process and import the same
shmring (checked before the first round: see check_imports).

Only shmring's own rows are compared: by default the shmring rows of the
throughput (1 -> 1 bytes, pickled, batch), latency (ping-pong) and records
scenarios. --only takes `shmring bench --only` words; a scenario's name stands
for that scenario's shmring rows. A row's value in a round is the bench's median
over its repetitions; the table gives each build's median over rounds and B/A,
the median over rounds of that round's B / A. Rates are higher-is-better, round
trips (us) lower-is-better: a row is SLOWER where B is worse than A by more than
--max-slowdown. Exit status 0 when no row is, 1 otherwise (2: usage or build error).
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
SCENARIOS = ("throughput", "n-to-m", "latency", "records", "recovery")  # as in shmring.bench.command
DEFAULT_ONLY = ["throughput", "latency", "records"]
METRICS = {"rate": False, "median_us": True, "recovery_s": True}  # a row's metric: is lower better?
UNITS = {"median_us": "us", "recovery_s": "s"}  # a rate's unit is the row's, per second
SHM_DIR = Path("/dev/shm")

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


def bench_only(words):
    """shmring bench --only words that select shmring's rows: a scenario's name becomes its shmring rows."""
    return ",".join(f"{w} shmring" if w in SCENARIOS else w for w in words)


def run_bench(root, bench_args, json_path, pids):
    """One `shmring bench --json` run of root's build: its shmring rows (see shmring_rows).
    Its PID goes on pids: the rings the bench makes are that process's."""
    with subprocess.Popen([sys.executable, "-m", "shmring", "bench", *bench_args, "--json", str(json_path)],
                          cwd=root, env=build_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as bench:
        pids.append(bench.pid)
        out, err = bench.communicate()
    if bench.returncode:
        fail(f"shmring bench failed in {root}:\n{out}{err}")
    return shmring_rows(json.loads(json_path.read_text()))


def shmring_rows(doc):
    """{"scenario: label": (median, lower is better, unit)} for the shmring rows of a bench --json document."""
    rows = {}
    for scenario, table in doc["scenarios"].items():
        for r in table["rows"]:
            metric = next((m for m in METRICS if m in r.get("metrics", {})), None)
            if r["name"].startswith("shmring") and metric:
                rows[f"{scenario}: {r['label']}"] = (r["metrics"][metric]["median"], METRICS[metric],
                                                     UNITS.get(metric, f"{r['unit']}/s"))
    return rows


def verdict(ratio, lower_is_better, max_slowdown):
    """"ok" or "SLOWER": is B / A worse than the threshold allows, in the row's direction?"""
    slower = ratio > 1 + max_slowdown if lower_is_better else ratio < 1 - max_slowdown
    return "SLOWER" if slower else "ok"


def compare(rounds_a, rounds_b, max_slowdown):
    """Table lines (row, median A, median B, B/A, verdict) from each build's rounds, in round order
    (medians as "value unit"); a row that either build lacks in some round has verdict "missing"."""
    lines = []
    for row in dict.fromkeys(row for rounds in (rounds_a, rounds_b) for r in rounds for row in r):
        if not all(row in r for r in rounds_a + rounds_b):
            lines.append((row, None, None, None, "missing"))
            continue
        a, b = ([r[row][0] for r in rounds] for rounds in (rounds_a, rounds_b))
        _, lower_is_better, unit = rounds_a[0][row]
        ratio = statistics.median(y / x for x, y in zip(a, b))
        lines.append((row, f"{format_number(statistics.median(a))} {unit}",
                      f"{format_number(statistics.median(b))} {unit}", ratio,
                      verdict(ratio, lower_is_better, max_slowdown)))
    return lines


def format_number(value):
    return f"{value:,.0f}" if value >= 100 else f"{value:#.3g}"


def markdown_table(lines, name_a, name_b):
    head = ("row", f"A: {name_a} (median)", f"B: {name_b} (median)", "B/A", "verdict")
    cells = [head] + [(row, a or "-", b or "-", "-" if x is None else f"{x:.3f}", v)
                      for row, a, b, x, v in lines]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    text = ["| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
            + " |" for line in cells]
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
    ap.add_argument("--rounds", type=int, default=5, help="A, B pairs of bench runs (default 5)")
    ap.add_argument("--quick", action="store_true", help="pass --quick to shmring bench")
    ap.add_argument("--only", type=lambda t: [w.strip() for w in t.split(",") if w.strip()],
                    default=DEFAULT_ONLY, help="shmring bench --only words (default throughput,latency,records)")
    ap.add_argument("--max-slowdown", type=float, default=0.03, help="allowed slowdown, a fraction (default 0.03)")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table and the command to FILE")
    args = ap.parse_args(argv)
    if args.rounds < 1 or not args.only:
        ap.error("--rounds must be at least 1 and --only have a word")
    if args.markdown and not os.path.isdir(os.path.dirname(os.path.abspath(args.markdown))):
        ap.error(f"--markdown {args.markdown}: no such directory")  # found now, not after the rounds
    return args


def main(argv=None):
    args = parse_args(argv)
    bench_args = ["--only", bench_only(args.only)] + (["--quick"] if args.quick else [])
    name_a = short_rev(args.base)
    name_b = short_rev(args.head) if args.head else f"working tree on {short_rev('HEAD')}"
    segments_before = shmring_segments()
    work = Path(tempfile.mkdtemp(prefix="shmring-ab-"))
    builds, built, pids = {"A": work / "a", "B": work / "b"}, [], []
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
            built.append(root)
        rounds = {"A": [], "B": []}
        for k in range(args.rounds):
            for label, root in builds.items():
                t0 = time.monotonic()
                rounds[label].append(run_bench(root, bench_args, work / f"{label}{k}.json", pids))
                print(f"round {k + 1}/{args.rounds} {label}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    finally:
        remove_leftovers(segments_before, pids, built[0] if built else None)
        shutil.rmtree(work, ignore_errors=True)
    lines = compare(rounds["A"], rounds["B"], args.max_slowdown)
    command = shlex.join(["python", "bench/ab.py", *(sys.argv[1:] if argv is None else argv)])
    text = (f"`{command}`\n\nA = {name_a}, B = {name_b}; {args.rounds} rounds of "
            f"`shmring bench {shlex.join(bench_args)}`; B/A: the median of the rounds' ratios; "
            f"SLOWER: worse by more than {args.max_slowdown:.0%}\n\n"
            + markdown_table(lines, name_a, name_b))
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0 if all(v == "ok" for *_, v in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
