/* pool.c — TensorFlow max-pooling with SAME padding and the Keras MaxPooling2D(1, 2)
 * subsampling of P6 (spec §4.1, §5).
 * Layout: NHWC float32, x [n, h, w, c] -> y [n, ceil(h/s), ceil(w/s), c].
 * SAME padding: total pad = max((out-1)*s + k - in, 0), extra row/column at bottom/right;
 * padded cells never win (they behave as -inf), i.e. only real cells are compared.
 * Validated by tests/kernels (tf_ops.maxpool_tf_same, i.e. torch max_pool2d on a -inf padded
 * input, and plain NumPy slicing for the subsampling). */
#include "cpu_kernels.h"

#include <string.h>

static void same_pad_before(int in, int k, int s, int *out, int *before) {
  int o = (in + s - 1) / s;
  int pad = (o - 1) * s + k - in;
  if (pad < 0) pad = 0;
  *out = o;
  *before = pad / 2;
}

void cx_maxpool_same(const float *x, int n, int h, int w, int c, int k, int s, float *y) {
  int ho, wo, pt, pl;
  same_pad_before(h, k, s, &ho, &pt);
  same_pad_before(w, k, s, &wo, &pl);
  const long rows = (long)n * ho;
#pragma omp parallel for schedule(static)
  for (long r = 0; r < rows; r++) {
    const int b = (int)(r / ho), oy = (int)(r % ho);
    int y0 = oy * s - pt, y1 = y0 + k;
    if (y0 < 0) y0 = 0;
    if (y1 > h) y1 = h;
    const float *xb = x + (size_t)b * h * w * c;
    float *yr = y + ((size_t)b * ho + oy) * wo * c;
    for (int ox = 0; ox < wo; ox++) {
      int x0 = ox * s - pl, x1 = x0 + k;
      if (x0 < 0) x0 = 0;
      if (x1 > w) x1 = w;
      float *yo = yr + (size_t)ox * c;
      /* The first real cell initialises the maximum (a SAME window always holds one). */
      memcpy(yo, xb + ((size_t)y0 * w + x0) * c, (size_t)c * sizeof(float));
      for (int iy = y0; iy < y1; iy++) {
        for (int ix = x0; ix < x1; ix++) {
          if (iy == y0 && ix == x0) continue;
          const float *xi = xb + ((size_t)iy * w + ix) * c;
          for (int ch = 0; ch < c; ch++) yo[ch] = xi[ch] > yo[ch] ? xi[ch] : yo[ch];
        }
      }
    }
  }
}

void cx_subsample2(const float *x, int n, int h, int w, int c, float *y) {
  const int ho = (h + 1) / 2, wo = (w + 1) / 2;
  const long rows = (long)n * ho;
#pragma omp parallel for schedule(static)
  for (long r = 0; r < rows; r++) {
    const int b = (int)(r / ho), oy = (int)(r % ho);
    const float *xr = x + (((size_t)b * h + 2 * oy) * w) * c;
    float *yr = y + ((size_t)b * ho + oy) * wo * c;
    for (int ox = 0; ox < wo; ox++)
      memcpy(yr + (size_t)ox * c, xr + (size_t)(2 * ox) * c, (size_t)c * sizeof(float));
  }
}
