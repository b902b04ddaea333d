# tests/lib.sh - the prelude every shell test sources (`. "$(dirname "$0")/lib.sh"`), so
# they share one definition of how a check passes (issue 12; each test used to copy its own):
#  - BIN (UF_BIN, default ./uniformaly), SHARED (UF_SHARED, default ../shared), PY, and a
#    scratch folder T removed on exit;
#  - ok / bad / skp count checks, check NAME EXPR evaluates EXPR, finish prints the
#    "#SUMMARY pass fail skip" line tests/run_tests.sh adds up and sets the exit status;
#  - a sanitizer report is never a pass: the sanitizers exit with status 66 here (not 1,
#    which a check expecting a runtime error would accept), and expect / no_sanitizer_report
#    also reject any "...Sanitizer" or "runtime error:" line on stderr;
#  - need_shared NAME PATH...: true when every PATH exists; otherwise a skip, or a failure
#    when UF_REQUIRE_SHARED=1 (CI, where ../shared must be present: .ci/run).
set -u
BIN=${UF_BIN:-./uniformaly}
SHARED=${UF_SHARED:-../shared}
PY=/usr/bin/python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0; skip=0
# the user's own settings come last, so they win
export ASAN_OPTIONS="exitcode=66${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="exitcode=66${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export LSAN_OPTIONS="exitcode=66${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

ok()  { pass=$((pass+1)); if [ $# -gt 0 ]; then echo "  ok   $1" >&2; fi; return 0; }
bad() { fail=$((fail+1)); echo "  FAIL $1" >&2; return 1; }
skp() { skip=$((skip+1)); echo "  skip $1" >&2; return 0; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

# no_sanitizer_report NAME FILE: bad (and false) when FILE holds a sanitizer report
no_sanitizer_report() {
  if grep -q -e "Sanitizer" -e "runtime error:" "$2"; then
    bad "$1: $(grep -m1 -e Sanitizer -e "runtime error:" "$2")"; return 1
  fi
  return 0
}

# expect STATUS NAME CMD...: run CMD (stdout in $T/out, stderr in $T/err); its exit status
# must be STATUS, an error must say "uniformaly" on stderr, and no sanitizer may report
expect() {
  local want=$1 name=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  no_sanitizer_report "$name" "$T/err" || return 1
  if [ "$rc" -ne "$want" ]; then bad "$name (exit $rc, want $want): $(head -c 400 "$T/err")"; return 1; fi
  if [ "$want" -ne 0 ] && ! grep -q "uniformaly" "$T/err"; then bad "$name: no message on stderr"; return 1; fi
  ok "$name"
}

need_shared() {
  local name=$1; shift
  local p
  for p in "$@"; do
    [ -e "$p" ] && continue
    if [ "${UF_REQUIRE_SHARED:-0}" = 1 ]; then
      bad "$name: $p not found, and UF_REQUIRE_SHARED=1 says the shared data must be there"
    else
      skp "$name ($p not found; set UF_SHARED)"
    fi
    return 1
  done
  return 0
}

finish() {
  echo "#SUMMARY $pass $fail $skip"
  [ "$fail" -eq 0 ]
}
