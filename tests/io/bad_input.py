#!/usr/bin/python3
"""`ctxdiff segment` with bad inputs: each a clear message, a non-zero exit, no crash and
no partial output; a failed image never stops the others; a 16-bit PNG is converted.

usage: bad_input.py --ctxdiff BIN --reference SHARED_REFERENCE_DIR --work DIR
"""
import argparse
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("--ctxdiff", required=True)
ap.add_argument("--reference", required=True)
ap.add_argument("--work", required=True)
args = ap.parse_args()
CTX = os.path.abspath(args.ctxdiff)
W = os.path.abspath(args.work)
shutil.rmtree(W, ignore_errors=True)
os.makedirs(W)
ENV = dict(os.environ)
ENV.pop("CTXDIFF_WEIGHTS", None)
FAST = ["--set", "BACKBONE=resnet50", "--set", "IMAGE_MAX_DIM=256", "--set", "IMAGE_MIN_DIM=256"]
failures = []


def run(*cmd):
    r = subprocess.run([CTX] + list(cmd), capture_output=True, text=True, cwd=W, env=ENV)
    if r.returncode < 0 or "Sanitizer" in r.stderr or "runtime error" in r.stderr:
        failures.append("%s: crash or sanitizer report (status %d):\n%s" % (" ".join(cmd[:3]), r.returncode, r.stderr))
    return r


def png_file(path, w, h, depth, ctype, rows):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    data = b"".join(b"\x00" + r for r in rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))


good = os.path.join(W, "good.png")
r = run("synth-image", "--width", "160", "--height", "120", "--seed", "1", "-o", good)
assert r.returncode == 0, r.stderr
rgb = np.asarray(Image.open(good).convert("RGB"))
Image.fromarray(rgb).save(os.path.join(W, "good.jpg"), quality=90)
with open(good, "rb") as f:
    png = f.read()
with open(os.path.join(W, "good.jpg"), "rb") as f:
    jpg = f.read()
cases = {  # file -> words the failure message must contain
    "missing.png": ["missing.png", "No such file"],
    "notimage.png": ["not a PNG, JPEG or WebP"],
    "truncated.png": ["truncated"],
    "truncated.jpg": ["truncated"],
    "truncated.webp": ["WebP"],  # "truncated" with libwebp, "no WebP support" without
    "bomb.png": ["decompression bomb"],
    "empty.jpg": ["empty"],
}
with open(os.path.join(W, "notimage.png"), "w") as f:
    f.write("GIF89a? no, plain text\n")
