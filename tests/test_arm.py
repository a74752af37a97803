"""The C tests cross-compiled for aarch64 and run under qemu-aarch64.

What this shows and what it does not: the ring compiles for aarch64 without
warnings and runs correctly there instruction by instruction (its atomics
become aarch64 load-acquire/store-release and exclusive or LSE read-modify-
write instructions). It does not show that the memory orders are weak enough
to be safe on real ARM cores: qemu runs the guest's threads on x86 hosts with
x86's stronger ordering, so a missing acquire or release would go unnoticed
here. ThreadSanitizer (test_c_core.py) checks the orders against the C11 model,
and CI runs the whole suite natively on aarch64 runners. See docs/design.md.
"""
import shutil
import subprocess

import pytest

from conftest import source_tree
from test_c_core import CSRC, TEST_SRC, WARNINGS

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow, source_tree("csrc/shmring.h", "tests/c/test_ring.c")]

CROSS_CC = "aarch64-linux-gnu-gcc"
QEMU = "qemu-aarch64"


def build_for_arm(out, test_src):
    """The C library with test_src, cross-compiled for aarch64 (skips without the tools)."""
    missing = [tool for tool in (CROSS_CC, QEMU) if shutil.which(tool) is None]
    if missing:
        reason = (f"{' and '.join(missing)} not installed (Debian: gcc-aarch64-linux-gnu, "
                  "qemu-user): no aarch64 cross-check")
        print(f"SKIP reason: {reason}")
        pytest.skip(reason)
    exe = out / f"{test_src.stem}_aarch64"
    cmd = [CROSS_CC, *WARNINGS, "-O2", "-static", "-pthread", *map(str, CSRC), str(test_src), "-o", str(exe)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # warnings are errors on aarch64 too
    return exe


@pytest.fixture(scope="module")
def arm_binary(tmp_path_factory):
    return build_for_arm(tmp_path_factory.mktemp("arm"), TEST_SRC)


@pytest.mark.parametrize("args, expect", [
    (["unit"], "unit ok"),
    (["recovery"], "recovery ok"),
    # liveness across processes: under qemu-user /proc/self/stat is the emulator's, so
    # only a kernel lock tells a live process from a dead one there
    (["liveness"], "liveness ok"),
    (["stress", 3, 3, 100_000, 1000], "stress ok"),
    (["stress", 4, 4, 30_000, 3], "stress ok"),
    (["stress", 3, 3, 100_000, 1000, "records"], "stress ok"),
    (["stress", 3, 3, 100_000, 65536, "records-wrap"], "stress ok"),
    (["stress", 3, 3, 100_000, 64, "expiring"], "a third expired"),
    (["pingpong", 20_000], "pingpong ok"),
])
def test_c_tests_pass_on_aarch64_under_qemu(arm_binary, args, expect):
    done = subprocess.run([QEMU, str(arm_binary), *map(str, args)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert expect in done.stdout
