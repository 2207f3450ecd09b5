/* Detection overlay (see overlay.h). Colours are evenly spaced hues in detection order
 * (matterport shuffles them randomly; we keep them reproducible). */
#include "overlay.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 5x7 glyphs, one byte per row, bit 4 = leftmost column. */
typedef struct glyph {
  char c;
  uint8_t rows[7];
} glyph;

static const glyph FONT[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}}, {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}}, {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}}, {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}}, {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}}, {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}}, {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}}, {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}}, {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}}, {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}}, {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}}, {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'/', {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10}}, {'\'', {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}}, {' ', {0, 0, 0, 0, 0, 0, 0}},
};

static const uint8_t *glyph_rows(char c) {
  if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
  for (size_t i = 0; i < sizeof FONT / sizeof FONT[0]; i++)
    if (FONT[i].c == c) return FONT[i].rows;
  return glyph_rows('?');
}

int cx_overlay_text_width(const char *text, int scale) { return (int)strlen(text) * 6 * scale; }

static void put(uint8_t *rgb, int w, int h, int x, int y, const uint8_t c[3]) {
  if (x < 0 || y < 0 || x >= w || y >= h) return;
  uint8_t *p = rgb + ((size_t)y * w + x) * 3;
  p[0] = c[0], p[1] = c[1], p[2] = c[2];
}

int cx_overlay_text(uint8_t *rgb, int w, int h, int x, int y, const char *text, int scale, const uint8_t colour[3]) {
  if (scale < 1) scale = 1;
  int cx = x;
  for (const char *s = text; *s; s++, cx += 6 * scale) {
    const uint8_t *rows = glyph_rows(*s);
    for (int r = 0; r < 7; r++)
      for (int col = 0; col < 5; col++)
        if (rows[r] & (0x10 >> col))
          for (int dy = 0; dy < scale; dy++)
            for (int dx = 0; dx < scale; dx++) put(rgb, w, h, cx + col * scale + dx, y + r * scale + dy, colour);
  }
  return cx - x;
}

void cx_overlay_colour(int i, int n, uint8_t rgb[3]) {
  double hue = n > 0 ? (double)i / n : 0.0;
  double h6 = hue * 6.0;
  int sector = (int)floor(h6) % 6;
  double f = h6 - floor(h6);
  double r, g, b;
  switch (sector) { /* HSV with s = v = 1 */
  case 0: r = 1, g = f, b = 0; break;
  case 1: r = 1 - f, g = 1, b = 0; break;
  case 2: r = 0, g = 1, b = f; break;
  case 3: r = 0, g = 1 - f, b = 1; break;
  case 4: r = f, g = 0, b = 1; break;
  default: r = 1, g = 0, b = 1 - f; break;
  }
  rgb[0] = (uint8_t)(r * 255.0 + 0.5);
  rgb[1] = (uint8_t)(g * 255.0 + 0.5);
  rgb[2] = (uint8_t)(b * 255.0 + 0.5);
}

static void dashed_box(uint8_t *rgb, int w, int h, int y1, int x1, int y2, int x2, const uint8_t c[3]) {
  /* Line width 2, dashes of 6 on / 4 off, drawn just inside the box. */
  for (int t = 0; t < 2; t++) {
    for (int x = x1; x < x2; x++)
      if ((x - x1) % 10 < 6) put(rgb, w, h, x, y1 + t, c), put(rgb, w, h, x, y2 - 1 - t, c);
    for (int y = y1; y < y2; y++)
      if ((y - y1) % 10 < 6) put(rgb, w, h, x1 + t, y, c), put(rgb, w, h, x2 - 1 - t, y, c);
  }
}

