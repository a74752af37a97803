"""The `shmring` command: bench (in a tiny configuration), ls, stat and rm
against live and dead rings."""
import io
import json
import math
import os
import secrets
import signal
import stat
import statistics
import subprocess
import sys

import pytest

import shmring
from conftest import child_python_env, wait_until
from segments import patch_segment, read_segment, segment_exists, unlink, write_segment
from shmring import admin
from shmring.bench import command, recovery, runner
from shmring.bench.runner import summarize

# ls and rm --stale list /dev/shm, and these tests look there: Linux only (macOS has no such place)
needs_dev_shm = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="ls/rm list /dev/shm (Linux)")


def shmring_cmd(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "shmring", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


# ---- bench ----

@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    """One tiny run of every scenario: a few hundred messages per row, 2 repetitions."""
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("bench")
    done = shmring_cmd("bench", "--quick", "--scale", "0.002", "--repeat", "2", "--payloads", "64,512",
                       "--json", str(out / "bench.json"), "--plot", str(out / "bench.png"), timeout=240)
    assert done.returncode == 0, done.stderr
    with open(out / "bench.json") as f:
        return done.stdout, json.load(f), out / "bench.png"


@pytest.mark.timeout(300)
def test_bench_runs_or_skips_every_row(tiny_bench):
    stdout, doc, _ = tiny_bench
    expected = {scenario: [row.label() for row in rows]
                for scenario, (rows, _) in command.build_rows([64, 512]).items()}
    assert set(doc["scenarios"]) == set(expected)
    for scenario, labels in expected.items():
        rows = doc["scenarios"][scenario]["rows"]
        assert [r["label"] for r in rows] == labels
        for r in rows:
            assert ("metrics" in r) != ("skipped" in r), r
            if "skipped" in r:
                assert r["skipped"] and "\n" not in r["skipped"]
                notes = [line.split("): ", 1)[1].split("; ") for line in stdout.splitlines()
                         if line.startswith(f"skipped ({r['skipped']}): ")]
                assert any(r["label"] in labels for labels in notes)
            else:
                assert r["label"] in stdout
                samples = next(iter(r["metrics"].values()))["samples"]
                assert len(samples) == doc["repeat"] == 2
    # the rows every machine can run did run: shmring, the stdlib peers, latency
    ran = {r["label"] for s in doc["scenarios"].values() for r in s["rows"] if "metrics" in r}
    for must in ("shmring put_bytes/get_bytes [64 B]", "multiprocessing.Queue [512 B]",
                 "multiprocessing.Pipe [64 B]", "multiprocessing.SimpleQueue [64 B]",
                 "queue.Queue (2 threads) [64 B]", "shmring put_bytes/get_bytes [8 MiB]"):
        assert must in ran


@pytest.mark.timeout(300)
def test_bench_ratios_pair_each_repetition_with_the_baselines(tiny_bench):
    _, doc, _ = tiny_bench
    checked = 0
    for scenario in doc["scenarios"].values():
        rows = [r for r in scenario["rows"] if "metrics" in r]
        for r in rows:
            base = next((b for b in rows if b["name"] == r["baseline"] and b["payload"] == r["payload"]
                         and b["shape"] == r["shape"]), None)
            if base is None:
                assert r["ratio"] is None
                continue
            if "rate" in r["metrics"]:
                mine, theirs = r["metrics"]["rate"]["samples"], base["metrics"]["rate"]["samples"]
                if r["item_bytes"] and base["item_bytes"]:
                    mine = [v * r["item_bytes"] for v in mine]
                    theirs = [v * base["item_bytes"] for v in theirs]
            else:  # latency: how many times shorter
                mine, theirs = base["metrics"]["median_us"]["samples"], r["metrics"]["median_us"]["samples"]
            assert len(mine) == len(theirs) == doc["repeat"]
            assert r["ratio"] == pytest.approx(statistics.median(a / b for a, b in zip(mine, theirs)))
            m = next(iter(r["metrics"].values()))
            assert m["min"] <= m["median"] <= m["max"]
            checked += 1
    assert checked >= 10


def test_bench_targets_compare_one_to_one_rows_only():
    """N -> M rows share names with the 1 -> 1 rows; a target must not read them."""
    from shmring.bench import throughput

    def row(name, rate, shape=None):
        return {"name": name, "payload": 64, "shape": shape, "metrics": {"rate": {"samples": [rate, rate]}}}
    results = {"throughput": {1: row(throughput.ShmringBytes.name, 3000.0), 2: row(throughput.MpQueue.name, 100.0)},
               "n-to-m": {3: row(throughput.ShmringBytes.name, 1000.0, "8->8"),
                          4: row(throughput.MpQueue.name, 100.0, "8->8")}}
    with open(os.devnull, "w") as out:
        lines = command.check_targets(results, out)
    vs_mpq = next(t for t in lines if t["target"] == "put_bytes/get_bytes vs multiprocessing.Queue")
    assert vs_mpq["value"] == pytest.approx(30.0) and vs_mpq["met"]


@pytest.mark.timeout(300)
def test_bench_recovery_rows_record_each_kill(tiny_bench):
    _, doc, _ = tiny_bench
    for r in doc["scenarios"]["recovery"]["rows"]:
        if "metrics" in r:
            m = r["metrics"]
            for took, arrived, in_put in zip(*(m[k]["samples"] for k in ("recovery_s", "recovered", "in_put"))):
                assert took > 0 and arrived == float(math.isfinite(took)) and in_put in (0.0, 1.0)


def test_bench_recovery_cells_say_never_within_the_wait():
    assert recovery.seconds(0.1234, 10.0) == "0.123 s"
    assert recovery.seconds(math.inf, 10.0) == "never within 10 s"
    assert recovery.seconds(math.inf, 0.5) == "never within 0.5 s"

    def kill(seconds, in_put=1.0):
        return {"recovery_s": seconds, "recovered": float(math.isfinite(seconds)), "in_put": in_put,
                "kill_after_ms": 1.0, "wait_s": 10.0}
    assert recovery.cells(summarize([kill(0.2), kill(0.3, 0.0), kill(0.1)])) == ("0.200 s", "0.100 - 0.300",
                                                                                 "3/3", "2/3")
    assert recovery.cells(summarize([kill(0.2), kill(math.inf), kill(math.inf)])) == (
        "never within 10 s", "0.200 - never", "1/3", "3/3")


def test_bench_recovery_target_is_shmring_within_a_second():
    def target(*seconds):
        row = {"name": recovery.ShmringBytes.name, "metrics": summarize([{"recovery_s": s} for s in seconds])}
        with open(os.devnull, "w") as out:
            lines = command.check_targets({"recovery": {1: row}}, out)
        return next(t for t in lines if "kill -9" in t["target"])
    fast, slow, never = target(0.1, 0.25, 2.0), target(0.5, 1.5, math.inf), target(math.inf, math.inf, 0.1)
    assert fast["value"] == pytest.approx(4.0) and fast["met"]
    assert slow["value"] == pytest.approx(1 / 1.5) and not slow["met"]
    assert never["value"] == 0.0 and not never["met"]


@pytest.mark.timeout(300)
def test_bench_json_schema(tiny_bench):
    _, doc, _ = tiny_bench
    assert set(doc) == {"machine", "argv", "repeat", "scale", "payloads", "targets", "scenarios"}
    assert set(doc["machine"]) == {"cpu", "cores", "usable_cpus", "os", "python", "shmring"}
    assert doc["machine"]["shmring"] == shmring.__version__
    assert doc["payloads"] == [64, 512] and doc["scale"] == 0.002
    for scenario in doc["scenarios"].values():
        assert scenario["title"]
        for r in scenario["rows"]:
            assert {"name", "label", "payload", "shape", "unit", "item_bytes", "baseline"} <= set(r)
    for t in doc["targets"]:
        assert set(t) == {"target", "value", "needed", "met"} and t["met"] == (t["value"] >= t["needed"])


@pytest.mark.timeout(300)
def test_bench_plot_is_a_png_that_opens(tiny_bench):
    from PIL import Image

    _, _, png = tiny_bench
    with Image.open(png) as im:
        assert im.format == "PNG"
        assert im.size[0] > 800 and im.size[1] > 800
        im.load()  # decodes every pixel


@pytest.mark.timeout(120)
def test_bench_missing_peers_are_skipped_with_a_note(tmp_path):
    # Modules that fail to import, put first on the path, stand in for peers not installed.
    for module in ("zmq", "faster_fifo", "zeroq", "cloudtoid_interprocess", "msgq", "iceoryx2"):
        (tmp_path / f"{module}.py").write_text("raise ImportError('not here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    done = shmring_cmd("bench", "--only", "pyzmq,faster-fifo,zeroq,cloudtoid,msgq,iceoryx2", "--payloads", "64", "--repeat", "1",
                       "--json", str(tmp_path / "b.json"), env=env)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "b.json") as f:
        rows = [r for s in json.load(f)["scenarios"].values() for r in s["rows"]]
    assert rows and all("metrics" not in r for r in rows)
    reasons = {r["skipped"] for r in rows}
    assert any("zmq not installed" in why for why in reasons)
    assert any("faster_fifo not installed" in why for why in reasons)
    assert any("zeroq not installed" in why for why in reasons)
    assert any("cloudtoid_interprocess not installed" in why for why in reasons)
    assert "msgq not installed (pip install 'shmring[bench-pubsub]')" in reasons
    assert "iceoryx2 not installed (pip install 'shmring[bench-pubsub]')" in reasons
    assert all("not installed" in why or "CPUs" in why for why in reasons)  # N->M rows may need cores first
    assert "Traceback" not in done.stdout + done.stderr


