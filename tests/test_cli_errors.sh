#!/usr/bin/env bash
# test_cli_errors.sh - how every verb of `uniformaly` fails (issue 5), table-driven:
#  - usage errors (unknown flag, a flag missing its value, a value out of range: negative,
#    zero where invalid, not a number, NaN, Inf, huge, beyond float; missing required
#    arguments) exit 2, print "uniformaly VERB: ..." and the "Try 'uniformaly VERB --help'"
#    hint on stderr, and nothing on stdout;
#  - runtime failures (missing, corrupt or truncated files, unwritable outputs) exit 1 with
#    exactly one stderr line "uniformaly: ..." naming the file at fault, nothing on stdout,
#    and leave no output file behind.
# Complements test_cli.sh, test_detector_cli.sh and test_eval.sh (which test the verbs'
# successful runs). Uses the tiny golden ViT of tests/data/golden; needs UF_BIN.
. "$(dirname "$0")/lib.sh"

# U VERB NAME ARGS...: a usage error of VERB whose message names what is wrong: the first
# word of NAME (the option, e.g. "--mean", or the words of a missing-argument case)
U() {
  local verb=$1 name=$2; shift 2
  local needle=${name%% *}
  case $needle in no) needle=${name#no };; unknown|stray) needle="$1";; esac
  "$BIN" "$verb" "$@" >"$T/out" 2>"$T/err" </dev/null; local rc=$?
  no_sanitizer_report "$verb: $name" "$T/err" || return
  if [ "$rc" -ne 2 ]; then bad "$verb: $name: exit $rc, want 2: $(head -c 300 "$T/err")"; return; fi
  if ! grep -q "^uniformaly $verb: " "$T/err" || ! grep -q "Try 'uniformaly $verb --help'" "$T/err"; then
    bad "$verb: $name: no usage message: $(head -c 300 "$T/err")"; return; fi
  if ! head -n 1 "$T/err" | grep -qiF -- "$needle"; then
    bad "$verb: $name: the message does not name '$needle': $(head -n 1 "$T/err")"; return; fi
  if [ -s "$T/out" ]; then bad "$verb: $name: output on stdout: $(head -c 200 "$T/out")"; return; fi
  ok
}
# R VERB NAME NEEDLE ARGS...: a runtime failure of VERB whose one-line message names NEEDLE
R() {
  local verb=$1 name=$2 needle=$3; shift 3
  "$BIN" "$verb" "$@" >"$T/out" 2>"$T/err" </dev/null; local rc=$?
  no_sanitizer_report "$verb: $name" "$T/err" || return
  if [ "$rc" -ne 1 ]; then bad "$verb: $name: exit $rc, want 1: $(head -c 300 "$T/err")"; return; fi
  # one error line; advisory warnings (e.g. the centre crop discarding part of an image)
  # may precede it
  local n; n=$(grep -vc '^uniformaly: warning: ' "$T/err")
  if [ "$n" -ne 1 ]; then bad "$verb: $name: $n lines on stderr: $(head -c 500 "$T/err")"; return; fi
  if ! grep -q "^uniformaly: " "$T/err" || ! grep -qF -- "$needle" "$T/err"; then
    bad "$verb: $name: message does not name '$needle': $(cat "$T/err")"; return; fi
  if [ -s "$T/out" ]; then bad "$verb: $name: output on stdout: $(head -c 200 "$T/out")"; return; fi
  ok
}

M1=tests/data/golden/m1.safetensors
D=tests/data/detector
IMG=$D/test_good.png
BB="--backbone $M1 --heads 3"
PRE="--resize 72 --crop 64 --layers 2-4 --quiet"
printf 'not an image at all' >"$T/junk.png"
printf 'not a checkpoint at all' >"$T/junk.safetensors"
printf 'UFMODEL' >"$T/short.ufm"
printf 'garbage' >"$T/junk.ufm"
mkdir "$T/dir.png"
"$BIN" fit $BB $PRE --out "$T/m.ufm" $D/train_0.png $D/train_1.png >/dev/null 2>&1 ||
  bad "setup: fit failed"
head -c $(( $(wc -c <"$T/m.ufm") - 100 )) "$T/m.ufm" >"$T/trunc.ufm"
MISSING=$T/missing
RO=$T/no/such/dir

