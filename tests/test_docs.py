"""The README's commands and example stay true."""
import re
import subprocess
import sys

import pytest

from conftest import ROOT, child_python_env, source_tree

pytestmark = source_tree("README.md", "examples", ".ci/run")


def readme_commands():
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_ci_runs_exactly_the_readme_test_command():
    test_command = readme_commands()[1]
    assert "pytest" in test_command
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


@pytest.mark.timeout(120)
def test_the_readme_example_runs_and_prints_what_it_says():
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "examples" / "worker_pool.py").read_text()
    code = re.search(r"```python\n(.*?)\n```", readme, re.S).group(1)
    assert code.strip() in example, "README example and examples/worker_pool.py differ"
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "worker_pool.py")],
                          capture_output=True, text=True, timeout=100, env=child_python_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1000"


@pytest.mark.timeout(120)
def test_the_records_example_aggregates_every_tick():
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "records_pool.py")],
                          capture_output=True, text=True, timeout=100, env=child_python_env())
    assert done.returncode == 0, done.stderr  # it checks its totals against numpy itself
    assert done.stdout.startswith("VWAP buy ")


@pytest.mark.timeout(120)
def test_the_readme_records_examples_run_and_the_reserve_loop_writes_exactly_n():
    blocks = re.findall(r"```python\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    records, loop = blocks[1], blocks[2]
    assert "q.reserve(left)" in loop
    check = "\nassert q.qsize() == 10_000 - 4096 - 4096 + 100 + 100, q.qsize()\nprint('ok')\n"
    done = subprocess.run([sys.executable, "-c", records + "\n" + loop + check],
                          capture_output=True, text=True, timeout=100, env=child_python_env())
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


@pytest.mark.timeout(120)
def test_the_readme_topic_example_prints_what_it_says_and_the_observer_example_loses_nothing():
    block = next(b for b in re.findall(r"```python\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
                 if "shmring.Topic(" in b)
    done = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=100,
                          env=child_python_env())
    assert done.returncode == 0 and done.stdout.strip() == "(b'orders.eu', {'id': 1})", done.stdout + done.stderr
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "observer.py")],
                          capture_output=True, text=True, timeout=100, env=child_python_env())
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "nothing lost" and len(lines) == 3
    assert "orders.eu + stock." in done.stdout and "'stock.us': 100" in done.stdout


def test_the_readme_memory_figure_is_what_a_queue_takes():
    import shmring

    q = shmring.Queue(10_000)
    try:
        taken = shmring._core.inspect(q.name)["bytes"]
    finally:
        q.close()
    assert f"`Queue(10_000)` takes {taken / 1e6:.1f} MB, not 10" in (ROOT / "README.md").read_text()
