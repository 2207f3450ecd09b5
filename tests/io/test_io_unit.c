/* Unit tests of pipeline/io: COCO RLE (round trips, hand-checked strings), PNG encode ->
 * decode, PNG text chunks, WebP (libwebp's encoder -> our decoder, or the refusal when the
 * build has no libwebp), atomic writes, overlay colours. The RLE strings are also
 * checked by an independent Python decoder (rle_check.py, fed by --dump-rle).
 *
 *   test_io_unit                 run the checks
 *   test_io_unit --dump-rle F    write "h w counts-string mask-bits" lines for rle_check.py */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_io.h"
#include "overlay.h"
#include "rle.h"

#ifdef CX_HAVE_WEBP
#include <webp/encode.h>
#endif

static int failures = 0;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fputc('\n', stderr);                                 \
      failures++;                                          \
    }                                                      \
  } while (0)

static uint64_t rng = 0x12345678abcdefULL;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

/* Random masks with blobs and noise, shapes including 1xN, Nx1 and runs > 2^16. */
static uint8_t *make_mask(int h, int w, int kind) {
  uint8_t *m = calloc((size_t)h * w, 1);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t v = 0;
      switch (kind) {
      case 0: v = 0; break;
      case 1: v = 1; break;
      case 2: v = (rnd() % 7) == 0; break;
      case 3: v = (x - w / 2) * (x - w / 2) + (y - h / 3) * (y - h / 3) < (w * h) / 9; break;
      case 4: v = (x + y) % 2; break;
      default: v = x == 0 && y == 0; break;
      }
      m[(size_t)y * w + x] = v;
    }
  return m;
}

static const int SHAPES[][2] = {{1, 1}, {1, 7}, {9, 1}, {5, 4}, {33, 65}, {480, 640}, {400, 300}};

/* one case for the Python decoder: "h w string bits", the mask row-major as '0'/'1' */
static void dump_case(FILE *dump, int h, int w, const char *str, const uint8_t *m) {
  fprintf(dump, "%d %d %s ", h, w, str);
  for (size_t i = 0; i < (size_t)h * w; i++) fputc('0' + m[i], dump);
  fputc('\n', dump);
}

static void rle_round_trips(FILE *dump) {
  for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++)
    for (int kind = 0; kind < 6; kind++) {
      int h = SHAPES[s][0], w = SHAPES[s][1];
      uint8_t *m = make_mask(h, w, kind);
      cx_err e;
      char *str = cx_rle_encode_mask(m, h, w, &e);
      CHECK(str, "encode %dx%d kind %d: %s", h, w, kind, e.msg);
      if (!str) continue;
      uint32_t *c;
      size_t n;
      CHECK(cx_rle_from_string(str, &c, &n, &e) == 0, "decode: %s", e.msg);
      uint8_t *back = malloc((size_t)h * w);
      CHECK(cx_rle_to_mask(c, n, h, w, back, &e) == 0, "to_mask: %s", e.msg);
      CHECK(!memcmp(back, m, (size_t)h * w), "round trip differs for %dx%d kind %d", h, w, kind);
      /* The first run counts zeros: a mask starting with 1 starts with a 0-length run. */
      if (m[0]) CHECK(c[0] == 0, "first run should be empty when pixel (0,0) is set");
      if (dump) dump_case(dump, h, w, str, m);
      free(back);
      free(c);
      free(str);
      /* the box encoder on the mask cleared outside a box (in, across the edges, empty,
       * the whole image): the same string as the full scan; dumped for the Python decoder */
      const int32_t boxes[][4] = {{h / 4, w / 3, h / 4 + (h + 1) / 2, w / 3 + (w + 2) / 3},
                                  {-3, -2, h / 2 + 1, w + 5},
                                  {h / 2, -1, h + 4, w / 2 + 1},
                                  {h / 2, w / 2, h / 2, w},
                                  {0, 0, h, w},
                                  {h + 2, 0, h + 5, w}};
      for (size_t b = 0; b < sizeof boxes / sizeof boxes[0]; b++) {
        const int32_t *bx = boxes[b];
        uint8_t *mb = malloc((size_t)h * w);
        for (int y = 0; y < h; y++)
          for (int x = 0; x < w; x++)
            mb[(size_t)y * w + x] = (y >= bx[0] && y < bx[2] && x >= bx[1] && x < bx[3]) ? m[(size_t)y * w + x] : 0;
        char *full = cx_rle_encode_mask(mb, h, w, &e);
        char *boxed = cx_rle_encode_mask_box(mb, h, w, bx, &e);
        CHECK(full && boxed && !strcmp(full, boxed), "box encoder differs for %dx%d kind %d box %zu", h, w, kind, b);
        if (dump && boxed) dump_case(dump, h, w, boxed, mb);
        free(full);
        free(boxed);
        free(mb);
      }
      free(m);
    }
}

