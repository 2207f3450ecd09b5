#!/bin/sh
# `ctxdiff bench --profile` on the CPU: a batch of 2 at 256x256, checked by profile_check.sh;
# the proposal and detection layers run per image, and each must be one row of 2 calls; with
# --threads 1, which the JSON line must report.
# Usage: bench_profile_cpu.sh CTXDIFF
CTX=$1
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$CTX" bench --threads 1 --size 256 --batch 2 --iters 1 --warmup 0 --profile --set POST_NMS_ROIS_INFERENCE=200 \
  --set DETECTION_MAX_INSTANCES=20 >"$out" 2>"$err" || { echo "FAIL: status $?"; cat "$out" "$err"; exit 1; }
sh "$(dirname "$0")/profile_check.sh" "$out" 'resnet101 256x256 batch 2 fp32 on the CPU' || exit 1
grep -q '"threads":1,' "$out" || { echo "FAIL: the JSON line does not report --threads 1"; cat "$out"; exit 1; }
for op in 'proposals (top-k, decode, clip, NMS)' 'detection layer (refine, clip, per-class NMS, top-k)'; do
  rows=$(grep -F "$op" "$out")
  [ "$(printf '%s\n' "$rows" | wc -l)" = 1 ] || { echo "FAIL: not one row for '$op':"; printf '%s\n' "$rows"; exit 1; }
  printf '%s\n' "$rows" | grep -Eq ' 2( +[0-9.]+){4}$' || { echo "FAIL: '$op' is not 2 calls: $rows"; exit 1; }
done
echo "ok: CPU profile of a batch of 2: $(grep -c '^  [0-9]' "$out") ops"