TINY = ("--only", "latency", "--payloads", "64", "--repeat", "1", "--scale", "0.01")


@pytest.mark.timeout(60)
def test_bench_progress_in_a_log_is_a_line_per_row():
    done = shmring_cmd("bench", *TINY)  # stderr is a pipe here, not a terminal
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    progress = [line for line in done.stderr.split("\n") if line.startswith("[1/1] ")]
    runnable = [row.label() for row in command.build_rows([64])["latency"][0] if not row.missing()]
    assert runnable and progress == [f"[1/1] {label}" for label in runnable]


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Instant(runner.Row):
    name = "instant"

    def run(self, count):
        return {"rate": 1.0}


@pytest.mark.parametrize("stream, in_place", [(Terminal(), True), (io.StringIO(), False)], ids=["tty", "log"])
def test_bench_progress_is_in_place_only_on_a_terminal(stream, in_place):
    runner.measure([Instant(), Instant()], 2, 1.0, progress=stream)
    text = stream.getvalue()
    if in_place:  # one line, rewritten, and blanked at the end
        assert text.startswith("\r[1/2] instant ") and text.endswith("\r") and "\n" not in text
    else:
        assert text == "[1/2] instant\n" * 2 + "[2/2] instant\n" * 2


def bench_refusal(*args):
    """Run bench with bad arguments (otherwise a tiny run, should they be taken); its error line."""
    done = shmring_cmd("bench", *TINY, *args, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr  # refused before anything ran
    return done.stderr.strip().splitlines()[-1]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("option, value, rule", [
    ("--payloads", "abc", "'abc' is not a positive integer"),
    ("--payloads", "0", "'0' is not a positive integer"),
    ("--payloads", "-5", "'-5' is not a positive integer"),
    ("--payloads", "64,,", "'64,,' has an empty item"),
    ("--payloads", "64,64", "'64,64': 64 is given twice"),
    ("--payloads", "64,100000", "'64,100000': 100000 is more than 65536 bytes"),
    ("--only", ",", "',' has an empty item"),
    ("--repeat", "0", "'0' is not a positive integer"),
    ("--repeat", "-2", "'-2' is not a positive integer"),
    ("--scale", "0", "'0' is not a positive finite number"),
    ("--scale", "-1", "'-1' is not a positive finite number"),
    ("--scale", "nan", "'nan' is not a positive finite number"),
    ("--scale", "inf", "'inf' is not a positive finite number"),
    ("--json", "/nonexistent-shmring-dir/b.json",
     "'/nonexistent-shmring-dir/b.json' cannot be written: no directory /nonexistent-shmring-dir"),
    ("--plot", "/nonexistent-shmring-dir/b.png",
     "'/nonexistent-shmring-dir/b.png' cannot be written: no directory /nonexistent-shmring-dir"),
    ("--json", "/", "'/' is a directory"),
])
def test_bench_refuses_bad_arguments(option, value, rule):
    assert bench_refusal(option, value) == f"shmring bench: error: argument {option}: {rule}"


@pytest.mark.timeout(60)
def test_bench_refuses_a_selection_of_nothing():
    line = bench_refusal("--only", "nonsense")
    assert line.startswith("shmring bench: error: --only nonsense selects no row")
    assert all(scenario in line for scenario in command.SCENARIOS)
    line = bench_refusal("--only", "n-to-m", "--plot", os.devnull)
    assert line.startswith("shmring bench: error: --plot draws") and "n-to-m" in line


@pytest.mark.timeout(60)
def test_bench_only_selects_rows(tmp_path):
    done = shmring_cmd("bench", "--only", "latency", "--payloads", "64", "--repeat", "1", "--scale", "0.01",
                       "--json", str(tmp_path / "b.json"))
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "b.json") as f:
        assert list(json.load(f)["scenarios"]) == ["latency"]


