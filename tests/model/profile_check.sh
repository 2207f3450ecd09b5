#!/bin/sh
# Checks one `ctxdiff bench --profile` output (ResNet-101): the profile table follows the JSON
# line, its rows' counted FLOPs add up to the JSON line's gflop_per_batch (cx_model_flops walks
# the graph separately), every row with FLOPs names the conv kernel that ran, and the 103
# residual-stage convolutions and conv1 each have a row.
# Usage: profile_check.sh OUTPUT_FILE TITLE_PREFIX
out=$1 title=$2
grep -q "^profile: $title" "$out" || { echo "FAIL: no profile table '$title'"; cat "$out"; exit 1; }
awk '/"gflop_per_batch"/ { match($0, /"gflop_per_batch":[0-9.]+/); j = substr($0, RSTART + 18, RLENGTH - 18) + 0 }
     /^  [0-9]+ / { n++; f += $(NF - 1); if ($(NF - 1) > 0 && $(NF - 5) == "-") { print "FAIL: no kernel: " $0; bad = 1 }
                    if ($2 ~ /^res[2-5][a-w]_branch(1|2a|2b|2c)$/) r++; if ($2 == "conv1") c1++ }
     END { d = f - j; if (d < 0) d = -d
           if (bad || j <= 0 || d > 0.005 * j || r != 103 || c1 != 1) {
             printf "FAIL: profile: %d ops, %.3f GFLOP vs %.3f in the JSON line, %d residual convs, conv1 %d\n", n, f, j, r, c1; exit 1 }
           printf "ok: profile: %d ops, %.3f GFLOP (JSON line %.1f), 103 residual convs\n", n, f, j }' "$out"
