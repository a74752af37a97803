"""Fuzz the attach/validate path (and what a validated segment allows) for a
bounded time: with gcc + ASan/UBSan and a replay-and-mutate driver everywhere,
and with clang's coverage-guided libFuzzer where it is installed.

The seed corpus is tests/fuzz/corpus (regenerate with tests/fuzz/make_corpus.py,
grow it with libFuzzer's -merge=1). SHMRING_FUZZ_SECONDS sets the time per run.
"""
import os
import shutil
import subprocess

import pytest

from conftest import source_tree
from test_c_core import CC, CSRC, LIBS, ROOT, WARNINGS, compile_program

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, source_tree("csrc/shmring.h", "tests/fuzz/corpus")]

FUZZ = ROOT / "tests" / "fuzz"
SECONDS = float(os.environ.get("SHMRING_FUZZ_SECONDS", "20"))
SANITIZERS = ["-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


def test_fuzz_attach_with_the_mutation_driver(tmp_path):
    if shutil.which(CC) is None:
        pytest.skip(f"no C compiler ({CC})")
    exe = tmp_path / "fuzz_driver"
    done = compile_program(exe, SANITIZERS, CSRC + [FUZZ / "fuzz_attach.c", FUZZ / "fuzz_driver.c"])
    if done.returncode != 0 and "sanitize" in done.stderr:
        pytest.skip(f"{CC} cannot build with ASan/UBSan: {done.stderr[:200]}")
    assert done.returncode == 0, done.stderr
    run = subprocess.run([str(exe), str(SECONDS), str(FUZZ / "corpus")], capture_output=True, text=True,
                         timeout=SECONDS + 120)
    print(run.stdout.strip())
    assert run.returncode == 0, run.stdout + run.stderr
    assert "fuzz ok" in run.stdout


def test_fuzz_attach_with_libfuzzer(tmp_path):
    clang = shutil.which("clang")
    if clang is None:
        reason = "clang not installed: no coverage-guided libFuzzer run (the mutation driver ran)"
        print(f"SKIP reason: {reason}")
        pytest.skip(reason)
    exe = tmp_path / "fuzz_libfuzzer"
    cmd = [clang, *WARNINGS, "-O1", "-fsanitize=fuzzer,address,undefined", *map(str, CSRC),
           str(FUZZ / "fuzz_attach.c"), "-o", str(exe), *LIBS]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"clang cannot link libFuzzer here: {done.stderr.strip()[:200]}"
        print(f"SKIP reason: {reason}")
        pytest.skip(reason)
    corpus = tmp_path / "corpus"  # libFuzzer adds inputs: work on a copy
    shutil.copytree(FUZZ / "corpus", corpus)
    run = subprocess.run([str(exe), f"-max_total_time={int(SECONDS)}", "-print_final_stats=1",
                          f"-artifact_prefix={tmp_path}/", str(corpus)],
                         capture_output=True, text=True, timeout=SECONDS + 120)
    tail = run.stderr.strip().splitlines()[-8:]
    print("\n".join(line for line in tail if line.startswith("stat::") or line.startswith("Done")))
    assert run.returncode == 0, run.stderr[-3000:]
