"""python -m shmring.bench: run the suites and print the tables and targets."""
import argparse

from shmring.bench import messages, records
from shmring.bench.runner import available, check_targets, machine_header, measure, table

SUITES = {"messages": messages, "records": records}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m shmring.bench", description=__doc__)
    ap.add_argument("--suite", choices=["messages", "records", "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="a quarter of the work, 3 repetitions")
    ap.add_argument("--repeat", type=int, default=None, help="repetitions per row (default 5, quick 3)")
    args = ap.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 5)
    scale = 0.25 if args.quick else 1.0
    print(machine_header())
    for name in (["messages", "records"] if args.suite == "all" else [args.suite]):
        suite = SUITES[name]
        print()
        print(suite.TITLE + f"; median of {repeat} (min - max)")
        rows = available(suite.ROWS)
        med = table(rows, measure(rows, repeat, scale), suite.BASELINE)
        getattr(suite, "add_best_peer", lambda m: None)(med)
        check_targets(med, suite.TARGETS)


if __name__ == "__main__":
    main()
