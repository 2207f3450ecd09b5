#!/usr/bin/python3
"""Image decoding (pipeline/io/image_io.c) against an independent decoder (Pillow).

Writes PNGs in every colour type / bit depth that matters (RGB, RGBA, grey, grey+alpha,
palette, palette with transparency, 1-bit, 16-bit RGB and grey, interlaced) and JPEGs
(RGB, greyscale, progressive, 4:2:0 and 4:4:4), decodes each with image_probe and
compares with Pillow's 8-bit RGB conversion. Then the broken inputs: truncated PNG and
JPEG, a PNG declaring a huge size (decompression bomb), corrupt CRC, not an image, an
empty file, a missing file, a directory. Each must fail with a message, never crash.
WebP (--webp ON, a build with libwebp): lossless RGB and RGBA against the source pixels
(exact), lossy RGB and RGBA against Pillow, then truncated, corrupt, animated and
oversized files, each refused with a message; --webp OFF: every WebP refused, saying why.

usage: image_formats.py IMAGE_PROBE WORKDIR [--webp ON|OFF]
"""
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image

probe, work = sys.argv[1], sys.argv[2]
webp = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--webp" else "OFF"
os.makedirs(work, exist_ok=True)
failures = []


def decode(path):
    out = os.path.join(work, "out.ppm")
    if os.path.exists(out):
        os.remove(out)
    r = subprocess.run([probe, path, out], capture_output=True, text=True)
    if r.returncode < 0 or r.returncode > 1 or "Sanitizer" in r.stderr or "runtime error" in r.stderr:
        failures.append("%s: probe crashed (status %d): %s" % (path, r.returncode, r.stderr))
        return None, r.stderr
    if r.returncode != 0:
        return None, r.stderr.strip()
    with open(out, "rb") as f:
        data = f.read()
    parts = data.split(b"\n", 3)
    w, h = map(int, parts[1].split())
    return np.frombuffer(parts[3], dtype=np.uint8).reshape(h, w, 3), ""


def expect_same(name, path, want, tol=0):
    got, err = decode(path)
    if got is None:
        failures.append("%s: decode failed: %s" % (name, err))
        return
    if got.shape != want.shape:
        failures.append("%s: shape %s, expected %s" % (name, got.shape, want.shape))
        return
    diff = np.abs(got.astype(int) - want.astype(int)).max()
    if diff > tol:
        failures.append("%s: max pixel difference %d (tolerance %d)" % (name, diff, tol))


def expect_error(name, path, words):
    got, err = decode(path)
    if got is not None:
        failures.append("%s: decoded but should fail" % name)
        return
    low = err.lower()
    if not any(w in low for w in words):
        failures.append("%s: message %r does not mention any of %s" % (name, err, words))


rng = np.random.default_rng(0)
H, W = 37, 53
rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
grey = rng.integers(0, 256, (H, W), dtype=np.uint8)


def save(img, name, **kw):
    p = os.path.join(work, name)
    img.save(p, **kw)
    return p


def pil_rgb(path):
    im = Image.open(path)
    if im.mode in ("I;16", "I;16B", "I"):
        # Pillow keeps 16-bit grey as integers: reduce to 8 bits by value / 257 (exact
        # for the multiples of 257 written below).
        a = np.asarray(im, dtype=np.int64) // 257
        return np.repeat(a.astype(np.uint8)[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


# --- PNG colour types
expect_same("png rgb", save(Image.fromarray(rgb), "rgb.png"), rgb)
expect_same("png rgba (alpha dropped)", save(Image.fromarray(rgba, "RGBA"), "rgba.png"), rgba[:, :, :3])
expect_same("png grey", save(Image.fromarray(grey, "L"), "grey.png"), np.repeat(grey[:, :, None], 3, 2))
la = Image.fromarray(np.stack([grey, grey[::-1]], 2), "LA")
expect_same("png grey+alpha", save(la, "la.png"), np.repeat(grey[:, :, None], 3, 2))
pal = Image.fromarray(rgb).quantize(colors=50)
p = save(pal, "palette.png")
expect_same("png palette", p, pil_rgb(p))
p = save(pal, "palette_trns.png", transparency=3)
expect_same("png palette + tRNS", p, np.asarray(pal.convert("RGB")))
bw = Image.fromarray((grey > 128).astype(np.uint8) * 255, "L").convert("1")
p = save(bw, "bw.png")
expect_same("png 1-bit", p, pil_rgb(p))
p = save(Image.fromarray(rgb), "interlaced.png", optimize=False)

# Adam7 interlaced and 16-bit files, written by hand (Pillow cannot write them).
def png_file(path, w, h, depth, ctype, raw_rows, interlace=0):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace)
    data = b"".join(b"\x00" + r for r in raw_rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))