int cx_overlay_draw(uint8_t *rgb, int w, int h, const cx_detections *d, const char *const *labels, cx_err *e) {
  if (!d || d->count == 0) return 0;
  if (d->width != w || d->height != h)
    return cx_fail(e, "overlay: detections are for a %dx%d image but the image is %dx%d", d->width, d->height, w, h);
  int n = d->count;
  size_t plane = (size_t)w * h;
  /* Masks are 0 outside their rois (mrcnn.h): only the box (clipped to the image) is read,
   * not the whole plane per detection. */
  int (*bb)[4] = malloc((size_t)n * sizeof *bb);
  if (!bb) return cx_fail(e, "overlay: out of memory");
  for (int i = 0; i < n; i++) {
    const int32_t *r = d->rois + 4 * i;
    bb[i][0] = r[0] < 0 ? 0 : r[0];
    bb[i][1] = r[1] < 0 ? 0 : r[1];
    bb[i][2] = r[2] > h ? h : r[2];
    bb[i][3] = r[3] > w ? w : r[3];
  }
  /* Tint every mask first so that outlines, boxes and captions stay on top. */
  for (int i = 0; i < n; i++) {
    uint8_t c[3];
    cx_overlay_colour(i, n, c);
    const uint8_t *m = d->masks ? d->masks + plane * i : NULL;
    if (!m) continue;
    for (int y = bb[i][0]; y < bb[i][2]; y++)
      for (int x = bb[i][1]; x < bb[i][3]; x++) {
        const size_t p = (size_t)y * w + x;
        if (m[p])
          for (int k = 0; k < 3; k++) rgb[p * 3 + k] = (uint8_t)((rgb[p * 3 + k] + c[k]) / 2);
      }
  }
  for (int i = 0; i < n; i++) {
    uint8_t c[3];
    cx_overlay_colour(i, n, c);
    const uint8_t *m = d->masks ? d->masks + plane * i : NULL;
    if (m)
      for (int y = bb[i][0]; y < bb[i][2]; y++)
        for (int x = bb[i][1]; x < bb[i][3]; x++) {
          if (!m[(size_t)y * w + x]) continue;
          int edge = x == 0 || y == 0 || x == w - 1 || y == h - 1 || !m[(size_t)y * w + x - 1] ||
                     !m[(size_t)y * w + x + 1] || !m[(size_t)(y - 1) * w + x] || !m[(size_t)(y + 1) * w + x];
          if (edge) put(rgb, w, h, x, y, c);
        }
    const int32_t *r = d->rois + 4 * i;
    if (r[0] == 0 && r[1] == 0 && r[2] == 0 && r[3] == 0) continue; /* matterport skips empty boxes */
    dashed_box(rgb, w, h, r[0], r[1], r[2], r[3], c);
  }
  free(bb);
  int scale = (w < 480 || h < 480) ? 1 : (w < 1600 && h < 1600 ? 2 : 3);
  static const uint8_t white[3] = {255, 255, 255};
  /* Captions already drawn (x, y, width, height): a caption that would cover one moves
   * down (or up) a line at a time and is left out when no free spot is near its box, so
   * every caption shown stays legible. Detections come by descending score, so the
   * strongest keep their place. */
  int (*placed)[4] = labels ? calloc((size_t)n, sizeof *placed) : NULL;
  int nplaced = 0;
  if (labels && !placed) return cx_fail(e, "overlay: out of memory");
  for (int i = 0; i < n; i++) {
    if (!labels || !labels[i]) continue;
    const int32_t *r = d->rois + 4 * i;
    if (r[0] == 0 && r[1] == 0 && r[2] == 0 && r[3] == 0) continue;
    int tw = cx_overlay_text_width(labels[i], scale), th = 7 * scale;
    int x = r[1] + 2, y0 = r[0] + 2, y = y0, found = 0;
    if (x + tw + 2 > w) x = w - tw - 2;
    if (x < 0) x = 0;
    for (int attempt = 0; attempt < 12 && !found; attempt++) {
      int step = (attempt + 1) / 2 * (th + 3);
      y = y0 + ((attempt % 2) ? step : -step);
      if (y + th + 2 > h) y = h - th - 2;
      if (y < 0) y = 0;
      found = 1;
      for (int k = 0; k < nplaced && found; k++)
        if (x < placed[k][0] + placed[k][2] && placed[k][0] < x + tw && y - 1 < placed[k][1] + placed[k][3] &&
            placed[k][1] < y + th + 1)
          found = 0;
    }
    if (!found) continue;
    placed[nplaced][0] = x, placed[nplaced][1] = y - 1, placed[nplaced][2] = tw, placed[nplaced][3] = th + 2;
    nplaced++;
    /* Darkened backing so the caption stays legible on any image. */
    for (int yy = y - 1; yy < y + th + 1; yy++)
      for (int xx = x - 1; xx < x + tw; xx++)
        if (xx >= 0 && yy >= 0 && xx < w && yy < h) {
          uint8_t *p = rgb + ((size_t)yy * w + xx) * 3;
          p[0] /= 4, p[1] /= 4, p[2] /= 4;
        }
    cx_overlay_text(rgb, w, h, x, y, labels[i], scale, white);
  }
  free(placed);
  return 0;
}