# ---- ls / stat / rm ----

# The rings these tests leave for rm --stale to find, and every name they make in
# /dev/shm, start with this run's own prefix, and rm --stale is only ever run here with
# it: the tests never judge, nor remove, the segments of other users or of a
# concurrent run (nor does a concurrent run remove theirs).
PREFIX = f"shmring-t{secrets.token_hex(3)}-"
STALE = ("rm", "--stale", "--prefix", PREFIX)


def private_name(prefix=PREFIX):
    return prefix + secrets.token_hex(6)   # 28 characters of the 30 a name may have


def listed(name):
    done = shmring_cmd("ls", "--json")
    assert done.returncode == 0, done.stderr
    return next((r for r in json.loads(done.stdout) if r["name"] == name), None)


@needs_dev_shm
@pytest.mark.timeout(60)
def test_ls_and_stat_show_a_live_ring(make_queue):
    q = make_queue(50, msg_size=100)
    for i in range(3):
        q.put_bytes(b"x" * i)
    q.get_bytes()
    info = listed(q.name)
    assert info["kind"] == "queue" and info["maxsize"] == 50 and info["msg_size"] == 100
    assert info["fill"] == 2 and info["put"] == 3 and info["got"] == 1
    assert info["creator_pid"] == os.getpid() and info["participants_alive"] == 1
    assert info["bytes"] >= 50 * 100
    table = shmring_cmd("ls").stdout
    assert q.name in table and "ALIVE" in table

    done = shmring_cmd("stat", q.name, "--watch", "--interval", "0.05", "--count", "2")
    assert done.returncode == 0, done.stderr
    assert "fill            2 / 50" in done.stdout
    assert "messages in     3" in done.stdout and "messages out    1" in done.stdout
    assert done.stdout.count("rate ") == 1  # from the second refresh on
    assert "participants    1 alive of 1 registered" in done.stdout


