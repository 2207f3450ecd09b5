#!/usr/bin/python3
"""`ctxdiff convert` against the synthetic-weights formula, bit for bit.

Writes Keras-layout .h5 files (keras_h5.py) holding the synthetic weights of
shared/reference/synth.py, converts them, and reads the safetensors back with numpy
(its own reader, not ours) to compare every tensor and the metadata. Variants: resnet50
and resnet101, 81 and 16 classes, model.save files, split layer_names, variable-length
weight_names, TF-uniquified scopes, compressed datasets. Then the invalid inputs: each
must fail with a clear message, a non-zero status and no output file. Finally segments
the synthetic image with the converted file and with `ctxdiff synth-weights` output and
requires identical detections.

usage: convert_check.py --ctxdiff BIN --reference SHARED_REFERENCE_DIR --work DIR [--skip-r101]
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_h5 import write_keras_h5, zero_weights  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--ctxdiff", required=True)
ap.add_argument("--reference", required=True)
ap.add_argument("--work", required=True)
ap.add_argument("--skip-r101", action="store_true")
ap.add_argument("--skip-segment", action="store_true")
args = ap.parse_args()
sys.path.insert(0, args.reference)
import synth  # noqa: E402

CTX = args.ctxdiff
shutil.rmtree(args.work, ignore_errors=True)
os.makedirs(args.work)
W = args.work
failures = []

COCO_FIRST = ["BG", "person", "bicycle", "car"]
COCO_LAST = "toothbrush"


def run(*cmd, **kw):
    r = subprocess.run([CTX] + list(cmd), capture_output=True, text=True, **kw)
    if r.returncode < 0 or "Sanitizer" in r.stderr or "runtime error" in r.stderr:
        failures.append("%s: crash or sanitizer report (status %d):\n%s" % (" ".join(cmd[:2]), r.returncode, r.stderr))
    return r


def read_safetensors(path):
    """Independent reader: 8-byte LE header size, JSON header, raw LE data."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        tensors[name] = np.frombuffer(body[a:b], dtype="<f4").reshape(info["shape"])
    return tensors, meta


def check_converted(label, out, backbone, nc, class_names, keras_version, source):
    tensors, meta = read_safetensors(out)
    want = synth.synth_weights(backbone, nc)
    if set(tensors) != set(want):
        missing = sorted(set(want) - set(tensors))[:5]
        extra = sorted(set(tensors) - set(want))[:5]
        failures.append("%s: tensor names differ: missing %s, extra %s" % (label, missing, extra))
        return
    for k, v in want.items():
        got = tensors[k]
        if got.shape != v.shape:
            failures.append("%s: %s shape %s, expected %s" % (label, k, got.shape, v.shape))
        elif not np.array_equal(got.view(np.uint32), v.astype("<f4").view(np.uint32)):
            failures.append("%s: %s values differ from the formula" % (label, k))
    for key, val in [("format", "ctxdiff-mrcnn-1"), ("backbone", backbone), ("num_classes", str(nc)),
                     ("keras_version", keras_version), ("source", source)]:
        if meta.get(key) != val:
            failures.append("%s: metadata %s = %r, expected %r" % (label, key, meta.get(key), val))
    if not all(isinstance(v, str) for v in meta.values()):
        failures.append("%s: metadata values must all be strings" % label)
    try:
        names = json.loads(meta.get("class_names", ""))
    except ValueError:
        failures.append("%s: class_names is not a JSON array string" % label)
        return
    if names != class_names:
        failures.append("%s: class_names %r... expected %r..." % (label, names[:4], class_names[:4]))
    print("ok: %s (%d tensors)" % (label, len(tensors)))


def convert_ok(label, h5, out, backbone, nc, class_names, classes_file=None, keras_version="2.0.8"):
    cmd = ["convert", h5, out] + (["--classes", classes_file] if classes_file else [])
    r = run(*cmd)
    if r.returncode != 0:
        failures.append("%s: convert failed (%d): %s" % (label, r.returncode, r.stderr.strip()))
        return
    check_converted(label, out, backbone, nc, class_names, keras_version, os.path.basename(h5))


