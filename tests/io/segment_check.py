#!/usr/bin/python3
"""`ctxdiff segment` end to end on the synthetic image (synthetic resnet50 weights,
256x256 canvas to stay fast):

* the JSON against the independent PyTorch/NumPy reference (shared/reference/mrcnn_ref.py):
  boxes, classes and scores, and the RLE masks decoded by our own Python decoder
  (rle_check.py) against the reference's masks;
* JSON structure: COCO bbox derived from the matterport roi, descending scores, settings;
* --batch 2 gives the same detections as one image at a time; the same image as PNG,
  greyscale and RGBA; --config file plus --set overrides; the overlay PNG;
* settings errors name the setting; progress on stderr; --quiet; the synthetic-weights
  warning.

usage: segment_check.py --ctxdiff BIN --reference SHARED_REFERENCE_DIR --work DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rle_check import counts_to_mask, decode_counts  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--ctxdiff", required=True)
ap.add_argument("--reference", required=True)
ap.add_argument("--work", required=True)
args = ap.parse_args()
CTX = os.path.abspath(args.ctxdiff)
W = os.path.abspath(args.work)
shutil.rmtree(W, ignore_errors=True)
os.makedirs(W)
failures = []
ENV = dict(os.environ)
ENV.pop("CTXDIFF_WEIGHTS", None)
FAST = ["--set", "BACKBONE=resnet50", "--set", "IMAGE_MAX_DIM=256", "--set", "IMAGE_MIN_DIM=256",
        "--set", "DETECTION_MIN_CONFIDENCE=0"]


def run(*cmd):
    # cwd = W, which holds no coco.safetensors: the synthetic weights are used.
    r = subprocess.run([CTX] + list(cmd), capture_output=True, text=True, cwd=W, env=ENV)
    if r.returncode < 0 or "Sanitizer" in r.stderr or "runtime error" in r.stderr:
        failures.append("%s: crash or sanitizer report (status %d):\n%s" % (" ".join(cmd[:2]), r.returncode, r.stderr))
    return r


def fail(msg):
    failures.append(msg)


img = os.path.join(W, "synth.png")
r = run("synth-image", "--width", "640", "--height", "480", "--seed", "0", "-o", img)
if r.returncode != 0:
    print("FAIL: synth-image: " + r.stderr)
    sys.exit(1)
rgb = np.asarray(Image.open(img).convert("RGB"))
H, Wd = rgb.shape[:2]
# The same pixels in other containers: greyscale-expanded is different content, so only
# RGBA (alpha dropped) and a byte-identical copy must give the same detections.
Image.fromarray(np.dstack([rgb, np.full((H, Wd), 7, np.uint8)]), "RGBA").save(os.path.join(W, "synth_rgba.png"))
shutil.copy(img, os.path.join(W, "copy.png"))


def load(out, stem):
    with open(os.path.join(out, stem + ".json")) as f:
        return json.load(f)


# --- one image
out1 = os.path.join(W, "out1")
r = run("segment", *FAST, "--out", out1, img)
if r.returncode != 0:
    print("FAIL: segment: " + r.stderr)
    sys.exit(1)
if "SYNTHETIC" not in r.stderr:
    fail("no synthetic-weights warning on stderr: %r" % r.stderr)
doc = load(out1, "synth")
dets = doc["detections"]
if doc["image"] != {"file": img, "width": Wd, "height": H}:
    fail("image block wrong: %r" % doc["image"])
wb = doc["weights"]
if wb.get("backbone") != "resnet50" or wb.get("classes") != 81 or wb.get("synthetic") is not True:
    fail("weights block wrong: %r" % wb)
if doc["settings"] != {"IMAGE_MAX_DIM": 256, "IMAGE_MIN_DIM": 256, "DETECTION_MIN_CONFIDENCE": 0}:
    fail("settings block wrong: %r" % doc["settings"])
for k in ("decode", "backbone_fpn", "mask_head", "total", "write"):
    if not isinstance(doc["timings_ms"].get(k), (int, float)):
        fail("timing %s missing" % k)
if not dets:
    fail("no detections at DETECTION_MIN_CONFIDENCE=0")
scores = [d["score"] for d in dets]
if scores != sorted(scores, reverse=True):
    fail("detections are not in descending score order")
masks = []
for i, d in enumerate(dets):
    y1, x1, y2, x2 = d["roi"]
    if d["bbox"] != [x1, y1, x2 - x1, y2 - y1]:
        fail("detection %d: bbox %r does not match roi %r" % (i, d["bbox"], d["roi"]))
    if d["mask"]["size"] != [H, Wd]:
        fail("detection %d: mask size %r" % (i, d["mask"]["size"]))
    m = counts_to_mask(decode_counts(d["mask"]["counts"]), H, Wd)
    masks.append(m)
    if m[:y1].any() or m[y2:].any() or m[:, :x1].any() or m[:, x2:].any():
        fail("detection %d: mask pixels outside its box" % i)
    if not isinstance(d["class_name"], str) or not 1 <= d["class_id"] < 81:
        fail("detection %d: class %r %r" % (i, d["class_id"], d["class_name"]))

# --- against the independent reference (same synthetic weights, image and settings)
npz = os.path.join(W, "ref.npz")
ref_cmd = ["/usr/bin/python3", os.path.join(args.reference, "mrcnn_ref.py"), "--backbone", "resnet50",
           "--num-classes", "81", "--width", "640", "--height", "480", "--seed", "0", "--min-confidence", "0",
           "--config", "IMAGE_MAX_DIM=256", "--config", "IMAGE_MIN_DIM=256", "--no-features", "--out", npz]
rr = subprocess.run(ref_cmd, capture_output=True, text=True)
if rr.returncode != 0:
    fail("reference run failed: %s" % rr.stderr[-2000:])
else:
    ref = np.load(npz)
    rrois, rcls, rsc, rmasks = ref["rois"], ref["class_ids"], ref["scores"], ref["masks"]
    matched, mask_agree = 0, []
    for k in range(len(rrois)):
        for i, d in enumerate(dets):
            if d["roi"] == [int(v) for v in rrois[k]] and d["class_id"] == int(rcls[k]):
                if abs(d["score"] - float(rsc[k])) > 1e-3:
                    fail("detection %s: score %g vs reference %g" % (d["roi"], d["score"], rsc[k]))
                matched += 1
                mask_agree.append((masks[i] == rmasks[:, :, k].astype(np.uint8)).mean())
                break
    n = max(len(rrois), len(dets))
    # Allow rare discrete flips (shared/spec/maskrcnn-matterport.md §16.2).
    if n == 0 or matched < 0.9 * n:
        fail("only %d of %d detections match the reference (ours %d)" % (matched, len(rrois), len(dets)))
    elif min(mask_agree) < 0.99:
        fail("RLE masks differ from the reference masks (worst pixel agreement %.4f)" % min(mask_agree))
    else:
        print("ok: %d/%d detections match the reference; mask pixel agreement >= %.4f"
              % (matched, len(rrois), min(mask_agree)))

# --- batch of 2 == one at a time; RGBA and a copy give identical detections
out2 = os.path.join(W, "out2")
r = run("segment", *FAST, "--batch", "2", "--out", out2, img, os.path.join(W, "synth_rgba.png"), os.path.join(W, "copy.png"))
if r.returncode != 0:
    fail("batch run failed: %s" % r.stderr)
else:
    for stem in ("synth", "synth_rgba", "copy"):
        d2 = load(out2, stem)
        if d2["detections"] != dets:
            fail("%s: detections differ from the single-image run" % stem)
        if d2["timings_ms"].get("batch_size") != (2 if stem != "copy" else 1):
            fail("%s: batch_size %r" % (stem, d2["timings_ms"].get("batch_size")))
    if "[3/3]" not in r.stderr or "images/s" not in r.stderr:
        fail("no progress lines for a multi-image run: %r" % r.stderr)
    print("ok: --batch 2, RGBA input and a copy give identical detections")

# --- --no-overlay: the same JSON detections, no PNG; an overlay already there is left alone
out3 = os.path.join(W, "out3")
os.makedirs(out3, exist_ok=True)
keep = os.path.join(out3, "copy.overlay.png")
with open(keep, "wb") as f:
    f.write(b"earlier run")
r = run("segment", *FAST, "--no-overlay", "--batch", "2", "--out", out3, img, os.path.join(W, "copy.png"))
if r.returncode != 0:
    fail("--no-overlay run failed: %s" % r.stderr)
elif os.path.exists(os.path.join(out3, "synth.overlay.png")):
    fail("--no-overlay wrote an overlay PNG")
elif open(keep, "rb").read() != b"earlier run":
    fail("--no-overlay touched an overlay it did not write")
elif load(out3, "synth")["detections"] != dets or load(out3, "copy")["detections"] != dets:
    fail("--no-overlay: detections differ from the default run")
else:
    print("ok: --no-overlay writes the same JSON and no PNG")

# --- overlay: same size, tinted inside the first mask, untouched far from all masks
ov = np.asarray(Image.open(os.path.join(out1, "synth.overlay.png")).convert("RGB"))
if ov.shape != rgb.shape:
    fail("overlay size %s" % (ov.shape,))
elif dets:
    anym = np.zeros((H, Wd), bool)
    for m in masks:
        anym |= m.astype(bool)
    inside = masks[0].astype(bool)
    if not (ov[inside] != rgb[inside]).any():
        fail("overlay does not tint the first mask")
    boxes = np.zeros((H, Wd), bool)
    # Caption placement of overlay.c: 5x7 font, 6 px advance, scale 1 below 480 px,
    # 2 below 1600 px; top-left inside the box, shifted to stay within the image, and
    # moved up to 6 lines up or down when it would cover an earlier caption.
    scale = 1 if min(H, Wd) < 480 else (2 if max(H, Wd) < 1600 else 3)
    for d in dets:
        y1, x1, y2, x2 = d["roi"]
        boxes[max(y1 - 2, 0):y2 + 2, max(x1 - 2, 0):x2 + 2] = True
        tw, th = len("%s %.3f" % (d["class_name"], d["score"])) * 6 * scale, 7 * scale
        tx = min(x1 + 2, Wd - tw - 2)
        ty = min(y1 + 2, H - th - 2)
        tx, ty = max(tx, 0), max(ty, 0)
        shift = 6 * (th + 3)
        boxes[max(ty - 1 - shift, 0):ty + th + 1 + shift, max(tx - 1, 0):tx + tw] = True
    if (ov[~boxes] != rgb[~boxes]).any():
        fail("overlay changed pixels far from every detection")

# --- --config file with --set on top; --quiet
cfg = os.path.join(W, "cfg.json")
with open(cfg, "w") as f:
    json.dump({"DETECTION_MIN_CONFIDENCE": 0.9, "DETECTION_MAX_INSTANCES": 5, "IMAGE_MAX_DIM": 256,
               "IMAGE_MIN_DIM": 256, "BACKBONE": "resnet50", "RPN_ANCHOR_RATIOS": [0.5, 1, 2]}, f)
out3 = os.path.join(W, "out3")
r = run("segment", "--config", cfg, "--set", "DETECTION_MAX_INSTANCES=3", "--quiet", "--out", out3, img,
        os.path.join(W, "copy.png"))
if r.returncode != 0:
    fail("config run failed: %s" % r.stderr)
else:
    d3 = load(out3, "synth")
    s = d3["settings"]
    if s.get("DETECTION_MAX_INSTANCES") != 3 or s.get("DETECTION_MIN_CONFIDENCE") != 0.9:
        fail("config/--set not applied: %r" % s)
    if len(d3["detections"]) > 3 or any(x["score"] < 0.9 for x in d3["detections"]):
        fail("settings not honoured by the detections")
    want = [x for x in dets if x["score"] >= 0.9][:3]
    if [x["roi"] for x in d3["detections"]] != [x["roi"] for x in want]:
        fail("config run detections are not the top of the unfiltered ones")
    if "[1/2]" in r.stderr or "images/s" in r.stderr:
        fail("--quiet still prints progress: %r" % r.stderr)
    print("ok: --config + --set, --quiet")

# --- folders as inputs: their image files by name (hidden entries, other files and, without
# --recursive, subfolders left out; links to folders never followed); --skip-existing
# continues a run without touching what it wrote
fold = os.path.join(W, "folder")
os.makedirs(os.path.join(fold, "sub", "deeper"))
os.makedirs(os.path.join(fold, ".hidden"))
for rel in ("b.png", "a.PNG", "sub/b.png", "sub/deeper/c.png", ".hidden/x.png", ".dot.png"):
    shutil.copy(img, os.path.join(fold, rel))
with open(os.path.join(fold, "notes.txt"), "w") as f:
    f.write("not an image")
os.symlink("..", os.path.join(fold, "sub", "loop"))
out5 = os.path.join(W, "out_folder")
r = run("segment", *FAST, "--no-overlay", "--out", out5, fold)
got = sorted(f for f in os.listdir(out5)) if os.path.isdir(out5) else []
if r.returncode != 0 or got != ["a.json", "b.json"]:
    fail("folder: status %d, outputs %s, stderr %r" % (r.returncode, got, r.stderr))
elif load(out5, "a")["detections"] != dets or load(out5, "b")["image"]["file"] != os.path.join(fold, "b.png"):
    fail("folder: detections or image path differ from the single-image run")
else:
    print("ok: folder -> %s" % got)
r = run("segment", *FAST, "--no-overlay", "--recursive", "--out", out5, fold)
got = sorted(f for f in os.listdir(out5))
if r.returncode != 0 or got != ["a.json", "b-2.json", "b.json", "c.json"] or "[4/4]" not in r.stderr:
    fail("--recursive: status %d, outputs %s, stderr %r" % (r.returncode, got, r.stderr))
elif load(out5, "b-2")["image"]["file"] != os.path.join(fold, "sub", "b.png"):
    fail("--recursive: b-2.json is not sub/b.png (order: the folder's files, then its subfolders)")
else:
    print("ok: --recursive -> %s" % got)
os.remove(os.path.join(out5, "c.json"))
stamp = {f: os.stat(os.path.join(out5, f)).st_mtime_ns for f in os.listdir(out5)}
r = run("segment", *FAST, "--no-overlay", "-r", "--skip-existing", "--out", out5, fold)
again = {f: os.stat(os.path.join(out5, f)).st_mtime_ns for f in os.listdir(out5) if f in stamp}
if r.returncode != 0 or not os.path.exists(os.path.join(out5, "c.json")) or again != stamp \
        or "3 of 4 images skipped" not in r.stderr:
    fail("--skip-existing: status %d, c.json %s, untouched %s, stderr %r" % (
        r.returncode, os.path.exists(os.path.join(out5, "c.json")), again == stamp, r.stderr))
else:
    print("ok: --skip-existing: only the missing result computed")
empty = os.path.join(W, "empty_folder")
os.makedirs(os.path.join(empty, "only_sub"))
r = run("segment", *FAST, "--out", os.path.join(W, "out_empty"), empty)
if r.returncode != 2 or "empty_folder" not in r.stderr or "--recursive" not in r.stderr:
    fail("folder without images: status %d, message %r" % (r.returncode, r.stderr))
elif os.path.exists(os.path.join(W, "out_empty")):
    fail("folder without images: output folder created")
else:
    print("ok: folder without images -> %s" % r.stderr.strip().splitlines()[-1])

# --- --coco-results: one COCO results list over all inputs (skipped ones read back), ids from
# the file names, COCO category ids from the spec's table (section 15), the per-image JSON's
# boxes, scores and RLE strings
import re  # noqa: E402
spec = os.path.join(os.path.dirname(os.path.abspath(args.reference)), "spec", "maskrcnn-matterport.md")
cat_of = {}
with open(spec) as f:
    for line in f:
        for cid, name, cat in re.findall(r"\|\s*(\d+)\s*\|\s*([a-z][a-z ]*?)\s*\|\s*(\d+)\s*(?=\|)", line):
            cat_of[int(cid)] = int(cat)
if len(cat_of) != 80:
    fail("could not read the 80 COCO category ids from %s (%d)" % (spec, len(cat_of)))
cfold = os.path.join(W, "coco_folder")
os.makedirs(cfold)
shutil.copy(img, os.path.join(cfold, "000000000139.png"))
shutil.copy(img, os.path.join(cfold, "000000397133.png"))
out6 = os.path.join(W, "out_coco")
os.makedirs(out6)
shutil.copy(os.path.join(out1, "synth.json"), os.path.join(out6, "000000000139.json"))  # as if from an earlier run
res_path = os.path.join(W, "results.json")
r = run("segment", *FAST, "--no-overlay", "--skip-existing", "--coco-results", res_path, "--out", out6, cfold)
try:
    with open(res_path) as f:
        res = json.load(f)
except (OSError, ValueError) as ex:
    res = None
    fail("--coco-results: status %d, no results list (%s), stderr %r" % (r.returncode, ex, r.stderr))
if res is not None:
    want = []
    for iid, stem in ((139, "000000000139"), (397133, "000000397133")):
        for d in load(out6, stem)["detections"]:
            want.append({"image_id": iid, "category_id": cat_of.get(d["class_id"]), "bbox": d["bbox"],
                         "score": d["score"], "segmentation": d["mask"]})
    if r.returncode != 0 or "1 of 2 images skipped" not in r.stderr:
        fail("--coco-results: status %d, stderr %r" % (r.returncode, r.stderr))
    elif res != want:
        fail("--coco-results: %d entries, expected %d; first %r vs %r" % (len(res), len(want), res[:1], want[:1]))
    else:
        print("ok: --coco-results: %d detections of 2 images, ids from the names, COCO categories" % len(res))

# --- --threads 1: the same detections as every core (no kernel's arithmetic depends on it)
out7 = os.path.join(W, "out_threads")
r = run("segment", *FAST, "--no-overlay", "--threads", "1", "--out", out7, img)
if r.returncode != 0 or load(out7, "synth")["detections"] != dets:
    fail("--threads 1: status %d, detections differ: %s" % (r.returncode, r.stderr))
else:
    print("ok: --threads 1 gives the same detections")

# --- settings errors name the setting (exit 2, nothing written)
for label, extra, words in [
        ("unknown setting", ["--set", "NO_SUCH_SETTING=1"], ["NO_SUCH_SETTING"]),
        ("out of range", ["--set", "DETECTION_MIN_CONFIDENCE=1.5"], ["DETECTION_MIN_CONFIDENCE"]),
        ("bad config value", ["--config", cfg + ".bad"], ["DETECTION_NMS_THRESHOLD"]),
        ("missing config", ["--config", os.path.join(W, "none.json")], ["none.json"]),
        ("bad batch", ["--batch", "0"], ["--batch"]),
        ("bad device", ["--device", "tpu"], ["tpu"]),
        ("bad device index", ["--device", "cuda:-1"], ["cuda:-1", "cuda:N"]),
        ("bad threads", ["--threads", "0"], ["--threads"]),
        ("results file in a missing folder", ["--coco-results", os.path.join(W, "no_such", "r.json")], ["no_such"])]:
    with open(cfg + ".bad", "w") as f:
        f.write('{"DETECTION_NMS_THRESHOLD": "high"}')
    out = os.path.join(W, "out_err")
    r = run("segment", *extra, "--out", out, img)
    if r.returncode == 0 or not all(w in r.stderr for w in words):
        fail("%s: status %d, message %r" % (label, r.returncode, r.stderr))
    elif os.path.exists(os.path.join(out, "synth.json")):
        fail("%s: output written" % label)
    else:
        print("ok: %s -> %s" % (label, r.stderr.strip().splitlines()[-1]))

if failures:
    print("\n".join("FAIL: " + f for f in failures))
    sys.exit(1)
print("segment_check: all checks passed")
