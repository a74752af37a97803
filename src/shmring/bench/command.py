"""shmring bench: shmring beside the queues you use today, on this machine.

Throughput (1 producer -> 1 consumer, and N -> M where there are the cores),
round-trip latency, and numpy records beside a bare C ceiling. Every row runs
in fresh processes pinned to distinct CPUs where possible, repetitions are
interleaved across rows, throughput is measured at the consumer, and a ratio is
the median over repetitions of the two rows' ratio within each round. A peer that
is not installed is skipped.
"""
import argparse
import json
import os
import statistics
import sys

from shmring.bench import latency, pubsub, records, recovery, throughput, workers
from shmring.bench.runner import header, machine, measure, summarize
from shmring.cli import positive_float, positive_int

SCENARIOS = {
    "throughput": "1 producer process -> 1 consumer process",
    "n-to-m": "N producer processes -> M consumer processes, one queue",
    "latency": f"round trip of a {latency.PAYLOAD}-byte message between two processes",
    "records": (f"numpy records in batches of {records.BATCH}, queues of {records.RING} records, "
                "beside a bare C ring"),
    "pubsub": (f"publish / subscribe, {pubsub.PAYLOAD}-byte payloads: shmring.Topic beside Queue, pyzmq PUB/SUB, msgq-ipc and iceoryx2"),
    "recovery": (f"recovery after kill -9: a producer killed inside a put ({recovery.MESSAGE >> 20} MiB messages), "
                 "until a fresh producer's message reaches the consumer"),
    "workers": (f"worker pools, {workers.workers()} workers, a no-op handler over small ints: shmring.WorkerPool "
                "and imap_unordered beside multiprocessing.Pool and ProcessPoolExecutor"),
}


PLOTTED = ("throughput", "latency", "records")  # the scenarios --plot draws
MAX_PAYLOAD = 1 << 16  # a shmring row's ring holds 8192 of these: 512 MiB of /dev/shm


def payload_size(text):
    """An argparse type: bytes per message, 1 to MAX_PAYLOAD."""
    size = positive_int(text)
    if size > MAX_PAYLOAD:
        raise argparse.ArgumentTypeError(f"{size} is more than {MAX_PAYLOAD} bytes")
    return size


def comma_list(item):
    """An argparse type: comma-separated values, each parsed by item; none empty, none twice."""
    def parse(text):
        words = text.split(",")
        if not all(word.strip() for word in words):
            raise argparse.ArgumentTypeError(f"{text!r} has an empty item")
        try:
            values = [item(word) for word in words]
        except argparse.ArgumentTypeError as e:  # which item, and in what
            raise argparse.ArgumentTypeError(str(e) if len(words) == 1 else f"{text!r}: {e}") from None
        twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
        if twice is not None:
            raise argparse.ArgumentTypeError(f"{text!r}: {twice} is given twice")
        return values
    return parse


def output_path(text):
    """An argparse type for --json and --plot: a file the run can write at its end,
    checked before minutes of measuring rather than after."""
    folder = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text):
        why = "is a directory"
    elif not os.path.isdir(folder):
        why = f"cannot be written: no directory {folder}"
    elif not os.access(text if os.path.exists(text) else folder, os.W_OK):
        why = "cannot be written: permission denied"
    else:
        return text
    raise argparse.ArgumentTypeError(f"{text!r} {why}")


def build_rows(payloads):
    return {
        "throughput": (throughput.rows(payloads), throughput.BASELINE),
        "n-to-m": (throughput.nm_rows(payloads), throughput.NM_BASELINE),
        "latency": (latency.ROWS, latency.BASELINE),
        "records": (records.rows(), records.BASELINE),
        "pubsub": (pubsub.rows(), pubsub.BASELINE),
        "recovery": (recovery.ROWS, None),  # no ratios: a queue that wedges has no time to divide
        "workers": (workers.ROWS, workers.BASELINE),
    }


def selected(row, scenario, only):
    if not only:
        return True
    text = f"{scenario} {row.label()}".lower()
    return any(word.lower() in text for word in only)


def baseline_of(results, row, baseline):
    """The baseline row's result with the same payload and shape (ratios compare like with like)."""
    for other, result in results.items():
        if (other.name == baseline and other.payload == row.payload and other.shape == row.shape
                and "metrics" in result):
            return result
    return None