# ---- the program itself -----------------------------------------------------------------
"$BIN" >"$T/out" 2>"$T/err"; [ $? -eq 2 ] && grep -q "Usage" "$T/err" && ok || bad "no verb: exit 2 with usage"
"$BIN" frobnicate >"$T/out" 2>"$T/err"; [ $? -eq 2 ] && grep -q "unknown verb" "$T/err" && ok || bad "unknown verb"

# ---- usage errors every verb shares ------------------------------------------------------
for v in fit predict info demo eval classify features; do
  U $v "unknown flag"       --no-such-flag
  U $v "unknown short flag" -x
done

# common backbone / preprocessing options, on the verbs that take them
for v in fit demo eval classify features; do
  X=; [ $v = demo ] && X="--out $T/dd"   # a wrongly accepted demo must not write here
  for opt in --backbone --heads --resize --crop --interp --mean --std --threads --batch; do
    U $v "$opt without a value" $X $opt
  done
  U $v "--heads 0"          $X --heads 0
  U $v "--heads x"          $X --heads x
  U $v "--heads 257"        $X --heads 257
  U $v "--resize -1"        $X --resize -1
  U $v "--resize huge"      $X --resize 99999999999999999999
  U $v "--crop nan"         $X --crop nan
  U $v "--crop 1.5"         $X --crop 1.5
  U $v "--crop empty"       $X --crop ""
  U $v "--interp cubic"     $X --interp cubic
  U $v "--mean 2 values"    $X --mean 0.5,0.5
  U $v "--mean 4 values"    $X --mean 0.5,0.5,0.5,0.5
  U $v "--mean nan"         $X --mean nan,0,0
  U $v "--mean inf"         $X --mean 0,inf,0
  U $v "--mean beyond float" $X --mean 1e39,0,0
  U $v "--std 0"            $X --std 0,1,1
  U $v "--std -1"           $X --std 1,-1,1
  U $v "--std beyond float" $X --std 1,1,1e39
  U $v "--threads -1"       $X --threads -1
  U $v "--threads x"        $X --threads x
  U $v "--threads 1e9"      $X --threads 1000000000
  U $v "--batch 0"          $X --batch 0
  U $v "--batch 257"        $X --batch 257
done

# method options (fit, demo, eval)
for v in fit demo eval; do
  X=; [ $v = demo ] && X="--out $T/dd"
  for opt in --layers --bpm-kernel --bpm-lambda --coreset --sampler --seed --knn --topk --sigma; do
    U $v "$opt without a value" $X $opt
  done
  U $v "--layers 0-3"       $X --layers 0-3
  U $v "--layers 4-2"       $X --layers 4-2
  U $v "--layers x"         $X --layers x
  U $v "--bpm-kernel 4"     $X --bpm-kernel 4
  U $v "--bpm-kernel -1"    $X --bpm-kernel -1
  U $v "--bpm-lambda 2"     $X --bpm-lambda 2
  U $v "--bpm-lambda nan"   $X --bpm-lambda nan
  U $v "--coreset 0"        $X --coreset 0
  U $v "--coreset 1.5"      $X --coreset 1.5
  U $v "--coreset nan"      $X --coreset nan
  U $v "--coreset -0.1"     $X --coreset -0.1
  U $v "--sampler best"     $X --sampler best
  U $v "--seed -1"          $X --seed -1
  U $v "--seed x"           $X --seed x
  U $v "--seed 2^64"        $X --seed 18446744073709551616
  U $v "--knn 0"            $X --knn 0
  U $v "--knn 1025"         $X --knn 1025
  U $v "--topk 0"           $X --topk 0
  U $v "--topk inf"         $X --topk inf
  U $v "--sigma -1"         $X --sigma -1
  U $v "--sigma nan"        $X --sigma nan
  U $v "--sigma 1e300"      $X --sigma 1e300
done

