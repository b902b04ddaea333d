#!/usr/bin/env bash
# detector.sh - the detector part of `make bench` (alone: `make bench-detector`): the
# detector's kernels and its command line, each beside a reference measured in the same
# run, at the same thread count; prints one table (bench/detector_table.py) and saves it to
# $BENCH_OUT/detector_table.txt, with the JSON lines in $BENCH_OUT/detector/results.jsonl.
#
# Parts (BENCH_DETECTOR_PARTS, comma-separated, default all four):
#   knn      uf__knn GFLOP/s beside cblas_sgemm of the same shape (build/bench_detector)
#   coreset  uf__coreset_greedy, 150,000 x 192 -> 10%, on clustered and on uniform synthetic
#            features, beside PatchCore's greedy loop in PyTorch on the same .npy file
#            (scripts/bench_coreset_ref.py, first BENCH_CORESET_ITERS steps, extrapolated)
#   bottle   `uniformaly fit` / `uniformaly predict` on MVTec bottle with the shared
#            ViT-Tiny beside scripts/ref_detector.py (PyTorch): images/s, image AUROC
#   memory   peak resident memory of `uniformaly fit` (/usr/bin/time) beside the budget
#            1.5 x raw bank bytes + model file + 256 MB, on bottle and on a bank of
#            >= BENCH_MEM_PATCHES foreground patches (bottle's train images repeated)
# A part that cannot run shows "skipped (reason)" in the table; the exit status is non-zero
# only if OUR side fails.
#
# Environment (all optional):
#   THREADS=2  BENCH_OUT=bench/out  BUILD=build  PYTHON=/usr/bin/python3  UF_BIN=./uniformaly
#   UF_SHARED=../shared (weights and data; relative to the repository root)
#   BENCH_CORESET_ITERS=60     PyTorch greedy steps run per variant (of 15,000)
#   BENCH_MEM_PATCHES=150000   foreground patches wanted in the large fit
#   BENCH_MEM_FIT_OPTS=""      extra `fit` options for the large fit, e.g. "--coreset 1"
#   BENCH_LEVELS=generic,avx2,avx512   levels of the per-level predict rows (default: every
#                              level this CPU has, bench/levels.sh); a row with a model fitted
#                              with --precision bf16 follows them
#   BENCH_PREDICT_ROUNDS=3     rounds of the per-level predict runs (best and median shown)
#   BENCH_OVERLAY_ROUNDS=5     alternating rounds of predict without / with --heatmap-dir
set -u

cd "$(dirname "$0")/.." || exit 1
THREADS=${THREADS:-2}
OUT=${BENCH_OUT:-bench/out}
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
BIN=${UF_BIN:-./uniformaly}
SHARED=${UF_SHARED:-../shared}
PARTS=${BENCH_DETECTOR_PARTS:-knn,coreset,bottle,memory}
ITERS=${BENCH_CORESET_ITERS:-60}
MEM_PATCHES=${BENCH_MEM_PATCHES:-150000}
PREDICT_ROUNDS=${BENCH_PREDICT_ROUNDS:-3}
OVERLAY_ROUNDS=${BENCH_OVERLAY_ROUNDS:-5}
read -r -a MEM_OPTS <<<"${BENCH_MEM_FIT_OPTS:-}"
BOTTLE=$SHARED/data/mvtec_ad/bottle
WEIGHTS=$SHARED/weights/vit_tiny_patch16_224.safetensors
FMT=$(command -v python3 || echo "$PYTHON") # formats records and the table (stdlib only)
NORM=(--mean 0.5,0.5,0.5 --std 0.5,0.5,0.5) # the shared ViT-Tiny's normalisation
DOUT=$OUT/detector         # data, logs and model files of this part
RES=$DOUT/results.jsonl    # this run's JSON lines
mkdir -p "$DOUT"
rm -f "$RES"
: >"$RES"

export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
# Passive OpenMP waiting for every OpenMP runtime alike (PyTorch included), as the CLI uses:
# spinning waiters starve the workers on a shared machine (see tools/main.c).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

say() { echo "bench-detector: $*" >&2; }
has() { case ",$PARTS," in *",$1,"*) return 0 ;; esac; return 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# A skipped measurement as a JSON line: skip BENCH NAME IMPL REASON
skip() {
    say "$2 $3: skipped ($4)"
    "$FMT" bench/detector_table.py skip --bench "$1" --name "$2" --impl "$3" \
        --reason "$4" >>"$RES"
}
load_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
t_start=$(date +%s)
OURS_FAILED=0

if ! make -s "$BUILD/bench_detector" >&2; then
    say "FAILED: cannot build $BUILD/bench_detector"
    exit 1
