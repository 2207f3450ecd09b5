/* COCO compressed RLE (see rle.h for the format). */
#include "rle.h"

#include <stdlib.h>
#include <string.h>

int cx_rle_from_mask(const uint8_t *mask, int h, int w, uint32_t **counts, size_t *n, cx_err *e) {
  *counts = NULL;
  *n = 0;
  if (h <= 0 || w <= 0) return cx_fail(e, "RLE: invalid mask size %dx%d", h, w);
  size_t total = (size_t)h * w, cap = 64, k = 0;
  uint32_t *c = malloc(cap * sizeof *c);
  if (!c) return cx_fail(e, "RLE: out of memory");
  uint8_t cur = 0;
  uint32_t run = 0;
  for (int x = 0; x < w; x++) {
    for (int y = 0; y < h; y++) {
      uint8_t v = mask[(size_t)y * w + x] ? 1 : 0;
      if (v != cur) {
        if (k + 1 >= cap) {
          uint32_t *nc = realloc(c, cap * 2 * sizeof *c);
          if (!nc) {
            free(c);
            return cx_fail(e, "RLE: out of memory");
          }
          c = nc;
          cap *= 2;
        }
        c[k++] = run;
        run = 0;
        cur = v;
      }
      run++;
    }
  }
  (void)total;
  c[k++] = run;
  *counts = c;
  *n = k;
  return 0;
}

/* Run accumulator of the box encoder: appends `len` pixels of value v. */
typedef struct {
  uint32_t *c;
  size_t k, cap;
  uint8_t cur;
  uint32_t run;
} rle_acc;

static int acc_add(rle_acc *a, uint8_t v, uint32_t len) {
  if (!len) return 0;
  if (v != a->cur) {
    if (a->k + 1 >= a->cap) {
      uint32_t *nc = realloc(a->c, a->cap * 2 * sizeof *nc);
      if (!nc) return -1;
      a->c = nc;
      a->cap *= 2;
    }
    a->c[a->k++] = a->run;
    a->run = 0;
    a->cur = v;
  }
  a->run += len;
  return 0;
}

int cx_rle_from_mask_box(const uint8_t *mask, int h, int w, const int32_t box[4], uint32_t **counts, size_t *n,
                         cx_err *e) {
  *counts = NULL;
  *n = 0;
  if (h <= 0 || w <= 0) return cx_fail(e, "RLE: invalid mask size %dx%d", h, w);
  /* the box clipped to the image; an empty one encodes an all-zero mask */
  const int y1 = box[0] < 0 ? 0 : box[0], x1 = box[1] < 0 ? 0 : box[1];
  const int y2 = box[2] > h ? h : box[2], x2 = box[3] > w ? w : box[3];
  rle_acc a = {malloc(64 * sizeof(uint32_t)), 0, 64, 0, 0};
  if (!a.c) return cx_fail(e, "RLE: out of memory");
  int bad = 0;
  if (y1 >= y2 || x1 >= x2) {
    bad |= acc_add(&a, 0, (uint32_t)((size_t)h * w));
  } else {
    bad |= acc_add(&a, 0, (uint32_t)((size_t)x1 * h)); /* whole columns left of the box */
    for (int x = x1; x < x2 && !bad; x++) {
      bad |= acc_add(&a, 0, (uint32_t)y1);
      /* one column of the box: its rows are 5-20 cache lines wide, so the box's lines stay in
       * cache from one column to the next */
      const uint8_t *col = mask + x;
      for (int y = y1; y < y2 && !bad;) {
        const int y0 = y;
        const uint8_t v = col[(size_t)y * w] != 0;
        while (y < y2 && (col[(size_t)y * w] != 0) == v) y++;
        bad |= acc_add(&a, v, (uint32_t)(y - y0));
      }
      bad |= acc_add(&a, 0, (uint32_t)(h - y2));
    }
    bad |= acc_add(&a, 0, (uint32_t)((size_t)(w - x2) * h));
  }
  if (bad) {
    free(a.c);
    return cx_fail(e, "RLE: out of memory");
  }
  a.c[a.k++] = a.run;
  *counts = a.c;
  *n = a.k;
  return 0;
}

