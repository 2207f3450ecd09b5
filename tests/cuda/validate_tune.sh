#!/bin/sh
# `ctxdiff validate --op conv` with CTXDIFF_CUDA_CONV=tune, fp16 and fp32: every conv shape with
# several candidate configurations (the heuristic's, unsplit where it splits K, 128-wide where it
# takes 64 for an under-filled grid, v4/v5/v6 where unsplit 128-wide v3 runs; fp32 3x3: Winograd
# or the direct kernels where the descriptor has both) is timed over them on its first run and
# checked with the chosen one's output (the live-row bound is v4's 256-row tile, as tuning runs
# v4 too). Each run must pass and report tuned shapes. On the emulator it runs again as a
# 132-SM device, whose heuristics split K and narrow tiles on the small test grids. Status 77
# (no CUDA device) passes through as a skip.
# Usage: validate_tune.sh CTXDIFF
out=$(mktemp)
trap 'rm -f "$out"' EXIT
check() { # SMS PREC
  CXEMU_SMS=$1 CTXDIFF_CUDA_CONV=tune "$CTX" validate --device cuda --precision $2 --op conv >"$out" 2>&1
  rc=$?
  cat "$out"
  [ $rc = 77 ] && exit 77
  [ $rc = 0 ] || { echo "FAIL: $2 ($1 SMs): status $rc"; exit 1; }
  grep -Eq '^conv tactics: [1-9][0-9]* shapes tuned' "$out" || { echo "FAIL: $2: no shapes tuned"; exit 1; }
  echo "ok: $2: $(grep '^conv tactics:' "$out")"
}
CTX=$1
for prec in fp16 fp32; do check 1 $prec; done
if grep -q 'CUDA emulator' "$out"; then
  for prec in fp16 fp32; do check 132 $prec; done
fi
