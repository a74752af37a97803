"""What users install: the wheel matrix cibuildwheel builds, the sdist's contents,
the metadata, and what the extension says of the GIL.

The tools (cibuildwheel, build) come from tools/requirements-check.txt: .ci/run
installs them into .venv-tools and sets SHMRING_TOOLS_BIN; where they are missing
those tests skip, saying so."""
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import shmring
from conftest import ROOT, child_python_env, source_tree


def tool(name):
    """A command from SHMRING_TOOLS_BIN, the running environment or PATH; skips if none."""
    for where in (os.environ.get("SHMRING_TOOLS_BIN"), os.path.dirname(sys.executable), None):
        found = shutil.which(name, path=where) if where is not None else shutil.which(name)
        if found:
            return found
    pytest.skip(f"{name} not installed (pip install -r tools/requirements-check.txt, "
                "and SHMRING_TOOLS_BIN=the environment's bin/)")


# ---- the wheel matrix ----

PYTHONS = ["cp310", "cp311", "cp312", "cp313", "cp314", "cp314t"]


def build_identifiers(platform, archs):
    done = subprocess.run([tool("cibuildwheel"), "--print-build-identifiers", "--platform", platform,
                           "--archs", archs, str(ROOT)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={k: v for k, v in os.environ.items() if not k.startswith("CIBW_")})
    assert done.returncode == 0, done.stderr
    return sorted(done.stdout.split())


@source_tree("pyproject.toml")
@pytest.mark.timeout(240)
def test_cibuildwheel_builds_cpython_310_to_314_and_free_threaded_314t_everywhere():
    linux = build_identifiers("linux", "x86_64,aarch64")
    assert linux == sorted(f"{py}-{libc}_{arch}" for py in PYTHONS for libc in ("manylinux", "musllinux")
                           for arch in ("x86_64", "aarch64"))
    macos = build_identifiers("macos", "x86_64,arm64")
    assert macos == sorted(f"{py}-macosx_{arch}" for py in PYTHONS for arch in ("x86_64", "arm64"))


# ---- the sdist ----

@source_tree("pyproject.toml", "setup.py", "MANIFEST.in", "tools/check_sdist.py", ".git")
@pytest.mark.timeout(300)
def test_the_sdist_carries_the_sources_and_what_the_readme_links(tmp_path):
    python = Path(tool("python")).parent / "python"  # the tools' environment: build, setuptools, Cython
    # cwd tmp_path: in a checkout that was built in place, ./build (setup.py's output) would pass for `build`
    if subprocess.run([str(python), "-c", "import build.__main__, setuptools, Cython"], capture_output=True,
                      cwd=tmp_path).returncode:
        pytest.skip(f"{python} lacks build, setuptools or Cython (tools/requirements-check.txt)")
    # built from a copy of the tracked and new files, as a clean checkout would be
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode()
    tree = tmp_path / "tree"
    for rel in filter(None, listed.split("\0")):
        if (ROOT / rel).is_file():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, tree / rel)
    done = subprocess.run([str(python), "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path / "dist"),
                           str(tree)], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    sdist, = (tmp_path / "dist").glob("shmring-*.tar.gz")
    checked = subprocess.run([sys.executable, str(ROOT / "tools" / "check_sdist.py"), str(sdist)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and checked.stdout.startswith("sdist ok: "), checked.stdout + checked.stderr


@source_tree("README.md", "tools/check_sdist.py")
def test_check_sdist_knows_what_the_readme_links():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import check_sdist
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert check_sdist.readme_links("see [x](docs/a.md#part), ![p](docs/p.png), [w](https://e.org/y)") == [
        "docs/a.md", "docs/p.png"]
    required = check_sdist.required_files()
    for must in ("docs/bench.png", "bench/RESULTS.md", "csrc/shmring.h", "src/shmring/_core.pyx", "tests/c/test_ring.c"):
        assert must in required
    assert check_sdist.UNWANTED.search("src/shmring/_core.c") and check_sdist.UNWANTED.search("x/_core.cpython-311.so")
    assert not check_sdist.UNWANTED.search("csrc/queue.c")


# ---- metadata of the installed distribution ----

def installed_distribution():
    """The distribution that the imported shmring came from, or skip."""
    try:
        dist = importlib.metadata.distribution("shmring")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("shmring is imported from a source tree, not installed")
    here = Path(shmring.__file__).resolve()
    if not any(Path(dist.locate_file(f)).resolve() == here for f in dist.files or ()):
        pytest.skip(f"the installed shmring metadata is not that of the imported {here}")
    return dist


def test_the_installed_metadata_names_the_pythons_and_the_project_urls():
    meta = installed_distribution().metadata
    assert meta["Requires-Python"] == ">=3.10"
    classifiers = meta.get_all("Classifier")
    for minor in range(10, 15):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL"))
    assert {"Source", "Issues", "Documentation"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())


# ---- the GIL ----

def test_the_generated_extension_declares_that_it_needs_the_gil():
    generated = ROOT / "src" / "shmring" / "_core.c"
    if not generated.exists():
        pytest.skip("src/shmring/_core.c not generated here (built from the checkout it is)")
    text = generated.read_text()
    # Cython's default branch, taken unless CYTHON_FREETHREADING_COMPATIBLE is defined
    default = re.search(r"#else\n#define __Pyx_FREETHREADING_COMPATIBLE (\w+)\n#endif", text)
    assert default and default[1] == "Py_MOD_GIL_USED"
    assert "{Py_mod_gil, __Pyx_FREETHREADING_COMPATIBLE}" in text


@pytest.mark.skipif(not sysconfig.get_config_var("Py_GIL_DISABLED"), reason="not a free-threaded Python")
@pytest.mark.timeout(120)
def test_on_free_threaded_python_importing_shmring_enables_the_gil_and_says_so():
    env = child_python_env()
    env.pop("PYTHON_GIL", None)
    code = ("import sys; before = sys._is_gil_enabled(); import shmring; q = shmring.Queue(4); q.put(1); "
            "print(before, sys._is_gil_enabled(), q.get()); q.close()")
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=60,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "1"]
    assert "RuntimeWarning" in done.stderr and "shmring._core" in done.stderr


# ---- tools/build_wheels.sh (its runs are recorded in docs/wheels.md) ----

@source_tree("tools/build_wheels.sh")
@pytest.mark.timeout(60)
def test_the_wheel_script_parses_says_how_to_use_it_and_refuses_unknown_arguments(tmp_path):
    script = str(ROOT / "tools" / "build_wheels.sh")
    assert subprocess.run(["bash", "-n", script], capture_output=True, timeout=30).returncode == 0
    done = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "usage: tools/build_wheels.sh" in done.stdout
    bad = subprocess.run(["bash", script, "--bogus"], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, WORK=str(tmp_path / "work")))
    assert bad.returncode == 2 and "unknown argument: --bogus" in bad.stderr
    assert not (tmp_path / "work").exists()  # refused before making anything
