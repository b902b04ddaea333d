#!/usr/bin/env bash
# Run libFuzzer harnesses (built by `make fuzz-build` into $FUZZ_BUILD) one after the
# other, each for $FUZZ_SECONDS seconds, and print one summary line per target:
#   fuzz <target>: <seconds> s, <execs> executions, cov <N> ft <M>, corpus <K>, <result>
# Usage: fuzz/run.sh target... (targets: fuzz/fuzz_<target>.c). The working corpus is
# $FUZZ_BUILD/corpus/<target> (new inputs go there), seeded from fuzz/corpus/<target> and
# fuzz/regress/<target>; crash/leak/timeout inputs go to $FUZZ_BUILD/artifacts/<target>/.
# Exit status 1 if any target found something.
set -u
B=${FUZZ_BUILD:-build-fuzz}
SECS=${FUZZ_SECONDS:-600}
rc=0
declare -A MAXLEN=([image]=262144 [pth]=131072 [safetensors]=65536 [checkpoint]=131072
                   [model]=65536 [dataset]=65536 [cli]=8192)
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
summary=()
for t in "$@"; do
  bin=$B/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz: $bin not built" >&2; rc=1; continue; }
  mkdir -p "$B/corpus/$t" "$B/artifacts/$t" "$B/logs"
  seeds=(fuzz/corpus/$t)
  [ -d fuzz/regress/$t ] && seeds+=(fuzz/regress/$t)
  log=$B/logs/$t.log
  start=$(date +%s)
  # memory bounds low enough that a memory bomb (a small input that makes the library
  # allocate or touch hundreds of MB) is a finding, not a slow success
  "$bin" "$B/corpus/$t" "${seeds[@]}" -max_len="${MAXLEN[$t]:-65536}" \
    -rss_limit_mb="${FUZZ_RSS_MB:-512}" -malloc_limit_mb="${FUZZ_MALLOC_MB:-256}" -timeout=10 -max_total_time="$SECS" -print_final_stats=1 \
    -artifact_prefix="$B/artifacts/$t/" >"$log" 2>&1
  st=$?
  secs=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1)
  covl=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]* ft: [0-9]*' | tail -n1)
  ncorp=$(ls "$B/corpus/$t" | wc -l)
  if [ $st -eq 0 ]; then res=ok; else res="FOUND SOMETHING (status $st, see $log)"; rc=1; fi
  line="fuzz $t: ${secs} s, ${execs:-?} executions, ${covl:-cov ?}, corpus $ncorp, $res"
  echo "$line"
  summary+=("$line")
done
echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit $rc