v16 = rng.integers(0, 256, (H, W, 3)).astype(np.uint16) * 257      # exact 8-bit values
p = os.path.join(work, "rgb16.png")
png_file(p, W, H, 16, 2, [v16[y].astype(">u2").tobytes() for y in range(H)])
expect_same("png 16-bit rgb", p, (v16 // 257).astype(np.uint8))
g16 = rng.integers(0, 256, (H, W)).astype(np.uint16) * 257
p = os.path.join(work, "grey16.png")
png_file(p, W, H, 16, 0, [g16[y].astype(">u2").tobytes() for y in range(H)])
expect_same("png 16-bit grey", p, np.repeat((g16 // 257).astype(np.uint8)[:, :, None], 3, 2))
a16 = rng.integers(0, 65536, (H, W, 4)).astype(np.uint16)
a16[:, :, :3] = (a16[:, :, :3] // 257) * 257
p = os.path.join(work, "rgba16.png")
png_file(p, W, H, 16, 6, [a16[y].astype(">u2").tobytes() for y in range(H)])
expect_same("png 16-bit rgba", p, (a16[:, :, :3] // 257).astype(np.uint8))

# Adam7: pass layout from the PNG specification.
def adam7_rows(img):
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    rows = []
    for x0, y0, dx, dy in passes:
        sub = img[y0::dy, x0::dx]
        if sub.shape[0] and sub.shape[1]:
            rows += [sub[y].tobytes() for y in range(sub.shape[0])]
    return rows
p = os.path.join(work, "adam7.png")
png_file(p, W, H, 8, 2, adam7_rows(rgb), interlace=1)
expect_same("png interlaced (Adam7)", p, rgb)

# --- JPEG (Pillow's encoder; small tolerance for IDCT/upsampling differences)
smooth = np.clip(np.add.outer(np.arange(H) * 4, np.arange(W) * 3)[:, :, None] + np.array([0, 40, 80]), 0, 255).astype(np.uint8)
for name, kw in [("jpeg 4:2:0", {"quality": 90}), ("jpeg 4:4:4", {"quality": 95, "subsampling": 0}),
                 ("jpeg progressive", {"quality": 90, "progressive": True})]:
    p = save(Image.fromarray(smooth), name.replace(" ", "_").replace(":", "") + ".jpg", **kw)
    expect_same(name, p, pil_rgb(p), tol=2)
p = save(Image.fromarray(grey, "L"), "grey.jpg", quality=90)
expect_same("jpeg greyscale", p, pil_rgb(p), tol=1)
p = save(Image.fromarray(smooth).convert("CMYK"), "cmyk.jpg", quality=95)
expect_same("jpeg cmyk", p, pil_rgb(p), tol=12)

# --- broken inputs
with open(os.path.join(work, "rgb.png"), "rb") as f:
    png = f.read()
for cut in (8, 20, 40, len(png) // 2, len(png) - 13):
    p = os.path.join(work, "trunc%d.png" % cut)
    with open(p, "wb") as f:
        f.write(png[:cut])
    expect_error("truncated png (%d bytes)" % cut, p, ["truncated", "png"])
with open(os.path.join(work, "jpeg_420.jpg"), "rb") as f:
    jpg = f.read()
for cut in (3, 100, len(jpg) // 2, len(jpg) - 2):
    p = os.path.join(work, "trunc%d.jpg" % cut)
    with open(p, "wb") as f:
        f.write(jpg[:cut])
    expect_error("truncated jpeg (%d bytes)" % cut, p, ["truncated", "jpeg"])
# Decompression bomb: a valid header declaring 100000 x 100000 pixels and a tiny IDAT.
p = os.path.join(work, "bomb.png")
png_file(p, 100000, 100000, 8, 2, [b"\x00" * 3])
expect_error("png bomb", p, ["limit", "bomb"])
p = os.path.join(work, "bomb.jpg")
b = bytearray(jpg)
i = b.find(b"\xff\xc0")
b[i + 5:i + 9] = struct.pack(">HH", 60000, 60000)
with open(p, "wb") as f:
    f.write(b)
expect_error("jpeg bomb", p, ["limit", "bomb"])
bad = bytearray(png)
bad[40] ^= 0xFF
p = os.path.join(work, "crc.png")
with open(p, "wb") as f:
    f.write(bad)
expect_error("png corrupt data", p, ["png"])
for name, data in [("text.png", b"hello, this is not an image\n"), ("empty.png", b"")]:
    p = os.path.join(work, name)
    with open(p, "wb") as f:
        f.write(data)
    expect_error(name, p, ["not a png, jpeg or webp", "empty"])
expect_error("missing file", os.path.join(work, "does-not-exist.png"), ["no such file"])
expect_error("directory", work, ["directory"])

# --- WebP (Pillow's encoder, which is libwebp too: the lossless cases compare with the
# source pixels, the lossy ones with Pillow's decoding of the same file)
from PIL import features  # noqa: E402


def webp_header_only(w, h):
    """A VP8L file holding just its header: 14 bits per side, so up to 16384x16384."""
    vp8l = b"\x2f" + struct.pack("<I", (w - 1) | (h - 1) << 14) + bytes(8)
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(vp8l)) + b"WEBPVP8L" + struct.pack("<I", len(vp8l)) + vp8l


def write(name, data):
    p = os.path.join(work, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


if not features.check("webp"):
    failures.append("Pillow has no WebP support here (Debian's python3-pil has it): WebP checks not run")
else:
    lossless = save(Image.fromarray(rgb), "lossless.webp", lossless=True)
    lossless_a = save(Image.fromarray(rgba, "RGBA"), "lossless_rgba.webp", lossless=True, exact=True)
    lossy = save(Image.fromarray(smooth), "lossy.webp", quality=90)
    alpha = (np.arange(W)[None, :] * 5 + np.arange(H)[:, None] * 3) % 256
    lossy_a = save(Image.fromarray(np.dstack([smooth, alpha]).astype(np.uint8), "RGBA"), "lossy_rgba.webp", quality=90)
    anim = os.path.join(work, "anim.webp")
    Image.fromarray(smooth).save(anim, save_all=True, append_images=[Image.fromarray(255 - smooth)], duration=100,
                                 loop=0, lossless=True)
    with open(lossy, "rb") as f:
        lossy_bytes = f.read()
    if webp == "ON":
        expect_same("webp lossless", lossless, rgb)
        expect_same("webp lossless rgba (alpha dropped)", lossless_a, rgba[:, :, :3])
        expect_same("webp lossy", lossy, pil_rgb(lossy), tol=1)
        got, _ = decode(lossy)
        if got is not None and np.abs(got.astype(int) - smooth.astype(int)).mean() > 3:
            failures.append("webp lossy: mean difference from the source %.2f" % np.abs(got.astype(int) - smooth).mean())
        expect_same("webp lossy rgba (alpha dropped)", lossy_a, pil_rgb(lossy_a), tol=1)
        expect_error("webp animated", anim, ["animated"])
        for cut in (12, 20, 30, len(lossy_bytes) // 2, len(lossy_bytes) - 1):
            expect_error("truncated webp (%d bytes)" % cut, write("trunc%d.webp" % cut, lossy_bytes[:cut]),
                         ["truncated"])
        i = lossy_bytes.find(b"\x9d\x01\x2a")  # the VP8 key frame start code
        bad = bytearray(lossy_bytes)
        bad[i] ^= 0xFF
        expect_error("webp corrupt start code", write("corrupt.webp", bytes(bad)), ["webp", "corrupt"])
        expect_error("webp unknown chunk", write("junk.webp", b"RIFF\x0c\x00\x00\x00WEBPJUNK\x00\x00\x00\x00"),
                     ["webp"])
        expect_error("webp bomb", write("bomb.webp", webp_header_only(16384, 16384)), ["limit", "bomb"])
    else:
        for name, p in [("lossless", lossless), ("lossy", lossy), ("animated", anim)]:
            expect_error("webp %s without libwebp" % name, p, ["no webp support"])

if failures:
    print("\n".join("FAIL: " + f for f in failures))
    sys.exit(1)
print("image_formats: all checks passed")