static void rle_known_values(void) {
  cx_err e;
  /* 2x3 mask, column-major 1,0 | 1,1 | 0,0  -> runs 0,1,1,2,2 */
  uint8_t m[6] = {1, 1, 0, 0, 1, 0};
  uint32_t *c;
  size_t n;
  CHECK(cx_rle_from_mask(m, 2, 3, &c, &n, &e) == 0, "%s", e.msg);
  uint32_t want[] = {0, 1, 1, 2, 2};
  CHECK(n == 5 && !memcmp(c, want, sizeof want), "runs of the 2x3 mask are wrong (n=%zu)", n);
  free(c);
  /* Hand-encoded: runs {0,1,1,2,2}: 0->'0', 1->'1', 1->'1', 2-1=1->'1', 2-1=1->'1' */
  uint32_t r1[] = {0, 1, 1, 2, 2};
  char *s = cx_rle_to_string(r1, 5);
  CHECK(s && !strcmp(s, "01111"), "string for {0,1,1,2,2} is '%s', expected '01111'", s ? s : "(null)");
  free(s);
  /* 100 = 0b11_00100: groups 00100 (more) then 00011 -> chars 48+(4|32)=84 'T', 48+3='3' */
  uint32_t r2[] = {100};
  s = cx_rle_to_string(r2, 1);
  CHECK(s && !strcmp(s, "T3"), "string for {100} is '%s', expected 'T3'", s ? s : "(null)");
  free(s);
  /* Negative delta: runs {5,5,5,1}: 4th is 1-5=-4 -> 5 bits 11100 (sign bit set, rest -1) -> 48+28='L' */
  uint32_t r3[] = {5, 5, 5, 1};
  s = cx_rle_to_string(r3, 4);
  CHECK(s && !strcmp(s, "555L"), "string for {5,5,5,1} is '%s', expected '555L'", s ? s : "(null)");
  free(s);
  /* Malformed strings are errors, not crashes. */
  CHECK(cx_rle_from_string("T", &c, &n, &e) != 0, "a dangling continuation must fail");
  CHECK(cx_rle_from_string("0 1", &c, &n, &e) != 0, "a space must fail");
  CHECK(cx_rle_from_string("L", &c, &n, &e) != 0, "a negative first run must fail");
  CHECK(cx_rle_from_string("0123", &c, &n, &e) == 0, "valid string rejected: %s", e.msg);
  uint8_t mm[4];
  CHECK(cx_rle_to_mask(c, n, 2, 2, mm, &e) != 0, "runs summing to 7 must not fill a 2x2 mask");
  free(c);
}