def paired_ratio(mine, theirs):
    """The median over repetitions of mine[k] / theirs[k]. Repetition k of every row
    runs in the same round, minutes apart at most from its partner rather than across
    the whole run, so a machine whose speed shifts between rounds (a VM whose vCPUs
    move) shifts both sides of each ratio together."""
    return statistics.median(a / b for a, b in zip(mine, theirs))


def ratio(result, base):
    """How many times the baseline: bytes/s over bytes/s where both rows know their
    bytes per unit (records of different sizes compare fairly), else units/s; for
    latency, how many times shorter the median round trip is."""
    if base is None:
        return None
    if "rate" in result["metrics"]:
        mine, theirs = result["metrics"]["rate"]["samples"], base["metrics"]["rate"]["samples"]
        if result["item_bytes"] and base["item_bytes"]:
            mine = [v * result["item_bytes"] for v in mine]
            theirs = [v * base["item_bytes"] for v in theirs]
        return paired_ratio(mine, theirs)
    return paired_ratio(base["metrics"]["median_us"]["samples"], result["metrics"]["median_us"]["samples"])


def print_table(scenario, results, baseline, out):
    """A markdown table: paste it into an issue or a README as it is."""
    if scenario == "latency":
        head = ("row", "median", "p99", "median min - max", "vs baseline")
    elif scenario == "recovery":
        head = recovery.HEAD
    else:
        head = ("row", "per second (median)", "min - max", "GB/s", "vs baseline")
    lines, skipped = [], {}
    for r in results.values():
        if "skipped" in r:
            skipped.setdefault(r["skipped"], []).append(r["label"])
            continue
        m, x = r["metrics"], f"{r['ratio']:.2f}x" if r["ratio"] is not None else "n/a"
        if scenario == "latency":
            med = m["median_us"]
            lines.append((r["label"], f"{med['median']:.1f} us", f"{m['p99_us']['median']:.1f} us",
                          f"{med['min']:.1f} - {med['max']:.1f}", x))
        elif scenario == "recovery":
            lines.append((r["label"], *recovery.cells(m)))
        else:
            rate = m["rate"]
            gbs = f"{rate['median'] * r['item_bytes'] / 1e9:.2f}" if r["item_bytes"] else "-"
            lines.append((r["label"], f"{rate['median']:,.0f} {r['unit']}",
                          f"{rate['min']:,.0f} - {rate['max']:,.0f}", gbs, x))
    print(f"\n{SCENARIOS[scenario]}\n", file=out)
    if lines:
        widths = [max(len(cells[i]) for cells in [head, *lines]) for i in range(len(head))]
        for cells in [head, None, *lines]:  # None: the separator row
            if cells is None:
                print("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths))
                      + "|", file=out)
                continue
            print("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
                  + " |", file=out)
        print(file=out)
        if scenario == "latency":
            print(f"vs baseline: how many times shorter the median round trip is than {baseline}'s "
                  "(median over repetitions, each compared within its round)", file=out)
        elif scenario == "recovery":
            print("to recovery: seconds from the SIGKILL until the fresh producer's message reached the consumer, "
                  "which kept waiting in get; never within N s: not by the end of the wait, after which every "
                  "process was killed. killed inside put: repetitions where the victim died inside a put call "
                  "(multiprocessing.Queue's put only hands the message to a feeder thread)", file=out)
        else:
            print(f"vs baseline: throughput (bytes/s where known) over {baseline}'s, same payload "
                  "(median over repetitions, each compared within its round)",
                  file=out)
        if scenario == "workers" and workers.kill_summary(results):
            print(workers.kill_summary(results), file=out)
    for why, labels in skipped.items():  # one line per reason
        print(f"skipped ({why}): {'; '.join(labels)}", file=out)


