"""Check an sdist against the checkout it was built from.

    python tools/check_sdist.py dist/shmring-*.tar.gz

It must carry every file that building and testing need (csrc/, the Cython sources,
tests/ with the C tests and the fuzz corpus, the build files) and every file the
README links (docs/bench.png, bench/RESULTS.md, ...), and nothing generated (Cython's
_core.c, a compiled extension, an environment). Prints what is missing or unwanted
and exits 1, else prints a one-line summary. The wheels workflow and
tests/test_packaging.py run it.
"""
import re
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# globs, relative to the checkout: each file they match must be in the sdist
REQUIRED = [
    "README.md", "LICENSE", "pyproject.toml", "setup.py", "MANIFEST.in", ".ci/run",
    "csrc/*.c", "csrc/*.h",
    "src/shmring/*.py", "src/shmring/*.pyx", "src/shmring/*.pxd", "src/shmring/bench/*.py",
    "src/shmring/workers/*.py",
    "tests/*.py", "tests/c/*.c", "tests/c/*.h", "tests/fuzz/*.c", "tests/fuzz/*.py", "tests/fuzz/corpus/*",
    "bench/*.py", "bench/*.c", "bench/*.h", "bench/*.md",
    "examples/*.py", "docs/*.md", "tools/*.sh", "tools/*.py", "tools/*.txt",
]
UNWANTED = re.compile(r"(^src/shmring/_core\.c$|\.so$|\.o$|\.pyc$|(^|/)\.venv[^/]*/|(^|/)__pycache__/|^build/)")


def readme_links(readme):
    """Relative link targets of a Markdown text: [text](path) and ![alt](path)."""
    targets = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", readme)
    return sorted({t for t in targets if "://" not in t and not t.startswith("mailto:")})


def required_files():
    files = {p.relative_to(ROOT).as_posix() for pattern in REQUIRED for p in ROOT.glob(pattern) if p.is_file()}
    files |= set(readme_links((ROOT / "README.md").read_text()))
    return sorted(files)


def check(sdist):
    with tarfile.open(sdist) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) != 1:
        return [f"more than one top directory: {sorted(tops)}"], 0
    inside = {name.split("/", 1)[1] for name in names if "/" in name}
    problems = [f"missing: {f}" for f in required_files() if f not in inside]
    problems += [f"unwanted: {f}" for f in sorted(inside) if UNWANTED.search(f)]
    return problems, len(inside)


def main(argv):
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    problems, count = check(argv[0])
    for line in problems:
        print(line)
    if problems:
        return 1
    print(f"sdist ok: {count} files, every file of {len(required_files())} required (README links included)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
