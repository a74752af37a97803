"""Build the C core's own tests with -Wall -Wextra -Werror and run them:
plain, under AddressSanitizer + UndefinedBehaviorSanitizer, and the
multi-threaded stress under ThreadSanitizer."""
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import source_tree

pytestmark = [pytest.mark.timeout(300), source_tree("csrc/shmring.h", "tests/c/test_ring.c")]

ROOT = Path(__file__).resolve().parent.parent
CSRC = sorted((ROOT / "csrc").glob("*.c"))
TEST_SRC = ROOT / "tests" / "c" / "test_ring.c"
CC = os.environ.get("CC", "cc")
WARNINGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"]
LIBS = ["-pthread"] + (["-lrt"] if sys.platform.startswith("linux") else [])

BUILDS = {
    "plain": ["-O2"],
    "asan": ["-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"],
    "tsan": ["-O1", "-fsanitize=thread"],
}


def compile_program(out, flags, sources):
    cmd = [CC, *WARNINGS, *flags, *map(str, sources), "-o", str(out), *LIBS]
    return subprocess.run(cmd, capture_output=True, text=True)


def run_program(exe, *args, timeout=240):
    cmd = [str(exe), *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    # Some kernels randomise mmap more than TSan's shadow layout allows; run without ASLR then.
    if done.returncode != 0 and "unexpected memory mapping" in done.stderr and shutil.which("setarch"):
        done = subprocess.run(["setarch", platform.machine(), "-R", *cmd],
                              capture_output=True, text=True, timeout=timeout)
    return done


def build_all(out, test_src):
    """The C library with test_src in every build of BUILDS: {build: executable, or
    why it could not be built}; the plain build must (warnings are errors)."""
    if shutil.which(CC) is None:
        pytest.skip(f"no C compiler ({CC}) to build the C tests")
    built = {}
    for name, flags in BUILDS.items():
        exe = out / f"{test_src.stem}_{name}"
        done = compile_program(exe, flags, CSRC + [test_src])
        if name == "plain":
            assert done.returncode == 0, done.stderr  # warnings are errors
        if done.returncode == 0:
            built[name] = exe
        else:
            built[name] = f"{CC} cannot build with {' '.join(flags)}: {done.stderr.strip()[:300]}"
    return built


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("ctests"), TEST_SRC)


def need(binaries, name):
    exe = binaries[name]
    if isinstance(exe, str):
        print(f"SKIP reason: {exe}")
        pytest.skip(exe)
    return exe


@pytest.mark.parametrize("build", ["plain", "asan", "tsan"])
@pytest.mark.parametrize("suite", ["unit", "recovery", "liveness"])
def test_c_white_box(binaries, build, suite):
    done = run_program(need(binaries, build), suite)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{suite} ok" in done.stdout


STRESS = {
    # build: [(producers, consumers, messages per producer, maxsize[, "records"])]
    # records rings check their slot words 16 bytes at a time on x86-64, except under TSan;
    # from 65536 slots on their words are 16-bit; records-wrap starts two laps before the
    # words' lap count wraps; expiring gives a third of the messages a deadline passed
    # (dropped at dequeue, counted) and a third one ahead
    "plain": [(3, 3, 1_000_000, 1000), (4, 4, 300_000, 3), (3, 3, 1_000_000, 1000, "records"),
              (2, 2, 300_000, 70, "records"), (3, 3, 1_000_000, 65536, "records-wrap"),
              (2, 2, 300_000, 70, "records-wrap"), (3, 3, 300_000, 64, "expiring")],
    "asan": [(3, 3, 200_000, 1000), (4, 4, 100_000, 3), (3, 3, 200_000, 1000, "records"),
             (3, 3, 200_000, 65536, "records-wrap"), (2, 2, 100_000, 64, "expiring")],
    "tsan": [(3, 3, 200_000, 1000), (4, 4, 100_000, 3), (3, 3, 100_000, 1000, "records"),
             (3, 3, 100_000, 65536, "records-wrap"), (3, 3, 100_000, 64, "expiring")],
}


def check_stress(binaries, build, params, expect="stress ok"):
    """Run a stress row of a C test: it passes, says so, and TSan saw no race."""
    done = run_program(need(binaries, build), "stress", *params)
    assert done.returncode == 0, done.stdout + done.stderr
    assert expect in done.stdout
    assert "WARNING: ThreadSanitizer" not in done.stderr
    return done


@pytest.mark.parametrize("build, params", [(b, p) for b, ps in STRESS.items() for p in ps])
def test_c_stress_threads_no_loss_no_duplicate_in_order(binaries, build, params):
    check_stress(binaries, build, params)


# Runs of packed slot words take the x86-64 vector path (csrc/slots.c): plain 16-byte
# accesses ordered by fences, which ThreadSanitizer cannot see (the path is off under
# TSan, whose rows above run the per-word atomics). So it has rows of its own in builds
# without TSan, checked to have run it: 4-byte words, then 2-byte words across the wrap.
VECTOR_ROWS = [("plain", (4, 4, 300_000, 4096, "records")), ("plain", (3, 3, 300_000, 65536, "records-wrap")),
               ("asan", (2, 2, 100_000, 4096, "records"))]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the vector path is x86-64's")
@pytest.mark.parametrize("build, params", VECTOR_ROWS)
def test_c_stress_vector_path_of_slot_words_outside_tsan(binaries, build, params):
    done = check_stress(binaries, build, params)
    assert "slot words: vector path" in done.stdout, done.stdout


@pytest.mark.parametrize("build, round_trips", [("plain", 100_000), ("tsan", 20_000)])
def test_c_pingpong_every_hand_off_is_woken_not_timed_out(binaries, build, round_trips):
    done = run_program(need(binaries, build), "pingpong", round_trips)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pingpong ok" in done.stdout
    assert "WARNING: ThreadSanitizer" not in done.stderr


@pytest.mark.parametrize("build", ["plain", "asan", "tsan"])
def test_c_shutdown_refuses_puts_drains_or_discards_and_wakes_every_waiter(binaries, build):
    """shmring_queue_shutdown: white-box (drain, immediate, a shutdown killed between its
    two stores, recovery after it) and threads putting and getting until refused, whose
    5 s wait slices only a wake-up ends early; under TSan with no race reported."""
    done = run_program(need(binaries, build), "shutdown")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shutdown ok" in done.stdout
    assert done.stdout.count("shutdown threads ok") == 6
    assert "WARNING: ThreadSanitizer" not in done.stderr
