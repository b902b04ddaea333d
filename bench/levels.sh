# levels.sh - sourced by bench/run.sh and bench/detector.sh: which of our kernel levels to
# time, so both parts of `make bench` measure the same ones (one definition, not two).
# bench_levels BIN prints BENCH_LEVELS when set, else every level this CPU runs as itself
# (`UF_CPU=<level> BIN --version` names it), comma-separated. avx512bf16 runs the avx512 FP32
# kernels and BF16 natively: run.sh times it with --precisions fp32,bf16.
bench_levels() {
    if [ -n "${BENCH_LEVELS:-}" ]; then
        echo "$BENCH_LEVELS"
        return
    fi
    local l out=""
    for l in generic avx2 avx512 avx512bf16; do
        [ "$(UF_CPU=$l "$1" --version 2>/dev/null | sed -n 's/^kernels: //p')" = "$l" ] &&
            out="$out${out:+,}$l"
    done
    echo "$out"
}
