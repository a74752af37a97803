"""The GitHub workflows would run today: actionlint (which knows the actions' runtimes
and inputs) and zizmor's offline audits (pinning by commit, permissions, persisted
credentials, template injection...) report nothing, and every action is pinned by
commit with its version beside it."""
import re
import subprocess

import pytest

from conftest import ROOT, source_tree
from test_packaging import tool

pytestmark = [source_tree(".github/workflows"), pytest.mark.timeout(120)]

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_actionlint_reports_nothing():
    done = subprocess.run([tool("actionlint"), "-no-color"], cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_zizmor_offline_reports_nothing_even_pedantic():
    for persona in ("regular", "pedantic"):
        done = subprocess.run([tool("zizmor"), "--offline", "--no-progress", "--persona", persona,
                               str(ROOT / ".github" / "workflows")], capture_output=True, text=True, timeout=100)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "No findings to report" in done.stdout, done.stdout


def test_every_action_is_pinned_by_commit_and_names_its_version():
    uses = [(path.name, line.strip()) for path in WORKFLOWS for line in path.read_text().splitlines()
            if re.match(r"\s*(- )?uses:", line)]
    assert len(uses) >= 10
    for name, line in uses:
        assert re.fullmatch(r"(- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+(\.\d+)*", line), (name, line)


def test_no_job_keeps_checkout_credentials_and_the_workflows_grant_nothing_by_default():
    for path in WORKFLOWS:
        text = path.read_text()
        assert re.search(r"^permissions: \{\}$", text, re.M), path.name
        checkouts = text.count("actions/checkout@")
        assert text.count("persist-credentials: false") == checkouts, path.name
