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


def test_split_finds_the_widest_gap_between_placements(ab):
    near, far = [118, 125, 130, 121], [465, 480, 492]
    threshold = ab.split(near + far + [68])  # a low outlier does not move the split
    assert max(near) < threshold < min(far)
    assert ab.split([120, 125, 131, 160]) is None  # no gap of 1.5x: one placement
    assert ab.split([]) is None


def test_placement_of_a_pair_needs_every_probe_on_one_side(ab):
    assert ab.placement((120, 125, 119), 300) == "near"
    assert ab.placement((470, 480, 466), 300) == "far"
    assert ab.placement((120, 470, 466), 300) == "moved"
    assert ab.placement((120, 125, 119), None) == "any"
    assert ab.placement((None, None, None), 300) == "any"


def pairs_of(ratios, probes, a=100.0, metric="rate"):
    return [(a, a * r, metric, probes) for r in ratios]


def test_compare_takes_the_median_ratio_within_each_placement(ab):
    n = ab.MIN_PAIRS
    near, far, moved = (120, 121, 119), (470, 480, 466), (120, 470, 466)
    row = "throughput: shmring put_bytes/get_bytes [64 B]"
    pairs = {row: pairs_of([1.0] * n, near) + pairs_of([0.99] * n, far, a=30.0) + pairs_of([0.5] * 3, moved)}
    (key, unit, cells, overall), = ab.compare(pairs, {row: "msgs/s"}, 0.03)
    assert cells["near"] == (n, 100.0, 100.0, 1.0)
    assert cells["far"][0] == n and abs(cells["far"][3] - 0.99) < 1e-9
    assert cells["moved"] == (3, None, None, None)  # left out of every verdict
    assert overall == "ok"
    pairs[row] += pairs_of([0.9] * (n + 1), far, a=30.0)  # now far's median pair is 10% slower
    assert ab.compare(pairs, {row: "msgs/s"}, 0.03)[0][-1] == "SLOWER"


def test_a_round_trip_that_grows_is_slower_and_few_pairs_get_no_verdict(ab):
    near, far = (120, 121, 119), (470, 480, 466)
    row = "latency: shmring put_bytes/get_bytes [64 B]"
    longer = {row: pairs_of([1.05] * ab.MIN_PAIRS, near, a=0.7, metric="median_us") + pairs_of([1.0], far)}
    assert ab.compare(longer, {row: "us"}, 0.03)[0][-1] == "SLOWER"
    few = {row: pairs_of([0.5] * (ab.MIN_PAIRS - 1), near)}
    assert ab.compare(few, {row: "msgs/s"}, 0.03)[0][-1] == "few pairs"


def test_markdown_table_has_a_column_group_per_placement_seen(ab):
    row = "records: shmring put_array / view (zero-copy), 24-byte records"
    one_placement = {row: pairs_of([1.0] * ab.MIN_PAIRS, (120, 121, 119))}
    head = ab.markdown_table(ab.compare(one_placement, {row: "records/s"}, 0.03)).splitlines()[0]
    assert [c.strip() for c in head.strip("|").split("|")] == [
        "row", "any: pairs", "any: A", "any: B", "any: B/A", "verdict"]
    two = {row: one_placement[row] + pairs_of([1.0], (120, 470, 466))}  # a "moved" pair makes the split
    head, rule, body = ab.markdown_table(ab.compare(two, {row: "records/s"}, 0.03)).splitlines()
    assert [c.strip() for c in head.strip("|").split("|")] == [
        "row", "near: pairs", "near: A", "near: B", "near: B/A", "moved: pairs", "verdict"]
    assert body.split("|")[1].strip() == row and body.split("|")[-2].strip() == "ok"
