"""The topic's C tests (tests/c/test_topic.c), built with -Wall -Wextra -Werror and
run: plain, under AddressSanitizer + UndefinedBehaviorSanitizer, the thread
stress under ThreadSanitizer, and cross-compiled for aarch64 under qemu (what
each of those shows and does not: test_c_core.py, test_arm.py, docs/design.md)."""
import shutil
import subprocess

import pytest

from test_c_core import BUILDS, CC, CSRC, ROOT, WARNINGS, compile_program, run_program
from test_arm import CROSS_CC, QEMU

pytestmark = pytest.mark.timeout(300)

TOPIC_SRC = ROOT / "tests" / "c" / "test_topic.c"


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    if shutil.which(CC) is None:
        pytest.skip(f"no C compiler ({CC}) to build the C tests")
    out = tmp_path_factory.mktemp("ctopic")
    built = {}
    for name, flags in BUILDS.items():
        exe = out / f"test_topic_{name}"
        done = compile_program(exe, flags, CSRC + [TOPIC_SRC])
        if name == "plain":
            assert done.returncode == 0, done.stderr  # warnings are errors
        built[name] = exe if done.returncode == 0 else f"{CC} cannot build with {' '.join(flags)}: {done.stderr[:300]}"
    return built


def need(binaries, name):
    if isinstance(binaries[name], str):
        pytest.skip(binaries[name])
    return binaries[name]


@pytest.mark.parametrize("build", ["plain", "asan", "tsan"])
def test_topic_c_white_box(binaries, build):
    done = run_program(need(binaries, build), "unit")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "topic unit ok" in done.stdout


STRESS = {
    # build: [(publishers, subscribers, messages per publisher, maxsize, policy)]
    "plain": [(3, 3, 300_000, 1024, "block"), (3, 4, 100_000, 8, "block"), (3, 3, 300_000, 1024, "overwrite"),
              (2, 3, 100_000, 8, "overwrite")],
    "asan": [(3, 3, 100_000, 1024, "block"), (3, 3, 100_000, 64, "overwrite")],
    "tsan": [(3, 3, 50_000, 1024, "block"), (3, 4, 20_000, 8, "block"), (3, 3, 50_000, 64, "overwrite")],
}


@pytest.mark.parametrize("build, params", [(b, p) for b, ps in STRESS.items() for p in ps])
def test_topic_c_stress_every_subscriber_in_order_never_torn(binaries, build, params):
    done = run_program(need(binaries, build), "stress", *params)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "topic stress ok" in done.stdout
    assert "WARNING: ThreadSanitizer" not in done.stderr


@pytest.fixture(scope="module")
def arm_binary(tmp_path_factory):
    missing = [tool for tool in (CROSS_CC, QEMU) if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (Debian: gcc-aarch64-linux-gnu, qemu-user)")
    exe = tmp_path_factory.mktemp("arm") / "test_topic_aarch64"
    cmd = [CROSS_CC, *WARNINGS, "-O2", "-static", "-pthread", *map(str, CSRC), str(TOPIC_SRC), "-o", str(exe)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # warnings are errors on aarch64 too
    return exe


@pytest.mark.slow
@pytest.mark.parametrize("args", [["unit"], ["stress", 3, 3, 50_000, 1024, "block"],
                                  ["stress", 3, 3, 50_000, 64, "overwrite"]])
def test_topic_c_tests_pass_on_aarch64_under_qemu(arm_binary, args):
    done = subprocess.run([QEMU, str(arm_binary), *map(str, args)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "topic unit ok" in done.stdout or "topic stress ok" in done.stdout
