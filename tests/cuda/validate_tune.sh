#!/bin/sh
# `ctxdiff validate --precision fp16 --op conv` with CTXDIFF_CUDA_CONV=tune: every conv shape
# that v3, v4, v5 and v6 can run is timed over them on its first run and checked with the chosen
# kernel's output (the live-row bound is v4's 256-row tile, as tuning runs v4 too). Must pass
# and report tuned shapes. Status 77 (no CUDA device) passes through as a skip.
# Usage: validate_tune.sh CTXDIFF
out=$(mktemp)
trap 'rm -f "$out"' EXIT
CTXDIFF_CUDA_CONV=tune "$1" validate --device cuda --precision fp16 --op conv >"$out" 2>&1
rc=$?
cat "$out"
[ $rc = 77 ] && exit 77
[ $rc = 0 ] || { echo "FAIL: status $rc"; exit 1; }
grep -Eq '^conv tactics: [1-9][0-9]* shapes tuned' "$out" || { echo "FAIL: no shapes tuned"; exit 1; }
echo "ok: $(grep '^conv tactics:' "$out")"
