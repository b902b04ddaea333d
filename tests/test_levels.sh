#!/usr/bin/env bash
# test_levels.sh - the kernel and forward tests (DINOv2 too) at every instruction-set level this CPU has
# (issue 11), forced with UF_CPU: the ordinary run covers the best level only. A level the
# CPU lacks is reported as SKIP (it cannot run here; test_qemu.sh emulates older CPUs).
# avx512bf16, the best level here, is what the ordinary run tests (native BF16); the levels
# below it run BF16 emulated, so test_forward's BF16 check covers both. Needs UF_BIN (to ask
# which levels exist) and UF_TEST_DIR (the built test binaries; make test sets both).
. "$(dirname "$0")/lib.sh"
DIR=${UF_TEST_DIR:-build/tests}
for lvl in generic avx2 avx512; do
  got=$(UF_CPU=$lvl "$BIN" --version 2>/dev/null | sed -n 's/^kernels: //p')
  if [ "$got" != "$lvl" ]; then
    skp "level $lvl: this CPU lacks it (runs $got)"; continue
  fi
  for t in test_simd test_kernels test_forward test_dinov2; do
    out=$(UF_CPU=$lvl "$DIR/$t" 2>&1)
    line=$(printf '%s\n' "$out" | grep '^#SUMMARY' | tail -n 1)
    if [ -z "$line" ]; then
      printf '%s\n' "$out" | tail -n 5; bad "$t at UF_CPU=$lvl: crashed"; continue
    fi
    read -r _ p f s <<<"$line"
    pass=$((pass+p)); fail=$((fail+f)); skip=$((skip+s))
    if [ "$f" -ne 0 ]; then printf '%s\n' "$out" | grep -B3 FAIL; fi
    echo "  $t at UF_CPU=$lvl: $p passed, $f failed, $s skipped"
  done
done
finish
