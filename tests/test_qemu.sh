#!/usr/bin/env bash
# test_qemu.sh - the default build runs on x86-64 CPUs older than this one, with the same
# scores (issue 11): the built CLI fits on 2 bottle training images and scores 2 test images
# natively, then again under qemu-x86_64 -cpu Haswell (AVX2 + FMA, no AVX-512: the avx2
# kernels) and -cpu Nehalem (SSE4.2, no AVX: the generic kernels). Each emulated run must
# report the expected kernel level and give the native scores within 1e-3 relative.
# The images are scaled to 32 x 32 (2 x 2 patches): qemu emulates FMA and AVX2 slowly
# (about 20 MFLOP/s), and this checks the code paths, not the accuracy at full size
# (tests/test_bottle.c does that at every level on this CPU via UF_CPU).
# OMP_WAIT_POLICY=passive: otherwise the CLI re-executes itself (tools/main.c), which
# would run the native binary outside the emulator.
# SKIPs visibly when qemu-x86_64 (Debian: qemu-user) or ../shared is missing (tests/lib.sh).
. "$(dirname "$0")/lib.sh"
BIN=$(realpath "$BIN")
W=$SHARED/weights/vit_tiny_patch16_224.safetensors
D=$SHARED/data/mvtec_ad/bottle
CPUS="Haswell:avx2 Nehalem:generic"
if ! command -v qemu-x86_64 >/dev/null 2>&1; then
  skp "qemu-x86_64 not installed (apt-get install qemu-user): older CPUs not tested"
  finish; exit
fi
if grep -q -e __asan_init -e __tsan_init "$BIN"; then
  skp "sanitizer build: qemu-user cannot host the sanitizers' shadow memory"
  finish; exit
fi
need_shared "qemu runs on bottle" "$W" "$D" || { finish; exit; }
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2
OPTS="--backbone $W --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --resize 32 --crop 32 --quiet"
TRAIN="$D/train/good/000.png $D/train/good/001.png"
TEST="$D/test/good/000.png $D/test/broken_large/000.png"

# run [EMU...]: fit and predict (with the emulator command in front, if any) into $T/$tag
run() {
  local tag=$1; shift
  "$@" "$BIN" fit $OPTS --out "$T/$tag.ufm" $TRAIN 2>"$T/$tag.err" &&
    "$@" "$BIN" predict "$T/$tag.ufm" --quiet $TEST >"$T/$tag.txt" 2>>"$T/$tag.err"
}
if ! run native; then bad "native fit/predict: $(head -c 300 "$T/native.err")"; finish; exit; fi
for c in $CPUS; do
  cpu=${c%%:*} want=${c#*:}
  emu="qemu-x86_64 -cpu $cpu"
  got=$($emu "$BIN" --version 2>/dev/null | sed -n 's/^kernels: //p')
  if [ "$got" = "$want" ]; then ok "-cpu $cpu: kernels $got"
  else bad "-cpu $cpu: kernels '$got', want $want"; fi
  if ! run "$cpu" $emu; then
    bad "-cpu $cpu: fit/predict failed: $(grep -v 'TCG doesn' "$T/$cpu.err" | head -c 300)"
    continue
  fi
  # same images, scores within 1e-3 relative
  if paste "$T/native.txt" "$T/$cpu.txt" | awk -F'\t' -v cpu="$cpu" '
      { n++; h = NF / 2; d = $2 - $(h + 2); if (d < 0) d = -d; s = $2 < 0 ? -$2 : $2
        printf "    %s %s: native %s, emulated %s\n", cpu, $1, $2, $(h + 2)
        if ($1 != $(h + 1) || !(d <= 1e-3 * s + 1e-6)) bad = 1 }
      END { exit (bad || n != 2) }'; then
    ok "-cpu $cpu: the native scores"
  else
    bad "-cpu $cpu: scores differ from the native run"
  fi
done
finish
