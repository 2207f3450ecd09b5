#!/bin/sh
# `ctxdiff bench --device cuda` on any machine: with a CUDA device it must run (a tiny GPU
# bench, status 0, a JSON line with "device":"cuda"); without one it must exit 77 with a
# message naming the missing device, printing no result. Usage errors stay status 2.
# Usage: bench_device.sh CTXDIFF
CTX=$1
err=$(mktemp) out=$(mktemp)
trap 'rm -f "$err" "$out"' EXIT
"$CTX" bench --device cuda --precision fp16 --size 256 --iters 1 --warmup 0 --profile \
  --set POST_NMS_ROIS_INFERENCE=200 --set DETECTION_MAX_INSTANCES=20 >"$out" 2>"$err"
rc=$?
case $rc in
  0) grep -q '"device":"cuda"' "$out" || { echo "FAIL: status 0 but no cuda JSON line"; cat "$out" "$err"; exit 1; }
     grep -q '"tflops":' "$out" || { echo "FAIL: no tflops in the JSON line"; exit 1; }
     grep -q '"pipelined_images_per_s":' "$out" || { echo "FAIL: no pipelined throughput in the JSON line"; exit 1; }
     grep -q '"gpu_mem_used_mb":[1-9]' "$out" || { echo "FAIL: no device memory figure in the JSON line"; exit 1; }
     sh "$(dirname "$0")/../model/profile_check.sh" "$out" 'resnet101 256x256 batch 1 fp16' || exit 1
     echo "ok: GPU bench ran: $(head -1 "$out")" ;;
  77) grep -q 'no CUDA device\|no CUDA backend' "$err" || { echo "FAIL: status 77 without a clear message:"; cat "$err"; exit 1; }
      [ -s "$out" ] && { echo "FAIL: status 77 but a result was printed"; exit 1; }
      echo "ok: no device -> 77: $(cat "$err")" ;;
  *) echo "FAIL: status $rc"; cat "$out" "$err"; exit 1 ;;
esac
"$CTX" bench --precision fp16 >/dev/null 2>"$err"
rc=$?
[ $rc = 2 ] && grep -q 'needs --device cuda' "$err" || { echo "FAIL: --precision fp16 on cpu: status $rc"; cat "$err"; exit 1; }
"$CTX" bench --device tpu >/dev/null 2>"$err"
rc=$?
[ $rc = 2 ] && grep -q "unknown device 'tpu'" "$err" || { echo "FAIL: --device tpu: status $rc"; cat "$err"; exit 1; }
"$CTX" bench --device cuda:x >/dev/null 2>"$err"
rc=$?
[ $rc = 2 ] && grep -q "unknown device 'cuda:x'" "$err" || { echo "FAIL: --device cuda:x: status $rc"; cat "$err"; exit 1; }
echo "ok: usage errors -> 2"
# a GPU index past the visible ones: 77 without any device, else an error naming the index
"$CTX" bench --device cuda:7 --size 256 --iters 1 --warmup 0 >"$out" 2>"$err"
rc=$?
case $rc in
  77) ;;
  1) grep -q 'no CUDA device 7' "$err" || { echo "FAIL: --device cuda:7: unclear message"; cat "$err"; exit 1; } ;;
  *) echo "FAIL: --device cuda:7: status $rc"; cat "$out" "$err"; exit 1 ;;
esac
[ -s "$out" ] && { echo "FAIL: --device cuda:7 printed a result"; exit 1; }
echo "ok: --device cuda:7 -> $rc: $(cat "$err")"