char *cx_rle_encode_mask_box(const uint8_t *mask, int h, int w, const int32_t box[4], cx_err *e) {
  uint32_t *c;
  size_t n;
  if (cx_rle_from_mask_box(mask, h, w, box, &c, &n, e)) return NULL;
  char *s = cx_rle_to_string(c, n);
  free(c);
  if (!s) cx_fail(e, "RLE: out of memory");
  return s;
}

char *cx_rle_to_string(const uint32_t *counts, size_t n) {
  /* A 33-bit signed delta needs at most 7 groups of 5 bits. */
  char *s = malloc(n * 7 + 1);
  if (!s) return NULL;
  size_t p = 0;
  for (size_t i = 0; i < n; i++) {
    int64_t x = (int64_t)counts[i];
    if (i > 2) x -= (int64_t)counts[i - 2];
    int more = 1;
    while (more) {
      int64_t c = x & 0x1f;
      x >>= 5; /* arithmetic shift: the sign propagates */
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      s[p++] = (char)(c + 48);
    }
  }
  s[p] = 0;
  return s;
}

char *cx_rle_encode_mask(const uint8_t *mask, int h, int w, cx_err *e) {
  uint32_t *c;
  size_t n;
  if (cx_rle_from_mask(mask, h, w, &c, &n, e)) return NULL;
  char *s = cx_rle_to_string(c, n);
  free(c);
  if (!s) cx_fail(e, "RLE: out of memory");
  return s;
}

int cx_rle_from_string(const char *s, uint32_t **counts, size_t *n, cx_err *e) {
  *counts = NULL;
  *n = 0;
  size_t len = strlen(s);
  uint32_t *c = malloc((len + 1) * sizeof *c);
  if (!c) return cx_fail(e, "RLE: out of memory");
  size_t m = 0, p = 0;
  while (p < len) {
    int64_t x = 0;
    int k = 0, more = 1;
    while (more) {
      if (p >= len) {
        free(c);
        return cx_fail(e, "RLE string ends inside a run length (at offset %zu)", p);
      }
      int ch = (unsigned char)s[p];
      if (ch < 48 || ch > 48 + 63) {
        free(c);
        return cx_fail(e, "RLE string has an invalid character 0x%02x at offset %zu", ch, p);
      }
      int64_t v = ch - 48;
      if (k >= 7) {
        free(c);
        return cx_fail(e, "RLE string has an over-long run length at offset %zu", p);
      }
      x |= (v & 0x1f) << (5 * k);
      more = (int)(v & 0x20);
      p++;
      k++;
      if (!more && (v & 0x10)) x |= (int64_t)(~(uint64_t)0 << (5 * k));
    }
    if (m > 2) x += (int64_t)c[m - 2];
    if (x < 0 || x > (int64_t)UINT32_MAX) {
      free(c);
      return cx_fail(e, "RLE string decodes to an invalid run length %lld (run %zu)", (long long)x, m);
    }
    c[m++] = (uint32_t)x;
  }
  *counts = c;
  *n = m;
  return 0;
}

int cx_rle_to_mask(const uint32_t *counts, size_t n, int h, int w, uint8_t *mask, cx_err *e) {
  if (h <= 0 || w <= 0) return cx_fail(e, "RLE: invalid mask size %dx%d", h, w);
  uint64_t total = (uint64_t)h * (uint64_t)w, sum = 0;
  for (size_t i = 0; i < n; i++) sum += counts[i];
  if (sum != total)
    return cx_fail(e, "RLE runs cover %llu pixels but the mask has %dx%d = %llu", (unsigned long long)sum, h, w,
                   (unsigned long long)total);
  uint64_t pos = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t v = (uint8_t)(i & 1);
    for (uint32_t r = 0; r < counts[i]; r++, pos++) {
      uint64_t x = pos / (uint64_t)h, y = pos % (uint64_t)h;
      mask[y * (uint64_t)w + x] = v;
    }
  }
  return 0;
}
