"""The topic's C tests (tests/c/test_topic.c), built with -Wall -Wextra -Werror and
run: plain, under AddressSanitizer + UndefinedBehaviorSanitizer, the thread
stress under ThreadSanitizer, and cross-compiled for aarch64 under qemu (what
each of those shows and does not: test_c_core.py, test_arm.py, docs/design.md)."""
import subprocess

import pytest

from conftest import source_tree
from test_arm import QEMU, build_for_arm
from test_c_core import ROOT, build_all, check_stress, need, run_program

pytestmark = [pytest.mark.timeout(300), source_tree("csrc/topic.h", "tests/c/test_topic.c")]

TOPIC_SRC = ROOT / "tests" / "c" / "test_topic.c"


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("ctopic"), TOPIC_SRC)


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
    check_stress(binaries, build, params, "topic stress ok")


@pytest.fixture(scope="module")
def arm_binary(tmp_path_factory):
    return build_for_arm(tmp_path_factory.mktemp("arm"), TOPIC_SRC)


@pytest.mark.slow
@pytest.mark.parametrize("args", [["unit"], ["stress", 3, 3, 50_000, 1024, "block"],
                                  ["stress", 3, 3, 50_000, 64, "overwrite"]])
def test_topic_c_tests_pass_on_aarch64_under_qemu(arm_binary, args):
    done = subprocess.run([QEMU, str(arm_binary), *map(str, args)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "topic unit ok" in done.stdout or "topic stress ok" in done.stdout