# ---- fit -----------------------------------------------------------------------------------
U fit "--out without a value"       $BB $PRE $IMG --out
U fit "--shots without a value"     $BB $PRE --out "$T/x.ufm" $IMG --shots
U fit "--shots 0"                   $BB $PRE --out "$T/x.ufm" --shots 0 $IMG
U fit "--shots x"                   $BB $PRE --out "$T/x.ufm" --shots x $IMG
U fit "--threshold nan"             $BB $PRE --out "$T/x.ufm" --threshold nan $IMG
U fit "--threshold inf"             $BB $PRE --out "$T/x.ufm" --threshold inf $IMG
U fit "--threshold x"               $BB $PRE --out "$T/x.ufm" --threshold x $IMG
UNIFORMALY_BACKBONE=$MISSING.st R fit "no --backbone, bundled one missing" "$MISSING.st" $PRE --out "$T/x.ufm" $IMG
U fit "no --out"                    $BB $PRE $IMG
U fit "no images"                   $BB $PRE --out "$T/x.ufm"
R fit "missing image"       "$MISSING.png"       $BB $PRE --out "$T/x.ufm" "$MISSING.png"
R fit "corrupt image"       junk.png             $BB $PRE --out "$T/x.ufm" $IMG "$T/junk.png"
R fit "missing backbone"    "$MISSING.safetensors" --backbone "$MISSING.safetensors" $PRE --out "$T/x.ufm" $IMG
R fit "corrupt backbone"    junk.safetensors     --backbone "$T/junk.safetensors" $PRE --out "$T/x.ufm" $IMG
R fit "unwritable --out"    "$RO/x.ufm"          $BB $PRE --out "$RO/x.ufm" $IMG
R fit "missing list file"   "$MISSING.txt"       $BB $PRE --out "$T/x.ufm" "$MISSING.txt"
[ ! -e "$T/x.ufm" ] && ok || bad "fit: a failed fit left $T/x.ufm"

# ---- predict ------------------------------------------------------------------------------
for opt in --threshold --heatmap-dir --heatmap-range --backbone --batch --threads; do
  U predict "$opt without a value" "$T/m.ufm" $IMG $opt
done
U predict "--threshold nan"         "$T/m.ufm" --threshold nan $IMG
U predict "--threshold -inf"        "$T/m.ufm" --threshold -inf $IMG
U predict "--threshold x"           "$T/m.ufm" --threshold x $IMG
U predict "--heatmap-range 1,0"     "$T/m.ufm" --heatmap-range 1,0 $IMG
U predict "--heatmap-range nan,1"   "$T/m.ufm" --heatmap-range nan,1 $IMG
U predict "--heatmap-range 1"       "$T/m.ufm" --heatmap-range 1 $IMG
U predict "--batch 0"               "$T/m.ufm" --batch 0 $IMG
U predict "--batch x"               "$T/m.ufm" --batch x $IMG
U predict "--threads -2"            "$T/m.ufm" --threads -2 $IMG
U predict "--threads 99999"         "$T/m.ufm" --threads 99999 $IMG
U predict "no model"
U predict "no images"               "$T/m.ufm"
U predict "--raw-maps without --heatmap-dir" "$T/m.ufm" --raw-maps $IMG
R predict "missing model"     "$MISSING.ufm"  "$MISSING.ufm" $IMG
R predict "corrupt model"     junk.ufm        "$T/junk.ufm" $IMG
R predict "short model"       short.ufm       "$T/short.ufm" $IMG
R predict "truncated model"   trunc.ufm       "$T/trunc.ufm" $IMG
R predict "model's checkpoint given missing" "$MISSING.safetensors" "$T/m.ufm" --backbone "$MISSING.safetensors" $IMG
R predict "other checkpoint"  junk.safetensors "$T/m.ufm" --backbone "$T/junk.safetensors" $IMG
R predict "missing image"     "$MISSING.png"  "$T/m.ufm" "$MISSING.png"
R predict "corrupt image"     junk.png        "$T/m.ufm" "$T/junk.png"
R predict "folder as image"   dir.png         "$T/m.ufm" "$T/dir.png/"
R predict "unwritable heatmap dir" "$RO"      "$T/m.ufm" --heatmap-dir "$RO" $IMG

# ---- info ---------------------------------------------------------------------------------
U info "--heads without a value"    $M1 --heads
U info "--heads 0"                  --heads 0 $M1
U info "--heads x"                  --heads x $M1
U info "no file"
U info "one file at a time (two given)" $M1 $M1
U info "--json on a checkpoint"     --json $M1
R info "missing file"       "$MISSING.safetensors" "$MISSING.safetensors"
R info "corrupt checkpoint" junk.safetensors     "$T/junk.safetensors"
R info "corrupt model"      junk.ufm             "$T/junk.ufm"
R info "truncated model"    trunc.ufm            "$T/trunc.ufm"
R info "a folder"           dir.png              "$T/dir.png"

# ---- demo ---------------------------------------------------------------------------------
U demo "--out without a value"      --out
U demo "--train without a value"    --train
U demo "--train 0"                  --train 0
U demo "--train 10001"              --train 10001
U demo "--train x"                  --train x
U demo "stray argument"             extra --out "$T/dd"
printf 'x' >"$T/afile"
R demo "--out is a file"     afile               --out "$T/afile"
R demo "missing backbone"    "$MISSING.safetensors" --backbone "$MISSING.safetensors" --out "$T/demo"