# The project's targets, checked where the rows ran: (label, row, other row, needed ratio)
TARGETS = [
    ("put_bytes/get_bytes vs multiprocessing.Queue", throughput.ShmringBytes.name, 64, throughput.MpQueue.name, 20),
    ("put_bytes/get_bytes vs pyzmq PUSH/PULL", throughput.ShmringBytes.name, 64, throughput.ZmqPushPull.name, 2.5),
    ("put/get (pickled) vs multiprocessing.Queue", throughput.ShmringObjects.name, 64, throughput.MpQueue.name, 5),
    ("put/get (pickled) vs faster-fifo put/get", throughput.ShmringObjects.name, 64, throughput.FasterFifo.name, 4),
    ("put_many/get_many vs faster-fifo put_many/get_many", throughput.ShmringBatch.name, 64,
     throughput.FasterFifoBatch.name, 10),
    ("put_bytes/get_bytes vs zeroq put/get", throughput.ShmringBytes.name, 64, throughput.Zeroq.name, 2),
    ("deadlines: get_bytes of messages with a deadline vs without", throughput.ShmringGetBytesDeadlines.name, 64,
     throughput.ShmringGetBytes.name, 0.9),
    # streaming readers reuse one array (out=); get_array's new arrays are in the table beside it
    ("records: put_array/get_array(out=) vs the C ceiling", records.GET_ARRAY_OUT.name, None,
     records.CEILING.name, 0.5),
    ("records: zero-copy view vs get_array(out=)", records.VIEW.name, None, records.GET_ARRAY_OUT.name, 1.0),
    *((label, row, pubsub.PAYLOAD, other, need) for label, row, other, need in pubsub.TARGETS),
    *((label, row, None, other, need) for label, row, other, need in workers.TARGETS),
]


def check_targets(all_results, out):
    # the targets are 1 -> 1: rows with a shape (N -> M) share names but not the measure
    rates = {(r["name"], r["payload"]): r["metrics"]["rate"]["samples"]
             for res in all_results.values() for r in res.values()
             if "metrics" in r and "rate" in r["metrics"] and r["shape"] is None}
    lines = []

    def add(target, value, needed):
        lines.append({"target": target, "value": value, "needed": needed, "met": value >= needed})
    for label, row, payload, other, need in TARGETS:
        if (row, payload) in rates and (other, payload) in rates:
            add(label, paired_ratio(rates[(row, payload)], rates[(other, payload)]), need)
    peers = [rates[(p.name, None)] for p in records.PEERS if (p.name, None) in rates]
    if peers and (records.GET_ARRAY.name, None) in rates:
        best = [max(round_) for round_ in zip(*peers)]  # the fastest peer of each round
        add("records: put_array/get_array vs the best peer",
            paired_ratio(rates[(records.GET_ARRAY.name, None)], best), 3)
    if (records.GET_ARRAY.name, None) in rates:
        add("records: 24-byte records per second", statistics.median(rates[(records.GET_ARRAY.name, None)]), 30e6)
    if (records.GET_ARRAY_8.name, None) in rates:
        add("records: 8-byte records per second", statistics.median(rates[(records.GET_ARRAY_8.name, None)]), 60e6)
    for label, value, needed in workers.kill_targets(all_results.get("workers", {})):
        add(label, value, needed)
    for r in all_results.get("recovery", {}).values():
        if r["name"] == recovery.ShmringBytes.name and "metrics" in r:  # an at-most target, as a ratio
            add("recovery: shmring within 1 s of a kill -9 (1 s / median seconds to recovery)",
                1.0 / r["metrics"]["recovery_s"]["median"], 1.0)
    if lines:
        print("\nTargets (ratios: the median over repetitions of each round's ratio; rates: medians):", file=out)
        for t in lines:
            fmt = (lambda v: f"{v / 1e6:.0f}M") if t["needed"] > 1000 else (lambda v: f"{v:.2f}x")
            print(f"  {t['target']}: {fmt(t['value'])} (target >= {fmt(t['needed'])}) "
                  f"{'ok' if t['met'] else 'MISSED'}", file=out)
    return lines


