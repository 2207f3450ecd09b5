#!/bin/sh
# ptxas_check.py on its fixture (tests/cuda/ptxas_fixture/bad.cu) must fail and name exactly
# the three broken kernels: the check can fail.  usage: ptxas_check_fails.sh PYTHON CHECK NVCC ARCH FIXTURE_DIR KEEP_DIR
out=$("$1" "$2" --nvcc "$3" --arch "$4" --src "$5" --keep "$6" 2>&1)
rc=$?
echo "$out"
[ "$rc" -eq 1 ] || { echo "expected exit 1, got $rc"; exit 1; }
echo "$out" | grep -q 'spiller: spills' || { echo "the spilling kernel was not named"; exit 1; }
echo "$out" | grep -q 'unbounded: .*no __launch_bounds__' || { echo "the unbounded kernel was not named"; exit 1; }
echo "$out" | grep -q 'stacked: .*stack frame' || { echo "the kernel with local memory was not named"; exit 1; }
if echo "$out" | grep -q '^  bad.cu: fine:'; then echo "the fine kernel was flagged"; exit 1; fi
echo "ptxas_check fails on the fixture as it should"