@needs_dev_shm
@pytest.mark.timeout(60)
def test_ls_shows_records_rings(make_queue):
    np = pytest.importorskip("numpy")
    q = make_queue(64, dtype=np.dtype([("t", "<i8"), ("x", "<f4")]))
    info = listed(q.name)
    assert info["kind"] == "records" and info["msg_size"] == 12 and "t" in info["schema"]


@needs_dev_shm
@pytest.mark.timeout(60)
def test_ls_and_stat_show_a_topic_and_each_subscribers_lag(make_topic):
    topic = make_topic(16, 32, max_topic_len=4, policy="overwrite")
    behind, current = topic.subscribe(), topic.subscribe(b"k")
    for i in range(3):
        topic.publisher().publish(b"k", i)
    current.recv_many()
    info = listed(topic.name)
    assert info["kind"] == "topic" and info["policy"] == "overwrite" and info["published"] == 3
    assert [(s["position"], s["lag"], s["alive"]) for s in info["subscribers"]] == [(0, 3, True), (3, 0, True)]
    row = next(line for line in shmring_cmd("ls").stdout.splitlines() if line.startswith(topic.name))
    assert row.split()[1:6] == ["topic", "16", "32", "3", "2"]   # kind, capacity, msg size, lag, subscribers
    done = shmring_cmd("stat", topic.name)
    assert done.returncode == 0, done.stderr
    assert "kind            topic, policy overwrite" in done.stdout and "published       3" in done.stdout
    rows = [line.split() for line in done.stdout.splitlines() if line.strip().endswith("attached")]
    assert [(r[2], r[3]) for r in rows] == [("0", "3"), ("3", "0")] and rows[0][1] == str(os.getpid())