def plot(all_results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [s for s in PLOTTED
              if any("metrics" in r for r in all_results.get(s, {}).values())]
    if not panels:
        raise SystemExit("--plot: no throughput, latency or records rows ran")
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 5 * len(panels)), squeeze=False)
    for ax, scenario in zip(axes[:, 0], panels):
        ran = [r for r in all_results[scenario].values() if "metrics" in r]
        names = list(dict.fromkeys(r["name"] for r in ran))
        payloads = sorted({r["payload"] for r in ran}, key=lambda p: p or 0)
        width = 0.8 / len(payloads)
        metric = "median_us" if scenario == "latency" else "rate"
        for k, payload in enumerate(payloads):
            values = {r["name"]: r["metrics"][metric]["median"] for r in ran if r["payload"] == payload}
            xs = [i + k * width for i, n in enumerate(names) if n in values]
            bars = ax.bar(xs, [values[n] for n in names if n in values], width,
                          label=f"{payload} B" if payload else None)
            ax.bar_label(bars, fmt="%.3g", fontsize=7, rotation=90, padding=2)
        ax.set_xticks([i + width * (len(payloads) - 1) / 2 for i in range(len(names))])
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * 4)  # room for the bar labels
        ax.set_ylabel({"latency": "round trip, median (us), lower is better",
                       "records": "records per second (median), higher is better"}.get(
                           scenario, "messages per second (median), higher is better"))
        ax.set_title(SCENARIOS[scenario])
        if len(payloads) > 1:
            ax.legend(title="payload")
        ax.grid(axis="y", which="both", alpha=0.3)
    fig.suptitle(header(machine()), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None, out=sys.stdout):
    ap = argparse.ArgumentParser(prog="shmring bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="64-byte payloads, 3 repetitions, a quarter of the work (under a minute on 2 cores)")
    ap.add_argument("--payloads", type=comma_list(payload_size), default=None,
                    help=f"payload sizes in bytes (1 to {MAX_PAYLOAD}), comma-separated (default 64,1024)")
    ap.add_argument("--only", type=comma_list(str.strip), default=[],
                    help="comma-separated words: keep rows whose scenario or name contains one "
                         "(scenarios: " + ", ".join(SCENARIOS) + ")")
    ap.add_argument("--repeat", type=positive_int, default=None, help="repetitions per row (default 5, --quick 3)")
    ap.add_argument("--scale", type=positive_float, default=None,
                    help="work per repetition, as a fraction (default 1, --quick 0.25)")
    ap.add_argument("--json", metavar="PATH", type=output_path, help="also write every result as JSON")
    ap.add_argument("--plot", metavar="PATH.png", type=output_path, help="also draw a bar chart (needs matplotlib)")
    args = ap.parse_args(argv)
    payloads = args.payloads if args.payloads is not None else ([64] if args.quick else [64, 1024])
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 5)
    scale = args.scale if args.scale is not None else (0.25 if args.quick else 1.0)
    chosen = {scenario: ([r for r in rows if selected(r, scenario, args.only)], baseline)
              for scenario, (rows, baseline) in build_rows(payloads).items()}
    if not any(rows for rows, _ in chosen.values()):
        ap.error(f"--only {','.join(args.only)} selects no row: its words match scenarios "
                 f"({', '.join(SCENARIOS)}) or parts of row names")
    if args.plot:
        if not any(chosen[s][0] for s in PLOTTED):
            ap.error(f"--plot draws {', '.join(PLOTTED)} rows; --only {','.join(args.only)} selects none")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            ap.error("--plot needs matplotlib: pip install 'shmring[bench]'")

    info = machine()
    print(header(info), file=out)
    print(f"median of {repeat} repetitions (min - max), work scale {scale}", file=out)
    all_results = {}
    for scenario, (rows, baseline) in chosen.items():
        if not rows:
            continue
        results, runnable = {}, []
        for row in rows:
            entry = {"name": row.name, "label": row.label(), "payload": row.payload, "shape": row.shape,
                     "unit": row.unit, "item_bytes": row.item_bytes, "baseline": baseline}
            why = row.missing()
            if why:
                entry["skipped"] = why
            else:
                runnable.append(row)
            results[row] = entry
        for row, samples in measure(runnable, repeat, scale).items():
            results[row]["metrics"] = summarize(samples)
        for row, entry in results.items():
            if "metrics" in entry:
                entry["ratio"] = ratio(entry, baseline_of(results, row, baseline))
        print_table(scenario, results, baseline, out)
        all_results[scenario] = results
    targets = check_targets(all_results, out)
    if args.json:
        doc = {"machine": info, "argv": sys.argv if argv is None else ["shmring", "bench", *argv],
               "repeat": repeat, "scale": scale, "payloads": payloads, "targets": targets,
               "scenarios": {s: {"title": SCENARIOS[s], "rows": list(res.values())}
                             for s, res in all_results.items()}}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    if args.plot:
        plot(all_results, args.plot)
        print(f"\nplot written to {args.plot}", file=out)
    return 0