static void png_round_trip(const char *dir) {
  cx_err e;
  for (int ch = 1; ch <= 4; ch++) {
    if (ch == 2) continue;
    int w = 37, h = 23;
    uint8_t *px = malloc((size_t)w * h * ch);
    for (int i = 0; i < w * h * ch; i++) px[i] = (uint8_t)rnd();
    cx_png_text t[2] = {{"parameters", "a prompt, steps 20"}, {"long", NULL}};
    char longv[3000];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    t[1].value = longv;
    uint8_t *buf;
    size_t len;
    CHECK(cx_png_encode(w, h, ch, px, t, 2, &buf, &len, &e) == 0, "encode: %s", e.msg);
    cx_rgb_image im;
    CHECK(cx_image_decode(buf, len, &im, &e) == 0, "decode: %s", e.msg);
    CHECK(im.width == w && im.height == h, "size %dx%d", im.width, im.height);
    int bad = 0;
    for (int i = 0; i < w * h && !bad; i++)
      for (int k = 0; k < 3; k++) {
        uint8_t want = ch == 1 ? px[i] : px[i * ch + k];
        if (im.rgb[i * 3 + k] != want) bad = 1;
      }
    CHECK(!bad, "PNG round trip with %d channels changed pixels", ch);
    char *txt = cx_png_read_text(buf, len, "parameters");
    CHECK(txt && !strcmp(txt, "a prompt, steps 20"), "tEXt read back as '%s'", txt ? txt : "(null)");
    free(txt);
    txt = cx_png_read_text(buf, len, "long");
    CHECK(txt && !strcmp(txt, longv), "zTXt not read back");
    free(txt);
    CHECK(cx_png_read_text(buf, len, "absent") == NULL, "absent key found");
    /* Every truncation is an error, never a crash or a silently short image. */
    for (size_t cut = 0; cut < len; cut += (cut < 64 ? 1 : 97)) {
      cx_rgb_image t2;
      if (cx_image_decode(buf, cut, &t2, &e) == 0) {
        CHECK(0, "PNG truncated to %zu of %zu bytes decoded", cut, len);
        cx_rgb_image_free(&t2);
      }
    }
    cx_rgb_image_free(&im);
    char path[512];
    snprintf(path, sizeof path, "%s/rt%d.png", dir, ch);
    CHECK(cx_png_write(path, w, h, ch, px, NULL, 0, &e) == 0, "png_write: %s", e.msg);
    CHECK(cx_image_load(path, &im, &e) == 0, "load: %s", e.msg);
    cx_rgb_image_free(&im);
    /* the fast (preview) encoder is as lossless */
    snprintf(path, sizeof path, "%s/rt%d_fast.png", dir, ch);
    CHECK(cx_png_write_fast(path, w, h, ch, px, &e) == 0, "png_write_fast: %s", e.msg);
    if (cx_image_load(path, &im, &e) == 0) {
      int diff = im.width != w || im.height != h;
      for (int i = 0; i < w * h && !diff; i++)
        for (int k = 0; k < 3; k++)
          if (im.rgb[i * 3 + k] != (ch == 1 ? px[i] : px[i * ch + k])) diff = 1;
      CHECK(!diff, "fast PNG round trip with %d channels changed pixels", ch);
      cx_rgb_image_free(&im);
    } else {
      CHECK(0, "load fast PNG: %s", e.msg);
    }
    free(buf);
    free(px);
  }
}

/* A VP8L (lossless) WebP that holds only its header: 1..16384 per side can be declared in
 * 14 bits each, so it can claim more than CX_IMAGE_MAX_PIXELS. */
