#!/bin/sh
# `ctxdiff segment --device cuda --batch 2` against `segment` on the CPU, end to end (decode,
# GPU graph, unmold, RLE, JSON): same detections (class, box, RLE mask) and scores within
# 1e-4, on five synthetic 320x256 images at a small network size: two batches of 2 in flight
# (cx_detect_submit/collect), then a batch of 1 (a new memory plan: the pipeline drains
# first). A file that is not an image sits before the last one: it is reported (status 1) while
# the oldest batch is written in the same parallel region, and the last image takes its place.
# Without a CUDA device: 77.
# Usage: segment_device.sh CTXDIFF PYTHON
CTX=$1 PY=$2
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
for s in 3 4 5 6 7; do
  "$CTX" synth-image --width 320 --height 256 --seed $s -o "$d/img$s.png" || exit 1
done
set -- --set IMAGE_MIN_DIM=256 --set IMAGE_MAX_DIM=320 --set DETECTION_MIN_CONFIDENCE=0 \
  --set POST_NMS_ROIS_INFERENCE=200 --set DETECTION_MAX_INSTANCES=10 --quiet
echo "not an image" >"$d/bad.png"
imgs="$d/img3.png $d/img4.png $d/img5.png $d/img6.png $d/bad.png $d/img7.png"
# shellcheck disable=SC2086
"$CTX" segment "$@" --out "$d/cpu" $imgs 2>"$d/err"
[ $? = 1 ] && grep -q "1 of 6 images failed" "$d/err" || { echo "CPU run:"; cat "$d/err"; exit 1; }
# shellcheck disable=SC2086
"$CTX" segment "$@" --device cuda --batch 2 --out "$d/gpu" $imgs 2>"$d/err"
rc=$?
grep -q "no CUDA device" "$d/err" && { echo "no CUDA device: skipped"; exit 77; }
if [ $rc != 1 ] || ! grep -q "1 of 6 images failed" "$d/err" || ! grep -q "bad.png" "$d/err"; then
  echo "GPU run: status $rc"
  cat "$d/err"
  exit 1
fi
"$PY" - "$d" <<'PYEOF'
import json, sys
d = sys.argv[1]
bad = 0
for n in ("img3", "img4", "img5", "img6", "img7"):
    c = json.load(open(f"{d}/cpu/{n}.json"))["detections"]
    g = json.load(open(f"{d}/gpu/{n}.json"))["detections"]
    if len(c) != len(g) or not c:
        print(f"{n}: {len(c)} CPU vs {len(g)} GPU detections"); bad += 1; continue
    for i, (x, y) in enumerate(zip(c, g)):
        same = x["class_id"] == y["class_id"] and x["roi"] == y["roi"] and x["mask"] == y["mask"]
        if not same or abs(x["score"] - y["score"]) > 1e-4:
            print(f"{n} detection {i}: CPU {x['class_id']} {x['roi']} {x['score']:.6f} vs GPU {y['class_id']} {y['roi']} {y['score']:.6f}, masks {'equal' if x['mask'] == y['mask'] else 'differ'}")
            bad += 1
    print(f"{n}: {len(c)} detections compared")
sys.exit(1 if bad else 0)
PYEOF