@pytest.mark.timeout(60)
def test_rm_refuses_a_live_ring_unless_forced(make_queue):
    q = make_queue(10, msg_size=16)
    q.put_bytes(b"kept")
    done = shmring_cmd("rm", q.name)
    assert done.returncode == 1 and f"not removed {q.name}" in done.stdout and "--force" in done.stdout
    assert segment_exists(q.name)
    assert q.get_bytes() == b"kept"  # and the ring still works

    forced = make_queue(10, msg_size=16)
    done = shmring_cmd("rm", "--force", forced.name)
    assert done.returncode == 0 and "removed" in done.stdout
    assert not segment_exists(forced.name)
    forced.put_bytes(b"still mapped")  # our mapping stays valid; only the name is gone
    assert forced.get_bytes() == b"still mapped"


def ring_of_a_killed_creator(prefix=PREFIX):
    """The name (starting with `prefix`) of a ring holding one message whose creator was SIGKILLed."""
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import os, shmring, sys\n"
         "q = shmring.Queue(10, msg_size=16, name=sys.argv[1])\n"
         "q.put_bytes(b'orphan')\n"
         "print(q.name, flush=True)\n"
         "os.kill(os.getpid(), 9)\n", private_name(prefix)],
        stdout=subprocess.PIPE, text=True)
    name = child.stdout.readline().strip()
    assert child.wait(30) == -signal.SIGKILL
    assert name.startswith(prefix)
    return name


@needs_dev_shm
@pytest.mark.timeout(60)
def test_rm_stale_removes_a_ring_whose_creator_was_killed(make_queue):
    live = make_queue(10, msg_size=16, name=private_name())
    name = ring_of_a_killed_creator()
    info = listed(name)
    lock_file = info["lock_file"]
    assert segment_exists(name) and segment_exists(lock_file)  # SIGKILL skips every cleanup
    assert listed(lock_file) is None  # not a ring of its own
    assert info["participants_alive"] == 0 and info["fill"] == 1

    done = shmring_cmd(*STALE)
    assert done.returncode == 0, done.stderr
    assert f"removed {name}" in done.stdout
    assert not segment_exists(name) and not segment_exists(lock_file)
    assert segment_exists(live.name) and live.name not in done.stdout