static size_t webp_header_only(uint8_t *b, unsigned w, unsigned h) {
  static const uint8_t head[20] = {'R', 'I', 'F', 'F', 25, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', 'L', 13, 0, 0, 0};
  memcpy(b, head, 20);
  uint32_t bits = (w - 1) | (h - 1) << 14; /* alpha hint 0, version 0 */
  b[20] = 0x2f;
  for (int i = 0; i < 4; i++) b[21 + i] = (uint8_t)(bits >> (8 * i));
  memset(b + 25, 0, 8);
  return 33;
}

static void webp_checks(void) {
  cx_err e;
  cx_rgb_image im;
  uint8_t hdr[33];
  size_t hlen = webp_header_only(hdr, 16384, 16384);
#ifndef CX_HAVE_WEBP
  CHECK(cx_image_decode(hdr, hlen, &im, &e) != 0 && strstr(e.msg, "no WebP support") && strstr(e.msg, "libwebp"),
        "a build without libwebp must refuse WebP and say why: '%s'", e.msg);
#else
  CHECK(cx_image_decode(hdr, hlen, &im, &e) != 0 && strstr(e.msg, "limit"), "16384x16384 WebP: '%s'", e.msg);
  hlen = webp_header_only(hdr, 3, 2);
  CHECK(cx_image_decode(hdr, hlen, &im, &e) != 0 && strstr(e.msg, "WebP"), "header without pixels: '%s'", e.msg);
  int w = 41, h = 27;
  uint8_t *px = malloc((size_t)w * h * 4);
  for (int ch = 3; ch <= 4; ch++) {
    /* Random pixels: exact after a lossless round trip. Alpha stays >= 1 because the
     * lossless encoder may rewrite the colour of fully transparent pixels. */
    for (int i = 0; i < w * h * ch; i++) px[i] = (uint8_t)(ch == 4 && i % 4 == 3 ? 1 + rnd() % 255 : rnd());
    uint8_t *buf = NULL;
    size_t len = ch == 3 ? WebPEncodeLosslessRGB(px, w, h, w * 3, &buf) : WebPEncodeLosslessRGBA(px, w, h, w * 4, &buf);
    CHECK(len > 0, "libwebp failed to encode the test image");
    if (!len) continue;
    CHECK(cx_image_decode(buf, len, &im, &e) == 0, "lossless WebP (%d channels): %s", ch, e.msg);
    if (im.rgb) {
      int bad = im.width != w || im.height != h;
      for (int i = 0; i < w * h && !bad; i++)
        for (int k = 0; k < 3; k++) bad |= im.rgb[i * 3 + k] != px[i * ch + k];
      CHECK(!bad, "lossless WebP round trip with %d channels changed pixels (alpha must be dropped)", ch);
      cx_rgb_image_free(&im);
    }
    /* Every truncation is an error, never a crash or a silently short image. */
    for (size_t cut = 0; cut < len; cut += (cut < 64 ? 1 : 37)) {
      if (cx_image_decode(buf, cut, &im, &e) == 0) {
        CHECK(0, "WebP truncated to %zu of %zu bytes decoded", cut, len);
        cx_rgb_image_free(&im);
      } else {
        CHECK(e.msg[0], "a failed decode must say why");
      }
    }
    /* A broken VP8L signature byte: a clean error. */
    CHECK(len > 21 && !memcmp(buf + 12, "VP8L", 4), "libwebp wrote no plain VP8L file");
    buf[20] ^= 0xff;
    CHECK(cx_image_decode(buf, len, &im, &e) != 0, "WebP with a corrupt header decoded");
    WebPFree(buf);
  }
  /* Lossy: a smooth gradient comes back close to the original (the exact values are
   * checked against Pillow in image_formats.py). */
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int k = 0; k < 3; k++) px[(y * w + x) * 3 + k] = (uint8_t)(40 + 3 * x + 2 * y + 30 * k);
  uint8_t *buf = NULL;
  size_t len = WebPEncodeRGB(px, w, h, w * 3, 95.0f, &buf);
  CHECK(len > 0 && cx_image_decode(buf, len, &im, &e) == 0, "lossy WebP: %s", e.msg);
  if (len && im.rgb) {
    double sum = 0;
    for (int i = 0; i < w * h * 3; i++) sum += abs((int)im.rgb[i] - (int)px[i]);
    CHECK(im.width == w && im.height == h && sum / (w * h * 3) < 3.0, "lossy WebP differs by %.2f on average",
          sum / (w * h * 3));
    cx_rgb_image_free(&im);
  }
  WebPFree(buf);
  free(px);
#endif
}