# ---- eval ---------------------------------------------------------------------------------
E="$BB --dataset mvtec --root tests/data/dataset/mvtec --out $T/ev"
for opt in --dataset --root --out --category --shots --repeats --max-train; do
  U eval "$opt without a value"     $E $opt
done
U eval "--cluster 0"                $E --cluster 0
U eval "--cluster x"                $E --cluster x
U eval "--shots 0"                  $E --shots 0
U eval "--shots -3"                 $E --shots -3
U eval "--repeats 1001"             $E --shots 1 --repeats 1001
U eval "--max-train x"              $E --max-train x
U eval "--dataset nope"             $BB --dataset nope --root tests/data/dataset/mvtec --out "$T/ev"
UNIFORMALY_BACKBONE=$MISSING.st R eval "no --backbone, bundled one missing" "$MISSING.st" --dataset mvtec --root tests/data/dataset/mvtec --out "$T/ev"
U eval "no --dataset"               $BB --root tests/data/dataset/mvtec --out "$T/ev"
U eval "no --root"                  $BB --dataset mvtec --out "$T/ev"
U eval "no --out"                   $BB --dataset mvtec --root tests/data/dataset/mvtec
U eval "stray argument"             extra $E
R eval "missing root"        "$MISSING"          $BB --dataset mvtec --root "$MISSING" --out "$T/ev"
R eval "missing backbone"    "$MISSING.safetensors" --backbone "$MISSING.safetensors" --dataset mvtec --root tests/data/dataset/mvtec --out "$T/ev"
R eval "corrupt backbone"    junk.safetensors    --backbone "$T/junk.safetensors" --dataset mvtec --root tests/data/dataset/mvtec --out "$T/ev"
R eval "--out is a file"     afile               $BB --dataset mvtec --root tests/data/dataset/mvtec --out "$T/afile"

# ---- classify -----------------------------------------------------------------------------
U classify "--labels without a value" $BB $IMG --labels
U classify "--top without a value"  $BB $IMG --top
U classify "--top 0"                $BB --top 0 $IMG
U classify "--top 65"               $BB --top 65 $IMG
U classify "--top x"                $BB --top x $IMG
UNIFORMALY_BACKBONE=$MISSING.st R classify "no --backbone, bundled one missing" "$MISSING.st" $IMG
U classify "no images"              $BB
R classify "missing backbone" "$MISSING.safetensors" --backbone "$MISSING.safetensors" $IMG
R classify "missing labels"   "$MISSING.txt"     $BB --labels "$MISSING.txt" $IMG
R classify "missing image"    "$MISSING.png"     $BB --resize 64 --crop 64 "$MISSING.png"

# ---- features -----------------------------------------------------------------------------
for opt in --out --layers --attn-block; do
  U features "$opt without a value" $BB $IMG $opt
done
U features "--layers 0"             $BB --out "$T/f.st" --layers 0 $IMG
U features "--layers 65"            $BB --out "$T/f.st" --layers 65 $IMG
U features "--layers x"             $BB --out "$T/f.st" --layers x $IMG
U features "--attn-block 65"        $BB --out "$T/f.st" --attn-block 65 $IMG
U features "--attn-block -1"        $BB --out "$T/f.st" --attn-block -1 $IMG
U features "--rollout without attention" $BB --out "$T/f.st" --layers none --attn-block 0 --rollout $IMG
U features "nothing to compute"     $BB --out "$T/f.st" --layers none --attn-block 0 $IMG
UNIFORMALY_BACKBONE=$MISSING.st R features "no --backbone, bundled one missing" "$MISSING.st" --out "$T/f.st" $IMG
U features "no --out"               $BB $IMG
U features "no images"              $BB --out "$T/f.st"
R features "missing backbone" "$MISSING.safetensors" --backbone "$MISSING.safetensors" --out "$T/f.st" $IMG
R features "corrupt image"    junk.png           $BB --resize 64 --crop 64 --layers 1-4 --out "$T/f.st" "$T/junk.png"
R features "unwritable --out" "$RO/f.st"         $BB --resize 64 --crop 64 --layers 1 --out "$RO/f.st" $IMG
[ ! -e "$T/f.st" ] && ok || bad "features: a failed run left $T/f.st"

echo "  $pass checks passed, $fail failed" >&2
finish