def convert_fails(label, h5, words, classes_file=None, out=None):
    out = out or os.path.join(W, "should-not-exist.safetensors")
    outdir = os.path.dirname(out)
    before = set(os.listdir(outdir)) if os.path.isdir(outdir) else set()
    cmd = ["convert", h5, out] + (["--classes", classes_file] if classes_file else [])
    r = run(*cmd)
    msg = r.stderr.strip()
    if r.returncode <= 0:
        failures.append("%s: expected a failure, got status %d" % (label, r.returncode))
    if os.path.exists(out):
        failures.append("%s: output file left behind" % label)
    after = set(os.listdir(outdir)) if os.path.isdir(outdir) else set()
    if after - before:
        failures.append("%s: files left behind: %s" % (label, sorted(after - before)))
    if not all(w.lower() in msg.lower() for w in words):
        failures.append("%s: message %r lacks %s" % (label, msg, words))
    else:
        print("ok: %s -> %s" % (label, msg))


coco = []
# --- 1. resnet50, 81 classes, save_weights layout, COCO names built in
r50 = synth.synth_weights("resnet50", 81)
h5_r50 = os.path.join(W, "r50_coco.h5")
write_keras_h5(h5_r50, r50)
out_r50 = os.path.join(W, "r50_coco.safetensors")
r = run("convert", h5_r50, out_r50)
if r.returncode != 0:
    failures.append("r50/81: convert failed: %s" % r.stderr)
else:
    _, meta = read_safetensors(out_r50)
    coco = json.loads(meta.get("class_names", "[]"))
    if len(coco) != 81 or coco[:4] != COCO_FIRST or coco[-1] != COCO_LAST:
        failures.append("r50/81: built-in COCO names wrong: %r" % coco[:5])
    check_converted("resnet50, 81 classes, save_weights", out_r50, "resnet50", 81, coco, "2.0.8", "r50_coco.h5")

# scripts/get-coco-weights --h5 converts an existing download the same way (the download
# itself needs the network and is not tested here).
script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "get-coco-weights")
via = os.path.join(W, "via_script.safetensors")
r = subprocess.run([script, "--h5", h5_r50, "--out", via], capture_output=True, text=True,
                   env=dict(os.environ, CTXDIFF=CTX))
if r.returncode != 0 or not os.path.exists(via):
    failures.append("get-coco-weights --h5 failed (%d): %s" % (r.returncode, r.stderr))
elif open(via, "rb").read() != open(out_r50, "rb").read():
    failures.append("get-coco-weights output differs from ctxdiff convert's")
else:
    print("ok: scripts/get-coco-weights --h5")
    os.remove(via)
r = subprocess.run([script, "--h5", os.path.join(W, "absent.h5"), "--out", via], capture_output=True, text=True,
                   env=dict(os.environ, CTXDIFF=CTX))
if r.returncode == 0 or os.path.exists(via) or "nothing was written" not in r.stderr:
    failures.append("get-coco-weights with a bad .h5: status %d, %r" % (r.returncode, r.stderr))

# --- 2. resnet50, 16 classes: model.save file, split layer_names, vlen weight_names,
#        uniquified scopes, gzip datasets, --classes
r50_16 = synth.synth_weights("resnet50", 16)
h5_16 = os.path.join(W, "custom16.h5")
write_keras_h5(h5_16, r50_16, keras_version="2.2.4", model_save=True, split_names=40, vlen_names=True,
               uniquify=("conv1", "mrcnn_mask_deconv", "res3a_branch2b"), compress=True)
names16 = ["BG"] + ["class %d" % i for i in range(1, 16)]
classes16 = os.path.join(W, "classes16.txt")
with open(classes16, "w") as f:
    f.write("\n".join(names16) + "\n\n")
convert_ok("resnet50, 16 classes, model.save + split names + vlen + uniquified", h5_16,
           os.path.join(W, "custom16.safetensors"), "resnet50", 16, names16, classes16, keras_version="2.2.4")

# --- 3. invalid inputs (zero-filled, gzip: small files)
notes = os.path.join(W, "notes.h5")
with open(notes, "w") as f:
    f.write("this is not HDF5\n")
convert_fails("not an HDF5 file", notes, ["not an HDF5 file"])
convert_fails("missing input", os.path.join(W, "absent.h5"), ["absent.h5", "No such file"])
other = os.path.join(W, "classifier.h5")
write_keras_h5(other, {"dense_1/kernel": np.zeros((10, 4), np.float32), "dense_1/bias": np.zeros(4, np.float32)})
convert_fails("an .h5 that is not a Mask R-CNN", other, ["not a matterport Mask R-CNN", "dense_1"])
empty = os.path.join(W, "empty.h5")
with h5py.File(empty, "w") as f:
    f.attrs["something"] = 1
convert_fails("HDF5 without layer_names", empty, ["layer_names"])