@needs_dev_shm
@pytest.mark.timeout(60)
def test_rm_stale_removes_lock_files_of_no_ring_and_keeps_those_of_rings(make_queue):
    live = make_queue(10, msg_size=16, name=private_name())
    own = listed(live.name)["lock_file"]
    name = ring_of_a_killed_creator()
    orphan = listed(name)["lock_file"]
    os.unlink(f"/dev/shm/{name}")                   # its segment removed by hand
    foreign = f"{live.name}~0123456789abcdef"      # named and made like one of the live ring's, but not it
    os.close(os.open(f"/dev/shm/{foreign}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    data = f"{PREFIX}app~00000000deadbeef"          # only named like a lock file: another program's
    with open(f"/dev/shm/{data}", "w") as f:
        f.write("not ours")
    try:
        done = shmring_cmd(*STALE)
        assert done.returncode == 0, done.stderr
        assert f"removed {orphan}: lock file of no ring" in done.stdout
        assert f"removed {foreign}: lock file of no ring" in done.stdout
        assert not segment_exists(orphan) and not segment_exists(foreign)
        assert segment_exists(data) and data not in done.stdout
    finally:
        os.unlink(f"/dev/shm/{data}")
    assert segment_exists(own) and own not in done.stdout
    live.put_bytes(b"still alive")
    assert live.get_bytes() == b"still alive"


MAKER = """
import shmring, sys
shmring._core._set_test_hook("creating", 60)      # stalls with the segment and lock file made
shmring.Queue(10, msg_size=16, name=sys.argv[1])
"""


@needs_dev_shm
@pytest.mark.timeout(60)
def test_rm_removes_a_ring_whose_creator_died_making_it_and_never_one_being_made():
    name = private_name()
    maker = subprocess.Popen([sys.executable, "-c", MAKER, name], env=child_python_env())
    try:
        wait_until(lambda: any(e.startswith(name + "~") for e in os.listdir("/dev/shm")), what="the lock file")
        lock_file = next(e for e in os.listdir("/dev/shm") if e.startswith(name + "~"))
        for args in (STALE, ("rm", name), ("rm", "--force", name)):
            done = shmring_cmd(*args)
            assert not any(line.startswith(f"removed {name}") for line in done.stdout.splitlines()), args
        assert segment_exists(name) and segment_exists(lock_file)
        assert maker.poll() is None                # still making it
    finally:
        maker.kill()
        maker.wait(30)
    done = shmring_cmd(*STALE)
    assert done.returncode == 0, done.stderr
    assert f"removed {name}: its creator died while making it" in done.stdout
    assert not segment_exists(name) and not segment_exists(lock_file)


@needs_dev_shm
@pytest.mark.timeout(60)
def test_a_live_ring_whose_magic_a_writer_erased_is_never_taken_for_a_dead_create(make_queue):
    q = make_queue(10, msg_size=16, name=private_name())
    q.put_bytes(b"kept")                            # the creator's entry holds its lock
    patch_segment(q.name, 0, bytes(8))
    for args in (STALE, ("rm", q.name)):
        done = shmring_cmd(*args)
        assert not any(line.startswith(f"removed {q.name}") for line in done.stdout.splitlines()), args
    assert segment_exists(q.name) and q.get_bytes() == b"kept"


@pytest.mark.timeout(60)
def test_unknown_names_are_clear_errors():
    for args in (("stat", "shmring-0000000000000000"), ("rm", "shmring-0000000000000000", "shmring-1")):
        done = shmring_cmd(*args)
        assert done.returncode == 1
        for name in args[1:]:
            assert f"{name}" in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    done = shmring_cmd("rm")
    assert done.returncode == 2 and "--stale" in done.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize("args, error", [
    (("--watch", "--interval", "-1"), "argument --interval: '-1' is not a positive finite number"),
    (("--watch", "--interval", "0"), "argument --interval: '0' is not a positive finite number"),
    (("--watch", "--interval", "nan"), "argument --interval: 'nan' is not a positive finite number"),
    (("--watch", "--interval", "1e10"), "argument --interval: '1e10' seconds is more than a day (86400)"),
    (("--watch", "--count", "0"), "argument --count: '0' is not a positive integer"),
    (("--watch", "--count", "x"), "argument --count: 'x' is not a positive integer"),
    (("--count", "3"), "--interval and --count need --watch"),
    (("--interval", "0.1"), "--interval and --count need --watch"),
])
def test_stat_refuses_bad_arguments_before_printing(make_queue, args, error):
    q = make_queue(10, msg_size=16)
    done = shmring_cmd("stat", q.name, *args, *(() if "--count" in args else ("--count", "2")))
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"shmring stat: error: {error}"


@pytest.mark.timeout(60)
def test_stat_watch_ends_quietly_on_ctrl_c(make_queue):
    q = make_queue(10, msg_size=16)
    child = subprocess.Popen([sys.executable, "-m", "shmring", "stat", q.name, "--watch", "--interval", "0.05"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == f"name            {q.name}\n"  # it is watching
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 130 and err == ""


@needs_dev_shm
@pytest.mark.timeout(60)
def test_rm_stale_with_a_prefix_leaves_every_other_stale_ring():
    other_prefix = f"shmring-u{secrets.token_hex(3)}-"
    ours, other = ring_of_a_killed_creator(), ring_of_a_killed_creator(other_prefix)
    done = shmring_cmd(*STALE)
    assert done.returncode == 0, done.stderr
    assert f"removed {ours}" in done.stdout and other not in done.stdout
    assert not segment_exists(ours) and segment_exists(other) and listed(other)["participants_alive"] == 0
    done = shmring_cmd("rm", "--stale", "--prefix", other_prefix)  # and it is stale, once asked for
    assert done.returncode == 0 and f"removed {other}" in done.stdout, done.stdout + done.stderr
    assert not segment_exists(other)
    assert shmring_cmd(*STALE).stdout == "no stale segments\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, error", [
    (("rm", "--prefix", PREFIX, "shmring-0000000000000000"), "--prefix needs --stale"),
    (("rm", "--stale", "--prefix", "a/b"),
     "argument --prefix: 'a/b' is not the start of a segment name (1-30 characters of A-Z a-z 0-9 . _ -)"),
    (("rm", "--stale", "--prefix", ""),
     "argument --prefix: '' is not the start of a segment name (1-30 characters of A-Z a-z 0-9 . _ -)"),
])
def test_rm_refuses_a_prefix_without_stale_or_not_of_a_name(args, error):
    done = shmring_cmd(*args)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"shmring rm: error: {error}"


@pytest.mark.timeout(60)
def test_rm_takes_names_or_stale_not_both():
    done = shmring_cmd("rm", "--stale", "shmring-0000000000000000")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == "shmring rm: error: segment names or --stale, not both"


@pytest.mark.timeout(60)
def test_rm_an_invalid_name_is_not_offered_force():
    long = "x" * 300  # more than a file name can be
    done = shmring_cmd("rm", "--force", "a/b", long, "shmring-0000000000000000")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stdout.splitlines() == ["not removed a/b: invalid segment name: 'a/b'",
                                        f"not removed {long}: invalid segment name (too long): '{long}'",
                                        "not removed shmring-0000000000000000: no such segment"]


# ---- files in /dev/shm that are not shmring's ----

@pytest.fixture
def foreign_name():
    """A fresh segment name; whatever the test makes under it is removed after."""
    name = private_name()
    try:
        yield name
    finally:
        unlink(name)  # shm_unlink: on Linux, unlink() in /dev/shm, so a FIFO or a link goes too


@needs_dev_shm
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_fifo_or_link_in_dev_shm_is_skipped_never_opened(foreign_name, make_queue, kind):
    path = os.path.join("/dev/shm", foreign_name)
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    else:  # a link to a live ring: still not a file of ours to read or remove
        os.symlink(os.path.join("/dev/shm", make_queue(10, msg_size=16).name), path)
    for args in (("ls", "--json"), STALE):  # a plain open() of the FIFO never returns
        done = shmring_cmd(*args, timeout=20)
        assert done.returncode == 0, done.stderr
        assert foreign_name not in done.stdout
    for args in (("rm", foreign_name), ("rm", "--force", foreign_name)):
        done = shmring_cmd(*args, timeout=20)
        assert done.returncode == 1 and done.stdout == f"not removed {foreign_name}: not a shmring segment\n"
    done = shmring_cmd("stat", foreign_name, timeout=20)
    assert done.returncode == 1 and "not a shmring segment (not a regular file)" in done.stderr
    assert (stat.S_ISFIFO if kind == "fifo" else stat.S_ISLNK)(os.lstat(path).st_mode)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("data", [b"NOTOURS!" + bytes(4088), b"SHMRING", b""], ids=["other magic", "short", "empty"])
def test_rm_force_never_removes_a_segment_that_is_not_shmring(foreign_name, data):
    write_segment(foreign_name, data)
    for args in (("rm", foreign_name), ("rm", "--force", foreign_name)):
        done = shmring_cmd(*args)
        assert done.returncode == 1 and done.stdout == f"not removed {foreign_name}: not a shmring segment\n"
    assert segment_exists(foreign_name)
    if os.path.isdir("/dev/shm"):
        assert listed(foreign_name) is None


@pytest.mark.timeout(60)
def test_rm_force_removes_a_shmring_segment_of_another_layout(foreign_name):
    q = shmring.Queue(10, msg_size=16)
    raw = bytearray(read_segment(q.name))
    q.close()
    raw[8:12] = (int.from_bytes(raw[8:12], "little") + 1).to_bytes(4, "little")  # the layout version
    write_segment(foreign_name, bytes(raw))
    done = shmring_cmd("rm", foreign_name)
    assert done.returncode == 1 and "incompatible layout version" in done.stdout and "--force" in done.stdout
    assert segment_exists(foreign_name)
    done = shmring_cmd("rm", "--force", foreign_name)
    assert done.returncode == 0 and done.stdout.startswith(f"removed {foreign_name}")
    assert not segment_exists(foreign_name)


@pytest.mark.parametrize("data", [b"SHMRING1" + bytes(100), b"NOTOURS!", b"SHM", b""])
def test_read_magic_where_there_is_no_dev_shm(foreign_name, monkeypatch, data):
    """macOS has no /dev/shm: the magic is read through shm_open and a mapping instead."""
    write_segment(foreign_name, data)
    monkeypatch.setattr(admin, "SHM_DIR", "/nonexistent-shmring-dir")
    assert admin.read_magic(foreign_name) == data[:8]
    with pytest.raises(FileNotFoundError):
        admin.read_magic("shmring-0000000000000000")
