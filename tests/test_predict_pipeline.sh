#!/usr/bin/env bash
# test_predict_pipeline.sh - predict's pipeline (tools/cmd_predict.c: a loader thread, the
# scoring thread, a writer thread with --heatmap-dir) against one batch at a time: same
# lines in the same order, an unreadable image in the middle named once with exit 1 and
# every other image scored, an overlay that cannot be written gives exit 1; and when a
# pipeline thread cannot be started (pthread_create failing, forced by a small LD_PRELOAD
# shim), the run falls back to one batch at a time instead of hanging. Uses the tiny golden
# ViT and tests/data/detector, nothing from ../shared. Needs UF_BIN.
. "$(dirname "$0")/lib.sh"

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 # no OpenMP threads: pthread_create is ours
D=tests/data/detector
mkdir -p "$T/train" && cp $D/train_*.png "$T/train/"
"$BIN" fit --backbone tests/data/golden/m1.safetensors --heads 3 --layers 2-4 --resize 72 \
  --crop 64 --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --quiet --out "$T/m.ufm" "$T/train" 2>"$T/err" ||
  bad "fit: $(cat "$T/err")"
printf 'not an image' > "$T/junk.png"
IMGS="$D/test_good.png $D/test_blob.png $D/test_crack.png $D/train_0.png $D/train_1.png $D/train_2.png $D/train_3.png"

# the reference: every image alone (no pipeline beyond one batch)
: > "$T/ref"
for f in $IMGS; do "$BIN" predict "$T/m.ufm" --quiet "$f" >> "$T/ref" 2>"$T/err" || bad "predict $f alone"; done

for b in 1 2 3; do
  expect 0 "predict --batch $b" "$BIN" predict "$T/m.ufm" --quiet --batch $b $IMGS
  check "predict --batch $b: the same lines in order" 'cmp -s "$T/out" "$T/ref"'
  rm -rf "$T/h"; mkdir "$T/h"
  expect 0 "predict --batch $b --heatmap-dir" "$BIN" predict "$T/m.ufm" --quiet --batch $b --heatmap-dir "$T/h" $IMGS
  check "predict --batch $b --heatmap-dir: same scores in order" \
    '[ "$(cut -f1,2 "$T/out")" = "$(cut -f1,2 "$T/ref")" ]'
  check "predict --batch $b --heatmap-dir: 7 overlays" '[ "$(ls "$T/h" | grep -c "\.png$")" = 7 ]'
done

# an unreadable image in the middle: one message naming it, the others scored, exit 1
rm -rf "$T/h"; mkdir "$T/h"
MID="$D/test_good.png $D/test_blob.png $D/test_crack.png $T/junk.png $D/train_0.png $D/train_1.png $D/train_2.png $D/train_3.png"
expect 1 "predict with an unreadable image in the middle" "$BIN" predict "$T/m.ufm" --quiet --batch 1 --heatmap-dir "$T/h" $MID
check "the unreadable image named once" '[ "$(grep -c "junk.png" "$T/err")" = 1 ]'
check "the other images scored, in order" '[ "$(cut -f1,2 "$T/out")" = "$(cut -f1,2 "$T/ref")" ]'
expect 1 "--json with an unreadable image in the middle" "$BIN" predict "$T/m.ufm" --quiet --json --batch 2 $MID
check "--json: 7 lines" '[ "$(wc -l < "$T/out")" = 7 ]'

# an overlay that cannot be written (a folder in its place): exit 1, no hang
rm -rf "$T/h"; mkdir -p "$T/h/tests_data_detector_test_blob.png.png"
expect 1 "predict with an overlay that cannot be written" timeout 120 "$BIN" predict "$T/m.ufm" --quiet --batch 1 --heatmap-dir "$T/h" $IMGS
check "the failed overlay named" 'grep -q "test_blob" "$T/err"'

# standard output that cannot be written (a full device): the lines are lost, so exit 1
# with a message, never a silent 0
if [ -w /dev/full ]; then
  expect 1 "predict > /dev/full" sh -c '"$@" > /dev/full' sh "$BIN" predict "$T/m.ufm" --quiet --batch 1 $IMGS
  rm -rf "$T/h"; mkdir "$T/h"
  expect 1 "predict --heatmap-dir > /dev/full" sh -c '"$@" > /dev/full' sh "$BIN" predict "$T/m.ufm" --quiet --batch 1 --heatmap-dir "$T/h" $IMGS
else
  skp "predict > /dev/full (no /dev/full)"
fi

# a pipeline thread that cannot be started: one batch at a time, same lines, no hang
CC=${CC:-cc}
cat > "$T/shim.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
/* pthread_create fails (EAGAIN) on its UF_TEST_FAIL_PTHREAD-th call */
int pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*f)(void *), void *arg)
{
    typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    static int calls;
    const char *e = getenv("UF_TEST_FAIL_PTHREAD");
    if (e && ++calls == atoi(e)) return EAGAIN;
    return ((create_fn)dlsym(RTLD_NEXT, "pthread_create"))(t, a, f, arg);
}
C
if ! $CC -shared -fPIC -o "$T/shim.so" "$T/shim.c" -ldl 2>"$T/err"; then
  skp "pthread_create failures (no C compiler: $(head -c 200 "$T/err"))"
elif ldd "$BIN" 2>/dev/null | grep -q -e libtsan; then
  skp "pthread_create failures (ThreadSanitizer intercepts pthread_create first)"
else
  for n in 1 2; do
    for h in "" heat; do
      rm -rf "$T/h"; mkdir "$T/h"
      set -- ${h:+--heatmap-dir "$T/h"}
      # the sanitizers' runtime must come first: a preloaded shim is allowed here
      expect 0 "pthread_create call $n fails${h:+ (--heatmap-dir)}: no hang" \
        env UF_TEST_FAIL_PTHREAD=$n LD_PRELOAD="$T/shim.so" \
        ASAN_OPTIONS="$ASAN_OPTIONS:verify_asan_link_order=0" \
        timeout 60 "$BIN" predict "$T/m.ufm" --quiet --batch 1 "$@" $IMGS
      check "pthread_create call $n fails${h:+ (--heatmap-dir)}: the same scores in order" \
        '[ "$(cut -f1,2 "$T/out")" = "$(cut -f1,2 "$T/ref")" ]'
      [ -n "$h" ] && check "pthread_create call $n fails (--heatmap-dir): 7 overlays" \
        '[ "$(ls "$T/h" | grep -c "\.png$")" = 7 ]'
    done
  done
fi

finish
