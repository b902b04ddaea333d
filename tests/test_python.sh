#!/usr/bin/env bash
# test_python.sh - the Python package as a user installs it (issue 14): a virtual
# environment over Debian's packages, `pip install --no-index --no-build-isolation ./python`
# (no package index), then python/tests (pytest) run against the installed package, which
# finds the shared library through UNIFORMALY_LIB. The pytest counts become this test's
# counts; skips (e.g. bottle without ../shared) are shown with their reason. Skipped
# visibly when python3-numpy / python3-pytest / python3-venv are missing (CI installs
# them: .ci/run). Needs UF_BIN, UF_BUILD; UF_PYTHON (default /usr/bin/python3).
. "$(dirname "$0")/lib.sh"
BUILD=${UF_BUILD:-build}
PY=${UF_PYTHON:-$PY}
skip_all() { skp "python package tests: $1"; finish; exit; }

LIB=$(cd "$BUILD" && pwd)/libuniformaly.so.2
if readelf -d "$LIB" 2>/dev/null | grep -qE 'lib(a|t|ub)san'; then skip_all "$LIB is a sanitizer build"; fi
command -v "$PY" >/dev/null || skip_all "$PY not found"
"$PY" -c 'import numpy, pytest' 2>/dev/null || skip_all "python3-numpy / python3-pytest not installed"
"$PY" -c 'import ensurepip, venv' 2>/dev/null || skip_all "python3-venv not installed"

# pip builds inside the source folder (build/, *.egg-info): give it a copy, not the tree
cp -r python "$T/src"
if "$PY" -m venv --system-site-packages "$T/v" >"$T/log" 2>&1 &&
   "$T/v/bin/pip" install -q --no-index --no-build-isolation "$T/src" >>"$T/log" 2>&1; then
  ok "pip install --no-index --no-build-isolation ./python into a venv"
else
  bad "venv install: $(tail -5 "$T/log")"; finish; exit
fi
where=$(cd "$T" && UNIFORMALY_LIB="$LIB" "$T/v/bin/python" -c 'import uniformaly; print(uniformaly.__file__)' 2>&1)
case "$where" in
  "$T/v/"*) ok "the venv imports the installed package" ;;
  *) bad "the venv imports uniformaly from: $where" ;;
esac
(cd "$T" && UNIFORMALY_LIB=/nonexistent/lib.so "$T/v/bin/python" -c 'import uniformaly' >"$T/err" 2>&1)
if grep -q "UNIFORMALY_LIB" "$T/err"; then ok "a missing library is an ImportError naming UNIFORMALY_LIB"
else bad "missing library: $(tail -2 "$T/err")"; fi

# pytest from outside the source tree, so `import uniformaly` is the installed copy
ROOT=$(pwd)
case $SHARED in /*) SHARED_ABS=$SHARED ;; *) SHARED_ABS=$ROOT/$SHARED ;; esac
(cd "$T" && UNIFORMALY_LIB="$LIB" UF_BIN="$BIN" UF_ROOT="$ROOT" UF_SHARED="$SHARED_ABS" OMP_WAIT_POLICY=passive \
  "$T/v/bin/python" -m pytest -q -rs -p no:cacheprovider "$ROOT/python/tests") >"$T/out" 2>&1
grep -E "^(FAILED|ERROR|SKIPPED)|Error|assert" "$T/out" | head -40 >&2
line=$(tail -n 1 "$T/out")
echo "  pytest: $line" >&2
n() { printf '%s\n' "$line" | grep -oE "[0-9]+ $1" | grep -oE "^[0-9]+" || echo 0; }
pass=$((pass + $(n passed))); fail=$((fail + $(n failed) + $(n error))); skip=$((skip + $(n skipped)))
if [ "$(n passed)" -eq 0 ]; then bad "pytest ran no test: $(tail -5 "$T/out")"; fi
finish