static void atomic_write(const char *dir) {
  cx_err e;
  char path[512];
  snprintf(path, sizeof path, "%s/atomic.txt", dir);
  CHECK(cx_write_file_atomic(path, "hello", 5, &e) == 0, "%s", e.msg);
  CHECK(cx_write_file_atomic(path, "bye", 3, &e) == 0, "%s", e.msg);
  FILE *f = fopen(path, "rb");
  char buf[16] = {0};
  size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f) fclose(f);
  CHECK(n == 3 && !memcmp(buf, "bye", 3), "atomic overwrite gave '%s'", buf);
  struct stat st;
  CHECK(stat(path, &st) == 0 && (st.st_mode & 0600) == 0600, "atomic file must be readable and writable by its owner");
  snprintf(path, sizeof path, "%s/no/such/dir/x.txt", dir);
  CHECK(cx_write_file_atomic(path, "x", 1, &e) != 0 && strstr(e.msg, "no/such/dir"), "error must name the path");
}

static void overlay_checks(void) {
  uint8_t c[3];
  cx_overlay_colour(0, 3, c);
  CHECK(c[0] == 255 && c[1] == 0 && c[2] == 0, "hue 0 is red");
  cx_overlay_colour(1, 3, c);
  CHECK(c[0] == 0 && c[1] == 255 && c[2] == 0, "hue 1/3 is green");
  cx_overlay_colour(2, 3, c);
  CHECK(c[0] == 0 && c[1] == 0 && c[2] == 255, "hue 2/3 is blue");
  /* A 20x20 grey image, one instance covering rows/cols 3..14: tinted 0.5 inside (away
   * from the outline and the dashed box), unchanged outside the box. */
  int w = 20, h = 20;
  uint8_t img[1200];
  memset(img, 100, sizeof img);
  uint8_t mask[400] = {0};
  for (int y = 3; y < 15; y++)
    for (int x = 3; x < 15; x++) mask[y * w + x] = 1;
  int32_t roi[4] = {3, 3, 15, 15}, cls = 1;
  float score = 0.9f;
  cx_detections d = {1, h, w, roi, &cls, &score, mask};
  cx_err e;
  CHECK(cx_overlay_draw(img, w, h, &d, NULL, &e) == 0, "%s", e.msg);
  CHECK(img[(0 * w + 0) * 3] == 100 && img[(19 * w + 19) * 3] == 100, "outside pixel changed");
  const uint8_t *p = img + (9 * w + 9) * 3;
  CHECK(p[0] == (100 + 255) / 2 && p[1] == 50 && p[2] == 50, "tint is %d,%d,%d", p[0], p[1], p[2]);
  p = img + (3 * w + 3) * 3; /* outline / box corner: full colour */
  CHECK(p[0] == 255 && p[1] == 0 && p[2] == 0, "outline is %d,%d,%d", p[0], p[1], p[2]);
  cx_detections bad = {1, 5, 5, roi, &cls, &score, mask};
  CHECK(cx_overlay_draw(img, w, h, &bad, NULL, &e) != 0, "size mismatch must fail");
  CHECK(cx_overlay_text_width("ab", 2) == 24, "text width");
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--dump-rle")) {
    FILE *f = fopen(argv[2], "w");
    if (!f) return 1;
    rle_round_trips(f);
    fclose(f);
    return failures ? 1 : 0;
  }
  char dir[] = "/tmp/cx_io_unit.XXXXXX";
  if (!mkdtemp(dir)) return 1;
  rle_known_values();
  rle_round_trips(NULL);
  png_round_trip(dir);
  webp_checks();
  atomic_write(dir);
  overlay_checks();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd)) { /* best effort */
  }
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("io unit tests passed\n");
  return 0;
}