fi
. bench/levels.sh
LEVELS=$(bench_levels "$BIN") # kernel levels for the per-level predict rows
TORCH_SKIP=""
"$PYTHON" -c "import torch, numpy" 2>/dev/null ||
    TORCH_SKIP="python3-torch not importable by $PYTHON"

# ---- 1. kNN vs sgemm ----------------------------------------------------------------------
if has knn; then
    "$BUILD/bench_detector" --sgemm 2048 --threads "$THREADS" --out "$RES" || OURS_FAILED=1
    say "knn: 10,000 queries x 100,000 bank x D 384 (about 30 s)"
    "$BUILD/bench_detector" --knn 10000,100000,384,1 --name bank100k --threads "$THREADS" \
        --budget 4 --out "$RES" || OURS_FAILED=1
    say "knn: 784 queries x 16,384 bank x D 192 (predict-like)"
    "$BUILD/bench_detector" --knn 784,16384,192,1 --name predict --threads "$THREADS" \
        --budget 2 --out "$RES" || OURS_FAILED=1
fi

# ---- 2. coreset ---------------------------------------------------------------------------
if has coreset; then
    for mode in clustered uniform; do
        npy=$DOUT/coreset_$mode.npy
        say "coreset $mode: ours (writes $npy for the reference)"
        "$BUILD/bench_detector" --coreset "$mode" --n 150000 --dim 192 --fraction 0.1 \
            --data "$npy" --threads "$THREADS" --out "$RES" || OURS_FAILED=1
        if [ -n "$TORCH_SKIP" ]; then
            skip coreset "$mode" torch "$TORCH_SKIP"
        elif [ ! -f "$npy" ]; then
            skip coreset "$mode" torch "no $npy"
        else
            say "coreset $mode: PyTorch, $ITERS steps per variant"
            "$PYTHON" scripts/bench_coreset_ref.py --data "$npy" --name "$mode" \
                --fraction 0.1 --iters "$ITERS" --dist patchcore,inplace \
                --threads "$THREADS" --out "$RES" >/dev/null \
                || skip coreset "$mode" torch "scripts/bench_coreset_ref.py failed"
        fi
        rm -f "$npy" # 115 MB, regenerated each run
    done
fi

# ---- 3. + 4. fit / predict on bottle and fit memory ----------------------------------------
CLI_SKIP=""
if [ ! -d "$BOTTLE/train/good" ] || [ ! -d "$BOTTLE/test" ]; then
    CLI_SKIP="no MVTec bottle at $BOTTLE"
elif [ ! -f "$WEIGHTS" ]; then
    CLI_SKIP="no weights at $WEIGHTS"
elif ! "$BIN" fit --help >/dev/null 2>&1; then
    CLI_SKIP="$BIN has no working 'fit' verb"
elif [ ! -x /usr/bin/time ]; then
    CLI_SKIP="/usr/bin/time missing (apt-get install -y time)"
fi

# Run `uniformaly fit` on a folder under /usr/bin/time; write one JSON line.
#   fit_run NAME DIR [extra fit options...]
fit_run() {
    local name=$1 dir=$2
    shift 2
    local model=$DOUT/$name.ufm log=$DOUT/fit_$name.log tm=$DOUT/fit_$name.time
    rm -f "$model" "$DOUT/info_$name.json"
    local t0 t1 rc
    t0=$(now)
    /usr/bin/time -f "maxrss_kb=%M wall_s=%e user_s=%U sys_s=%S" -o "$tm" \
        "$BIN" fit --backbone "$WEIGHTS" "${NORM[@]}" --threads "$THREADS" "$@" \
        --out "$model" "$dir" >"$log" 2>&1
    rc=$?
    t1=$(now)
    if [ $rc != 0 ] || [ ! -f "$model" ]; then
        say "fit $name FAILED (exit $rc), see $log:"
        tail -n 3 "$log" >&2
        OURS_FAILED=1
    else
        "$BIN" info "$model" --json >"$DOUT/info_$name.json" 2>>"$log" || OURS_FAILED=1
    fi
    "$FMT" bench/detector_table.py fit --name "$name" --dir "$dir" --rc "$rc" \
        --log "$log" --time "$tm" --model "$model" --info "$DOUT/info_$name.json" \
        --backbone "$WEIGHTS" --wall "$(elapsed "$t0" "$t1")" >>"$RES"
}

