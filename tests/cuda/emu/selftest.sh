#!/bin/sh
# The CUDA emulator's self-test: each case of cuda_emu_selftest must end as stated — the
# good kernels with the right answer, each planted bug caught with its message.
# Usage: selftest.sh CUDA_EMU_SELFTEST
T=$1
fail=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# expect CASE ok|fault "text in the output" [ENV=...]
expect() {
  case=$1 want=$2 text=$3
  shift 3
  env "$@" "$T" "$case" >"$out" 2>&1
  rc=$?
  if [ "$want" = ok ] && [ $rc -ne 0 ]; then
    echo "FAIL $case: status $rc, expected success"; sed 's/^/  | /' "$out"; fail=1; return
  fi
  if [ "$want" = fault ] && [ $rc -eq 0 ]; then
    echo "FAIL $case: ran to the end, expected the emulator to stop it"; sed 's/^/  | /' "$out"; fail=1; return
  fi
  if ! grep -q -- "$text" "$out"; then
    echo "FAIL $case: output lacks '$text'"; sed 's/^/  | /' "$out"; fail=1; return
  fi
  echo "ok   $case ($want): $(grep -m1 -- "$text" "$out" | cut -c1-150)"
}
# seen CASE "regex" "what went unseen otherwise" [ENV=...]: a planted bug whose wrong answer the
# case prints; the output must match regex
seen() {
  case=$1 re=$2 what=$3
  shift 3
  env "$@" "$T" "$case" >"$out" 2>&1
  if ! grep -q -- "$re" "$out"; then
    echo "FAIL $case: $what went unseen"; sed 's/^/  | /' "$out"; fail=1
  else
    echo "ok   $case: $(grep -m1 -- "$case:" "$out")"
  fi
}
expect shfl ok "shfl: 0 wrong"
expect wmma ok "wmma: max abs error"
expect mma ok "mma: max abs error"
expect wgmma ok "wgmma: 0 of 8192 wrong"
# accumulators read before wgmma.wait_group: the group has not been computed yet
seen wgmma_nowait "wgmma_nowait: [1-9][0-9]* of 8192 wrong" "the read before the wait"
expect divmod ok "divmod: 0 wrong"
expect config ok "config: cudaErrorInvalidConfiguration / cudaErrorInvalidConfiguration / cudaErrorInvalidConfiguration"
expect stale ok "stale: before sync"
expect graph ok "graph: capture ran nothing 1, replay wrong 0"
expect race ok "race: 64 of 64" CXEMU_ORDER=fwd
# the reverse thread order exposes the missing barrier
env CXEMU_ORDER=rev "$T" race >"$out" 2>&1
if grep -q "race: 64 of 64" "$out" || ! grep -q "race:" "$out"; then
  echo "FAIL race (rev): the missing barrier went unseen"; sed 's/^/  | /' "$out"; fail=1
else
  echo "ok   race (rev): $(grep -m1 race: "$out")"
fi
expect streams ok "streams: 0 of 256" CXEMU_STREAMS=first
expect streams ok "streams: 0 of 256" CXEMU_STREAMS=last
# without the cudaStreamWaitEvent, the waiting stream running ahead copies before the fill
seen streams_nowait "streams_nowait: 256 of 256" "the missing cross-stream wait" CXEMU_ORDER=rev
expect pipeline ok "pipeline: 0 of 64 wrong"
# without __pipeline_wait_prior the asynchronous copies have not landed when read
seen pipeline_nowait "pipeline_nowait: [1-9][0-9]* of 64 wrong" "the missing wait"
expect host_deref fault "host code dereferenced a device pointer"
expect oob fault "past the end of the device allocation"
expect host_arg fault "is host memory, not device memory"
expect divergent fault "deadlock"
expect misaligned fault "misaligned address"
expect smem fault "out of bounds"
expect wgmma_noreturn fault "wgmma operations not waited for"
exit $fail