zeros = zero_weights(synth.layer_table("resnet50", 81))
bad = dict(zeros)
bad["mrcnn_bbox_fc/kernel"] = np.zeros((1024, 320), np.float32)
h5_bad = os.path.join(W, "badshape.h5")
write_keras_h5(h5_bad, bad, compress=True)
convert_fails("a layer with a wrong shape", h5_bad, ["'mrcnn_bbox_fc'", "(1024, 320)", "(1024, 324)"])
bad = dict(zeros)
del bad["res3b_branch2b/bias"]
h5_missing = os.path.join(W, "missing.h5")
write_keras_h5(h5_missing, bad, compress=True)
convert_fails("a missing weight", h5_missing, ["'res3b_branch2b'", "bias"])
h5_z16 = os.path.join(W, "z16.h5")
write_keras_h5(h5_z16, zero_weights(synth.layer_table("resnet50", 16)), compress=True)
classes17 = os.path.join(W, "classes17.txt")
with open(classes17, "w") as f:
    f.write("\n".join(names16 + ["extra"]) + "\n")
convert_fails("a class list of the wrong length", h5_z16, ["17 names", "16 classes"], classes_file=classes17)
convert_fails("16 classes without a class list", h5_z16, ["--classes"])
convert_fails("a missing class list", h5_z16, ["nope.txt"], classes_file=os.path.join(W, "nope.txt"))
ro = os.path.join(W, "readonly")
os.makedirs(ro)
os.chmod(ro, 0o555)
if os.access(ro, os.W_OK):      # running as root: permissions do not apply
    print("skip: unwritable output directory (running as root)")
else:
    convert_fails("an unwritable output directory", h5_z16, ["readonly"], classes_file=classes16,
                  out=os.path.join(ro, "out.safetensors"))
os.chmod(ro, 0o755)
convert_fails("an output path below a regular file", h5_z16, ["notes.h5/out.safetensors"], classes_file=classes16,
              out=os.path.join(notes, "out.safetensors"))
convert_fails("a missing output directory", h5_z16, ["no/such/dir"], classes_file=classes16,
              out=os.path.join(W, "no/such/dir/out.safetensors"))
# A corrupted (truncated) .h5 must fail cleanly too.
trunc = os.path.join(W, "truncated.h5")
with open(h5_z16, "rb") as f:
    data = f.read()
with open(trunc, "wb") as f:
    f.write(data[:len(data) // 2])
convert_fails("a truncated .h5", trunc, ["truncated.h5"], classes_file=classes16)

# --- 4. resnet101, 81 classes (~256 MB each way): temp dir, removed afterwards
if not args.skip_r101:
    tmp = tempfile.mkdtemp(prefix="cx_r101_")
    try:
        h5 = os.path.join(tmp, "r101.h5")
        write_keras_h5(h5, synth.synth_weights("resnet101", 81), keras_version="2.1.6")
        convert_ok("resnet101, 81 classes", h5, os.path.join(tmp, "r101.safetensors"), "resnet101", 81, coco,
                   keras_version="2.1.6")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

# --- 5. the converted file drives the model exactly like synth-weights output
if not args.skip_segment and os.path.exists(out_r50):
    img = os.path.join(W, "synth.png")
    sw = os.path.join(W, "synth_r50.safetensors")
    for cmd in (["synth-image", "--width", "640", "--height", "480", "--seed", "0", "-o", img],
                ["synth-weights", "--backbone", "resnet50", "--num-classes", "81", "-o", sw]):
        r = run(*cmd)
        if r.returncode != 0:
            failures.append("%s failed: %s" % (cmd[0], r.stderr))
    dets = {}
    for label, wfile in (("converted", out_r50), ("synth", sw)):
        out = os.path.join(W, "seg_" + label)
        r = run("segment", "--weights", wfile, "--set", "IMAGE_MAX_DIM=256", "--set", "IMAGE_MIN_DIM=256",
                "--set", "DETECTION_MIN_CONFIDENCE=0", "--out", out, "--quiet", img)
        if r.returncode != 0:
            failures.append("segment with %s weights failed: %s" % (label, r.stderr))
            continue
        with open(os.path.join(out, "synth.json")) as f:
            dets[label] = json.load(f)["detections"]
    if len(dets) == 2:
        if dets["converted"] != dets["synth"]:
            failures.append("detections differ between converted and synth-weights files")
        elif not dets["synth"]:
            failures.append("no detections at DETECTION_MIN_CONFIDENCE=0: the comparison proves nothing")
        else:
            print("ok: converted and synthetic weights give identical detections (%d)" % len(dets["synth"]))

if failures:
    print("\n".join("FAIL: " + f for f in failures))
    sys.exit(1)
print("convert_check: all checks passed")
