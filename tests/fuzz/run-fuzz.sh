#!/bin/sh
# Builds the libFuzzer targets with clang (separately from the main gcc build) and runs
# each for a bounded time. Usage: tests/fuzz/run-fuzz.sh [SECONDS_PER_TARGET] [WORKDIR]
# Exit status is non-zero when a target fails to build or the fuzzer finds a crash
# (the reproducer is left in WORKDIR/<target>/crash-*).
set -eu
SECS="${1:-30}"
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
WORK="${2:-${TMPDIR:-/tmp}/ctxdiff-fuzz}"
CC="${FUZZ_CC:-clang}"
mkdir -p "$WORK/bin"
CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
INC="-I$root/runtime -I$root/pipeline/io"

build() { # name sources... -- libs...
  name=$1; shift
  echo "run-fuzz: building $name" >&2
  # shellcheck disable=SC2086
  $CC $CFLAGS $INC -o "$WORK/bin/$name" "$@"
}
# WebP goes through the decoder too when libwebp is installed (as in the CMake build).
WEBP=""
if pkg-config --exists libwebp 2>/dev/null; then WEBP="-DCX_HAVE_WEBP=1 $(pkg-config --cflags --libs libwebp)"; fi
# shellcheck disable=SC2086
build fuzz_image_decode "$here/fuzz_image_decode.c" "$root/pipeline/io/image_io.c" "$root/runtime/cx_error.c" \
  -lpng -ljpeg -lz $WEBP
build fuzz_safetensors_header "$here/fuzz_safetensors_header.c" "$root/runtime/safetensors.c" "$root/runtime/json.c" \
  "$root/runtime/cx_error.c" -lm

# Seed corpora: small valid inputs of each format, written by the project's own tools
# where available, plus hand-written bytes.
seeds="$WORK/seeds"
mkdir -p "$seeds/image" "$seeds/safetensors"
/usr/bin/python3 - "$seeds" <<'PY' || echo "run-fuzz: (no Python seeds; starting from empty corpora)" >&2
import io, json, struct, sys, zlib
d = sys.argv[1]
def chunk(t, b):
    return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xFFFFFFFF)
for name, (depth, ctype, ch) in {"rgb8": (8, 2, 3), "grey8": (8, 0, 1), "rgba16": (16, 6, 8), "pal": (8, 3, 1)}.items():
    w, h = 5, 4
    rows = b"".join(b"\x00" + bytes((x * 37 + y) & 255 for x in range(w * ch)) for y in range(h))
    extra = chunk(b"PLTE", bytes(range(48))) if ctype == 3 else b""
    open("%s/image/%s.png" % (d, name), "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)) + extra + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
try:
    from PIL import Image
    im = Image.new("RGB", (9, 7), (10, 200, 30))
    for q, sub in ((90, 0), (50, 2)):
        b = io.BytesIO(); im.save(b, "JPEG", quality=q, subsampling=sub); open("%s/image/q%d.jpg" % (d, q), "wb").write(b.getvalue())
    b = io.BytesIO(); im.save(b, "JPEG", progressive=True); open("%s/image/prog.jpg" % d, "wb").write(b.getvalue())
    from PIL import features
    if features.check("webp"):
        ima = Image.new("RGBA", (9, 7), (10, 200, 30, 128))
        for name, img, kw in (("lossy", im, {"quality": 80}), ("lossless", im, {"lossless": True}),
                              ("lossy_alpha", ima, {"quality": 80}), ("lossless_alpha", ima, {"lossless": True})):
            b = io.BytesIO(); img.save(b, "WEBP", **kw); open("%s/image/%s.webp" % (d, name), "wb").write(b.getvalue())
except ImportError:
    pass
hdr = json.dumps({"__metadata__": {"format": "ctxdiff-mrcnn-1"}, "a/kernel": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "a/bias": {"dtype": "F32", "shape": [3], "data_offsets": [24, 36]}}).encode()
open("%s/safetensors/small" % d, "wb").write(struct.pack("<H", len(hdr)) + hdr + bytes(36))
PY

status=0
for t in fuzz_image_decode fuzz_safetensors_header; do
  case $t in fuzz_image_decode) corpus=image ;; *) corpus=safetensors ;; esac
  mkdir -p "$WORK/$t/corpus"
  echo "run-fuzz: running $t for ${SECS}s" >&2
  if ! (cd "$WORK/$t" && "$WORK/bin/$t" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        "$WORK/$t/corpus" "$seeds/$corpus" >"$WORK/$t/log.txt" 2>&1); then
    echo "run-fuzz: $t FOUND A PROBLEM; log: $WORK/$t/log.txt" >&2
    tail -40 "$WORK/$t/log.txt" >&2
    status=1
  else
    grep -E 'stat::number_of_executed_runs|cov:' "$WORK/$t/log.txt" | tail -2 >&2 || true
  fi
done
exit $status
