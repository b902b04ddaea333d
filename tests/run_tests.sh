#!/usr/bin/env bash
# Run every test binary given on the command line, echo their output, and close with one
# line "tests: N passed, N failed, N skipped" summed over all of them. Exit 1 if any test
# failed or a binary crashed.
#
# A binary passes only if it prints its "#SUMMARY pass fail skip" line AND exits with
# status 0: a test that exits non-zero (a sanitizer report, a crash, exit(3) after its
# summary) counts as one more failure whatever it printed.
set -u
pass=0; fail=0; skip=0; crashed=0
for t in "$@"; do
  name=$(basename "$t")
  echo "== $name"
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out" | grep -v '^#SUMMARY'
  line=$(printf '%s\n' "$out" | grep '^#SUMMARY' | tail -n 1)
  if [ -z "$line" ]; then
    echo "!! $name exited with status $rc before finishing (crash?)"
    crashed=$((crashed+1)); fail=$((fail+1)); continue
  fi
  read -r _ p f s <<<"$line"
  pass=$((pass+p)); fail=$((fail+f)); skip=$((skip+s))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "!! $name exited with status $rc after a summary of no failures"
    crashed=$((crashed+1)); fail=$((fail+1))
  fi
done
echo "tests: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] && [ "$crashed" -eq 0 ]