with open(os.path.join(W, "truncated.png"), "wb") as f:
    f.write(png[:len(png) // 2])
with open(os.path.join(W, "truncated.jpg"), "wb") as f:
    f.write(jpg[:len(jpg) // 2])
Image.fromarray(rgb).save(os.path.join(W, "good.webp"), lossless=True)
with open(os.path.join(W, "good.webp"), "rb") as f:
    webp = f.read()
with open(os.path.join(W, "truncated.webp"), "wb") as f:
    f.write(webp[:len(webp) // 2])
open(os.path.join(W, "empty.jpg"), "wb").close()
png_file(os.path.join(W, "bomb.png"), 200000, 200000, 8, 2, [b"\x00" * 3])
# 16-bit RGB PNG holding exactly the good image (v * 257): must be converted, not refused.
v16 = rgb.astype(np.uint16) * 257
png_file(os.path.join(W, "deep16.png"), rgb.shape[1], rgb.shape[0], 16, 2,
         [v16[y].astype(">u2").tobytes() for y in range(rgb.shape[0])])

# All in one run, bad ones between good ones: only the bad ones fail. Once image by image and
# once with --batch 4 (the images of a batch are decoded in parallel; a failed one is replaced
# by the next).
order = ["good.png", "missing.png", "notimage.png", "deep16.png", "truncated.png", "truncated.jpg", "bomb.png",
         "empty.jpg", "truncated.webp", "good.jpg"]
for tag, extra in (("", []), (" (--batch 4)", ["--batch", "4"])):
    out = os.path.join(W, "out" + ("-b4" if extra else ""))
    r = run("segment", *FAST, *extra, "--out", out, *[os.path.join(W, n) for n in order])
    if r.returncode != 1:
        failures.append("mixed run%s: status %d, expected 1" % (tag, r.returncode))
    if "Traceback" in r.stderr or "Sanitizer" in r.stderr or "runtime error" in r.stderr:
        failures.append("mixed run%s: crash or sanitizer report:\n%s" % (tag, r.stderr))
    summary = r.stderr[r.stderr.find("images failed"):]
    if "7 of 10 images failed" not in r.stderr:
        failures.append("mixed run%s: no '7 of 10 images failed' summary: %r" % (tag, r.stderr))
    for name, words in cases.items():
        line = [l for l in summary.splitlines() if name in l]
        if not line or not all(w.lower() in line[0].lower() for w in words):
            failures.append("%s%s: summary line %r lacks %s" % (name, tag, line, words))
        stem = name.rsplit(".", 1)[0]
        for ext in (".json", ".overlay.png"):
            if os.path.exists(os.path.join(out, stem + ext)):
                failures.append("%s: output %s written for a failed image" % (name, stem + ext))
    for stem in ("good", "good-2", "deep16"):
        for ext in (".json", ".overlay.png"):
            if not os.path.exists(os.path.join(out, stem + ext)):
                failures.append("%s%s missing: a failed image stopped the others?" % (stem, ext))
    leftovers = [n for n in os.listdir(out) if ".tmp" in n]
    if leftovers:
        failures.append("temporary files left: %s" % leftovers)
    if not failures:
        with open(os.path.join(out, "good.json")) as f:
            a = f.read()
        with open(os.path.join(out, "deep16.json")) as f:
            b = f.read()
        da, db = a[a.find('"detections"'):], b[b.find('"detections"'):]
        if da != db:
            failures.append("16-bit PNG of the same pixels gives other detections")
        print("ok: mixed run%s reports %d failures and processes the rest" % (tag, len(cases)))

# One bad image alone: message, status 1, nothing written.
for name in ("truncated.jpg", "bomb.png"):
    out1 = os.path.join(W, "single_" + name.replace(".", "_"))
    r = run("segment", *FAST, "--out", out1, os.path.join(W, name))
    if r.returncode != 1 or name not in r.stderr or os.listdir(out1):
        failures.append("%s alone: status %d, stderr %r, outputs %s" % (name, r.returncode, r.stderr,
                                                                       os.listdir(out1) if os.path.isdir(out1) else None))

# Unwritable output directories: below a regular file (fails even as root) and, when not
# root, a read-only directory. The model must not even start.
blocked = os.path.join(W, "good.png", "sub")
r = run("segment", *FAST, "--out", blocked, good)
if r.returncode == 0 or "good.png/sub" not in r.stderr:
    failures.append("output below a file: status %d, %r" % (r.returncode, r.stderr))
ro = os.path.join(W, "readonly")
os.makedirs(ro)
os.chmod(ro, 0o555)
if not os.access(ro, os.W_OK):
    r = run("segment", *FAST, "--out", ro, good)
    if r.returncode == 0 or "not writable" not in r.stderr or os.listdir(ro):
        failures.append("read-only output dir: status %d, %r" % (r.returncode, r.stderr))
os.chmod(ro, 0o755)
# No images, unknown option: usage errors (status 2).
for extra in ([], ["--frobnicate", good]):
    r = run("segment", *extra)
    if r.returncode != 2 or "usage" not in r.stderr.lower() and "unknown option" not in r.stderr:
        failures.append("usage error %s: status %d %r" % (extra, r.returncode, r.stderr))

if failures:
    print("\n".join("FAIL: " + f for f in failures))
    sys.exit(1)
print("bad_input: all checks passed")