if has bottle || has memory; then
    if [ -n "$CLI_SKIP" ]; then
        has bottle && skip bottle fit ours "$CLI_SKIP"
        has memory && skip memory bottle ours "$CLI_SKIP"
    else
        # fit on bottle (also the memory figure of a small bank)
        say "bottle: ours fit ($(ls "$BOTTLE/train/good" | wc -l) images)"
        fit_run bottle "$BOTTLE/train/good"
        if has bottle && [ -f "$DOUT/bottle.ufm" ]; then
            say "bottle: ours predict"
            t0=$(now)
            "$BIN" predict "$DOUT/bottle.ufm" "$BOTTLE/test" --threads "$THREADS" --json \
                >"$DOUT/predict_bottle.json" 2>"$DOUT/predict_bottle.log"
            rc=$?
            t1=$(now)
            if [ $rc != 0 ]; then
                say "predict FAILED (exit $rc)"
                tail -n 3 "$DOUT/predict_bottle.log" >&2
                OURS_FAILED=1
            fi
            "$FMT" bench/detector_table.py predict --name bottle --rc "$rc" \
                --json "$DOUT/predict_bottle.json" --log "$DOUT/predict_bottle.log" \
                --test "$BOTTLE/test" --wall "$(elapsed "$t0" "$t1")" >>"$RES"
            # the same whole-process predict at each kernel level (UF_CPU; issue 11) and with
            # a model fitted in BF16 (--precision bf16, the best level), in PREDICT_ROUNDS
            # rounds, the runs alternating within each round: images/s of the best and of
            # the median round
            if fit_run bottle_bf16 "$BOTTLE/train/good" --precision bf16 && [ -f "$DOUT/bottle_bf16.ufm" ]; then
                RUNS="${LEVELS//,/ } bf16"
            else
                RUNS="${LEVELS//,/ }"
            fi
            declare -A WALLS=() RCS=()
            for r in $(seq 1 "$PREDICT_ROUNDS"); do
                for l in $RUNS; do
                    say "bottle: ours predict ($l) round $r"
                    model=$DOUT/bottle.ufm lv=(UF_CPU="$l")
                    [ "$l" = bf16 ] && model=$DOUT/bottle_bf16.ufm lv=() # the best level
                    t0=$(now)
                    env "${lv[@]}" "$BIN" predict "$model" "$BOTTLE/test" --threads "$THREADS" \
                        --json >"$DOUT/predict_bottle_$l.json" 2>"$DOUT/predict_bottle_$l.log"
                    rc=$?
                    t1=$(now)
                    [ $rc = 0 ] || { OURS_FAILED=1; RCS[$l]=$rc; }
                    WALLS[$l]="${WALLS[$l]:-} $(elapsed "$t0" "$t1")"
                done
            done
            for l in $RUNS; do
                read -r -a w <<<"${WALLS[$l]}"
                "$FMT" bench/detector_table.py predict --name "bottle_$l" --rc "${RCS[$l]:-0}" \
                    --json "$DOUT/predict_bottle_$l.json" --log "$DOUT/predict_bottle_$l.log" \
                    --test "$BOTTLE/test" --wall "${w[0]}" --walls "${WALLS[$l]}" >>"$RES"
            done
            # the cost of overlays (issue 13: at most 1.5x the scoring time): the same run
            # with --heatmap-dir, after a calibration so the overlays are the annotated ones
            "$BIN" calibrate "$DOUT/bottle.ufm" --normal --fpr 0.05 --quiet --threads "$THREADS" \
                --out "$DOUT/bottle_cal.ufm" "$BOTTLE/train/good" 2>/dev/null
            # wall time, and CPU time (user + system, bash's `time`), which a machine shared
            # with other jobs disturbs less; OVERLAY_ROUNDS rounds, the two runs alternating,
            # so the ratio is given by the best and by the median round
            TIMEFORMAT='%U %S'
            orc=0
            rounds=""
            for r in $(seq 1 "$OVERLAY_ROUNDS"); do
                rm -rf "$DOUT/heatmaps"
                t2=$(now)
                c1=$( { time "$BIN" predict "$DOUT/bottle_cal.ufm" "$BOTTLE/test" --threads "$THREADS" --quiet >/dev/null 2>&1; } 2>&1 )
                t3=$(now)
                c2=$( { time "$BIN" predict "$DOUT/bottle_cal.ufm" "$BOTTLE/test" --threads "$THREADS" --quiet \
                    --heatmap-dir "$DOUT/heatmaps" >/dev/null 2>"$DOUT/overlays.log"; } 2>&1 ) || orc=$?
                t4=$(now)
                rounds="$rounds $t2 $t3 $t4 $c1 $c2"
            done
            unset TIMEFORMAT
            # per round: t2 t3 t4 user1 sys1 user2 sys2
            OVERLAY_LINE=$(echo "$rounds" | awk -v R="$OVERLAY_ROUNDS" -v n="$(ls "$DOUT/heatmaps" 2>/dev/null | wc -l)" '
                function med(a, k,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
                                                    if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                                return a[int((k + 1) / 2)] }
                { for (r = 0; r < R; r++) { o = r * 7;
                    s0 = $(o + 2) - $(o + 1); s1 = $(o + 3) - $(o + 2);
                    w[r + 1] = s1 / s0; c[r + 1] = ($(o + 6) + $(o + 7)) / ($(o + 4) + $(o + 5));
                    if (r == 0 || s0 < b0) b0 = s0; if (r == 0 || s1 < b1) b1 = s1 } }
                END { wb = w[1]; cb = c[1]; for (r = 2; r <= R; r++) { if (w[r] < wb) wb = w[r]; if (c[r] < cb) cb = c[r] }
                      printf "overlays: predict on bottle test %.2f s, with --heatmap-dir %.2f s (%d PNGs; best of %d alternating rounds): ratio %.2fx wall (best round %.2fx, median %.2fx), CPU best %.2fx, median %.2fx (goal <= 1.5x)", b0, b1, n, R, b1 / b0, wb, med(w, R), cb, med(c, R) }')
            [ $orc = 0 ] || { OVERLAY_LINE="overlays: predict --heatmap-dir FAILED (exit $orc)"; OURS_FAILED=1; }
            say "$OVERLAY_LINE"
        fi
        # a bank of >= MEM_PATCHES foreground patches: bottle's train images repeated
        if has memory; then
            per_img=$("$FMT" bench/detector_table.py patches-per-image --res "$RES" --name bottle)
            if [ -z "$per_img" ]; then
                skip memory large ours "the bottle fit gave no patch count"
            else
                n_img=$(ls "$BOTTLE/train/good" | wc -l)
                reps=$(( (MEM_PATCHES + per_img * n_img - 1) / (per_img * n_img) ))
                big=$DOUT/bottle_x$reps
                rm -rf "$DOUT"/bottle_x*
                mkdir -p "$big"
                src=$(cd "$BOTTLE/train/good" && pwd) # absolute, for the symlinks
                for r in $(seq 1 "$reps"); do
                    for f in "$src"/*; do ln -s "$f" "$big/r${r}_${f##*/}"; done
                done
                say "memory: ours fit on bottle train x $reps ($(( reps * n_img )) images)"
                fit_run large "$big" "${MEM_OPTS[@]}"
                rm -rf "$big"
            fi
        fi
    fi
