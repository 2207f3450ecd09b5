#!/bin/sh
# `ctxdiff validate --op conv` with CTXDIFF_CUDA_CONV=tune, fp16 and fp32: every conv shape with
# several candidate paths (fp16: v3, v4, v5, v6 where v3 runs unsplit 128-wide tiles; fp32 3x3:
# Winograd or the direct kernels where the descriptor has both) is timed over them on its first
# run and checked with the chosen path's output (the live-row bound is v4's 256-row tile, as
# tuning runs v4 too). Each run must pass and report tuned shapes. Status 77 (no CUDA device)
# passes through as a skip.
# Usage: validate_tune.sh CTXDIFF
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for prec in fp16 fp32; do
  CTXDIFF_CUDA_CONV=tune "$1" validate --device cuda --precision $prec --op conv >"$out" 2>&1
  rc=$?
  cat "$out"
  [ $rc = 77 ] && exit 77
  [ $rc = 0 ] || { echo "FAIL: $prec: status $rc"; exit 1; }
  grep -Eq '^conv tactics: [1-9][0-9]* shapes tuned' "$out" || { echo "FAIL: $prec: no shapes tuned"; exit 1; }
  echo "ok: $prec: $(grep '^conv tactics:' "$out")"
done
