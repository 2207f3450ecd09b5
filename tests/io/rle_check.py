#!/usr/bin/python3
"""Independent check of ctxdiff's COCO compressed RLE (pipeline/io/rle.c).

Written from the format description, not from pycocotools' code (which is not
installed here): the mask is flattened in column-major (Fortran) order, split into
alternating runs starting with a run of zeros; each run length (from the fourth on,
minus the run two places earlier) is cut into 5-bit groups, least significant first;
every group is written as chr(48 + group), with 0x20 added while more groups follow;
the last group's 0x10 bit is the sign bit of the (two's complement) value.

usage: rle_check.py TEST_IO_UNIT_BINARY WORKDIR
"""
import os
import subprocess
import sys

import numpy as np


def decode_counts(s):
    counts = []
    p = 0
    while p < len(s):
        value, shift = 0, 0
        while True:
            g = ord(s[p]) - 48
            if not 0 <= g < 64:
                raise ValueError("bad character %r" % s[p])
            p += 1
            value |= (g & 0x1F) << shift
            shift += 5
            if not g & 0x20:
                if g & 0x10:
                    value -= 1 << shift      # sign-extend the two's complement value
                break
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def encode_counts(counts):
    out = []
    for i, c in enumerate(counts):
        v = c - counts[i - 2] if i > 2 else c
        while True:
            g = v & 0x1F
            v >>= 5
            last = (v == -1) if g & 0x10 else (v == 0)
            out.append(chr(48 + (g if last else g | 0x20)))
            if last:
                break
    return "".join(out)


def mask_counts(mask):
    flat = mask.flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return counts


def counts_to_mask(counts, h, w):
    flat = np.zeros(h * w, dtype=np.uint8)
    pos = 0
    for i, c in enumerate(counts):
        if c < 0:
            raise ValueError("negative run")
        flat[pos:pos + c] = i % 2
        pos += c
    if pos != h * w:
        raise ValueError("runs cover %d of %d pixels" % (pos, h * w))
    return flat.reshape((h, w), order="F")


def main():
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    dump = os.path.join(work, "rle_vectors.txt")
    subprocess.run([binary, "--dump-rle", dump], check=True)
    n = 0
    with open(dump) as f:
        for line in f:
            h, w, s, bits = line.split()
            h, w = int(h), int(w)
            mask = (np.frombuffer(bits.encode(), dtype=np.uint8) - 48).reshape(h, w)
            got = counts_to_mask(decode_counts(s), h, w)
            assert np.array_equal(got, mask), "decoded mask differs for %dx%d" % (h, w)
            # Our encoder from the description must give the very same string.
            want = encode_counts(mask_counts(mask)) if mask.size < 100000 else None
            if want is not None:
                assert want == s, "string differs for %dx%d: %r vs %r" % (h, w, s[:40], want[:40])
            n += 1
    assert n >= 30, "too few vectors (%d)" % n
    os.remove(dump)
    print("rle_check: %d masks decode identically" % n)


if __name__ == "__main__":
    main()