fi

# ---- 3. the PyTorch reference pipeline ------------------------------------------------------
if has bottle; then
    if [ ! -d "$BOTTLE/train/good" ] || [ ! -d "$BOTTLE/test" ]; then
        skip bottle fit torch "no MVTec bottle at $BOTTLE"
    elif [ ! -f "$WEIGHTS" ]; then
        skip bottle fit torch "no weights at $WEIGHTS"
    elif [ -n "$TORCH_SKIP" ]; then
        skip bottle fit torch "$TORCH_SKIP"
    elif [ ! -f scripts/ref_detector.py ]; then
        skip bottle fit torch "no scripts/ref_detector.py"
    else
        say "bottle: PyTorch reference (scripts/ref_detector.py, ~2-3 minutes)"
        if "$PYTHON" scripts/ref_detector.py --weights "$WEIGHTS" --mean 0.5 --std 0.5 \
                --train "$BOTTLE/train/good" --test "$BOTTLE/test" --coreset 0.1 \
                --no-pixel-maps --threads "$THREADS" \
                >"$DOUT/ref_bottle.json" 2>"$DOUT/ref_bottle.log"; then
            "$FMT" bench/detector_table.py ref --json "$DOUT/ref_bottle.json" >>"$RES"
        else
            skip bottle fit torch \
                "scripts/ref_detector.py failed: $(tail -n 1 "$DOUT/ref_bottle.log" | cut -c1-100)"
        fi
    fi
fi

# cblas_sgemm 2048^3 once more (the table keeps the better of the two: the machine is shared)
if has knn; then
    "$BUILD/bench_detector" --sgemm 2048 --threads "$THREADS" --out "$RES" || OURS_FAILED=1
fi

# ---- the table ----------------------------------------------------------------------------
export RES THREADS load_start ITERS PARTS
export BENCH_MEM_PATCHES=$MEM_PATCHES BENCH_MEM_FIT_OPTS=${BENCH_MEM_FIT_OPTS:-}
export ELAPSED=$(( $(date +%s) - t_start ))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
CPU=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
grep -qw avx512f /proc/cpuinfo 2>/dev/null && CPU="$CPU, AVX-512"
CPU="$CPU, $(nproc 2>/dev/null || echo '?') cores online"
export LOAD_END CPU
"$FMT" bench/detector_table.py table | tee "$OUT/detector_table.txt"
if [ -n "${OVERLAY_LINE:-}" ]; then echo "$OVERLAY_LINE" | tee -a "$OUT/detector_table.txt"; fi

if [ "$OURS_FAILED" != 0 ]; then
    say "FAILED: part of our benchmark did not complete (see the lines above)"
    exit 1
fi
exit 0
