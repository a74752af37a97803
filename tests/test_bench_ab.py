"""bench/ab.py's arithmetic on fixed inputs (nothing here builds or runs the benchmark)."""
import importlib.util

import pytest

from conftest import ROOT, source_tree

pytestmark = source_tree("bench/ab.py")


@pytest.fixture(scope="module")
def ab():
    spec = importlib.util.spec_from_file_location("ab", ROOT / "bench" / "ab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verdict_follows_the_row_direction(ab):
    assert ab.verdict(0.98, False, 0.03) == "ok"
    assert ab.verdict(0.96, False, 0.03) == "SLOWER"  # a rate 4% lower
    assert ab.verdict(1.50, False, 0.03) == "ok"
    assert ab.verdict(1.02, True, 0.03) == "ok"
    assert ab.verdict(1.04, True, 0.03) == "SLOWER"  # a round trip 4% longer
    assert ab.verdict(0.50, True, 0.03) == "ok"


def test_compare_takes_the_median_of_each_rounds_ratio(ab):
    rate, trip = "throughput: shmring put_bytes/get_bytes [64 B]", "latency: shmring put/get (pickled) [64 B]"
    a = [{rate: (100.0, False, "msgs/s"), trip: (2.0, True, "us")},
         {rate: (200.0, False, "msgs/s"), trip: (4.0, True, "us")},
         {rate: (100.0, False, "msgs/s"), trip: (2.0, True, "us")}]
    b = [{rate: (90.0, False, "msgs/s"), trip: (2.2, True, "us")},
         {rate: (200.0, False, "msgs/s"), trip: (4.0, True, "us")},
         {rate: (99.0, False, "msgs/s"), trip: (2.0, True, "us")}]
    lines = dict((row, rest) for row, *rest in ab.compare(a, b, 0.03))
    assert lines[rate] == ["100 msgs/s", "99.0 msgs/s", 0.99, "ok"]
    assert lines[trip] == ["2.00 us", "2.20 us", 1.0, "ok"]
    assert ab.compare(a[:1], b[:1], 0.03)[0][-1] == "SLOWER"  # 0.9: one round alone
    assert ab.compare(a[:1], b[:1], 0.03)[1][-1] == "SLOWER"  # 1.1


def test_a_row_only_one_build_has_is_missing(ab):
    a, b = [{"x": (1.0, False, "msgs/s")}], [{"y": (1.0, False, "msgs/s")}]
    assert [(row, v) for row, *_, v in ab.compare(a, b, 0.03)] == [("x", "missing"), ("y", "missing")]


def test_shmring_rows_keeps_shmring_rows_that_ran(ab):
    doc = {"scenarios": {
        "throughput": {"rows": [
            {"name": "shmring put/get (pickled)", "label": "shmring put/get (pickled) [64 B]", "unit": "msgs",
             "metrics": {"rate": {"median": 5.0}}},
            {"name": "multiprocessing.Queue", "label": "multiprocessing.Queue [64 B]", "unit": "msgs",
             "metrics": {"rate": {"median": 1.0}}},
            {"name": "shmring put/get (pickled)", "label": "shmring put/get (pickled) [4->4]", "unit": "msgs",
             "skipped": "needs 8 CPUs"}]},
        "latency": {"rows": [
            {"name": "shmring put_bytes/get_bytes", "label": "shmring put_bytes/get_bytes [64 B]", "unit": "msgs",
             "metrics": {"median_us": {"median": 0.7}, "p99_us": {"median": 1.5}}}]}}}
    assert ab.shmring_rows(doc) == {
        "throughput: shmring put/get (pickled) [64 B]": (5.0, False, "msgs/s"),
        "latency: shmring put_bytes/get_bytes [64 B]": (0.7, True, "us")}


def test_bench_only_narrows_scenarios_to_shmring_rows(ab):
    assert ab.bench_only(["throughput", "latency", "pickled"]) == "throughput shmring,latency shmring,pickled"
