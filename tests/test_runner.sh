#!/usr/bin/env bash
# test_runner.sh - the test machinery itself (issue 12) must be able to fail:
#  - tests/run_tests.sh fails a test that exits non-zero whatever it printed (a summary of
#    no failures followed by exit 3), one that crashes before its summary, and passes a
#    clean one;
#  - tests/lib.sh's expect rejects a sanitizer report even when the exit status is the
#    expected 1, and makes the sanitizers exit with 66;
#  - need_shared skips when the shared data is absent, and fails with UF_REQUIRE_SHARED=1;
#    so does a C test's th_shared_dir (tests/harness.h), checked on test_imagenet.
. "$(dirname "$0")/lib.sh"
R=$(dirname "$0")/run_tests.sh

# --- the runner -------------------------------------------------------------------------
mk() { printf '#!/bin/sh\n%s\n' "$2" >"$T/$1"; chmod +x "$T/$1"; }
mk clean.sh  'echo "#SUMMARY 2 0 1"; exit 0'
mk exit3.sh  'echo "#SUMMARY 1 0 0"; exit 3'
mk crash.sh  'echo "half way"; kill -SEGV $$'
mk failed.sh 'echo "#SUMMARY 1 2 0"; exit 1'
"$R" "$T/clean.sh" >"$T/o" 2>&1; rc=$?
check "a clean test passes" '[ $rc -eq 0 ] && grep -q "tests: 2 passed, 0 failed, 1 skipped" "$T/o"'
"$R" "$T/clean.sh" "$T/exit3.sh" >"$T/o" 2>&1; rc=$?
check "a summary followed by exit 3 fails" '[ $rc -ne 0 ] && grep -q "tests: 3 passed, 1 failed" "$T/o" && grep -q "exit3.sh exited with status 3" "$T/o"'
"$R" "$T/crash.sh" >"$T/o" 2>&1; rc=$?
check "a crash before the summary fails" '[ $rc -ne 0 ] && grep -q "1 failed" "$T/o"'
"$R" "$T/failed.sh" >"$T/o" 2>&1; rc=$?
check "failures are counted once" '[ $rc -ne 0 ] && grep -q "tests: 1 passed, 2 failed" "$T/o"'

# --- lib.sh in a child shell, so its counters are its own ---------------------------------
cat >"$T/fakebin" <<'SH'
#!/bin/sh
echo "uniformaly: x.png: cannot read" >&2
echo "==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1" >&2
exit 1
SH
chmod +x "$T/fakebin"
cat >"$T/child.sh" <<SH
. "$PWD/tests/lib.sh"
expect 1 "an error run with a sanitizer report" "$T/fakebin"
echo "asan=\$ASAN_OPTIONS"
finish
SH
bash "$T/child.sh" >"$T/o" 2>&1; rc=$?
check "expect 1 rejects a sanitizer report" '[ $rc -ne 0 ] && grep -q "#SUMMARY 0 1 0" "$T/o"'
check "sanitizers exit with 66" 'grep -q "^asan=exitcode=66" "$T/o"'

cat >"$T/child2.sh" <<SH
. "$PWD/tests/lib.sh"
need_shared "real data" "$T/no/such/shared" && ok "ran"
finish
SH
UF_REQUIRE_SHARED=0 bash "$T/child2.sh" >"$T/o" 2>&1; rc=$?
check "missing shared data: a skip" '[ $rc -eq 0 ] && grep -q "#SUMMARY 0 0 1" "$T/o"'
UF_REQUIRE_SHARED=1 bash "$T/child2.sh" >"$T/o" 2>&1; rc=$?
check "missing shared data with UF_REQUIRE_SHARED=1: a failure" '[ $rc -ne 0 ] && grep -q "#SUMMARY 0 1 0" "$T/o"'

# --- a C test's shared-data probe -------------------------------------------------------
CT=${UF_TEST_DIR:-build/tests}/test_imagenet
if [ -x "$CT" ]; then
  UF_SHARED="$T/none" UF_REQUIRE_SHARED=0 "$CT" >"$T/o" 2>&1; rc=$?
  check "C test without shared data: skipped" '[ $rc -eq 0 ] && grep -q "^#SUMMARY 0 0 1" "$T/o"'
  UF_SHARED="$T/none" UF_REQUIRE_SHARED=1 "$CT" >"$T/o" 2>&1; rc=$?
  check "C test without shared data, UF_REQUIRE_SHARED=1: failed" '[ $rc -ne 0 ] && grep -q "^#SUMMARY 0 1 0" "$T/o"'
else
  bad "no $CT to check th_shared_dir with (set UF_TEST_DIR)"
fi

# --- make golden regenerates every kind of committed golden file --------------------------
# each entry of tests/data (a folder of one kind, or a file) must be written by a
# generator that `make golden` runs (the generator names its output path)
gens=$(make -s --no-print-directory golden-list 2>/dev/null)
if [ -z "$gens" ]; then
  bad "make golden-list printed nothing"
else
  missing=
  for e in tests/data/*; do
    k=$(basename "$e"); found=
    for g in $gens; do grep -qE "tests/data/$k|\"data\", \"$k\"" "scripts/$g.py" 2>/dev/null && found=1; done
    [ -n "$found" ] || missing="$missing $k"
  done
  check "make golden covers every kind of tests/data ($(ls tests/data | wc -l) kinds)" '[ -z "$missing" ] || { echo "  no generator for:$missing" >&2; false; }'
fi
finish
