/* crop_resize.c — TensorFlow crop_and_resize (bilinear, extrapolation value 0) in exact
 * float32 arithmetic (spec §9.2) and the PyramidROIAlign level assignment (spec §9.1).
 * Layouts: feat [hf, wf, c] (one image, NHWC without the batch), boxes [nb, 4] normalized
 * (y1, x1, y2, x2), out [nb, ph, pw, c]. Interpolation in the a + (b - a) * t form, sample
 * rows/columns with in_y/in_x outside [0, Hf-1] / [0, Wf-1] are zero (NaN is treated as
 * outside). The build uses -ffp-contract=off, so no FMA is formed.
 * Validated by tests/kernels against tf_ops.crop_and_resize_tf (bit-exact) and
 * tf_ops.roi_levels (exact). */
#include "cpu_kernels.h"

#include <math.h>
#include <string.h>

void cx_crop_and_resize(const float *feat, int hf, int wf, int c, const float *boxes, int nb,
                        int ph, int pw, float *out) {
  const float fh = (float)(hf - 1), fw = (float)(wf - 1);
  const long rows = (long)nb * ph;
#pragma omp parallel for schedule(static)
  for (long r = 0; r < rows; r++) {
    const int bi = (int)(r / ph), i = (int)(r % ph);
    const float *bx = boxes + (size_t)bi * 4;
    const float y1 = bx[0], x1 = bx[1], y2 = bx[2], x2 = bx[3];
    const float hs = ((y2 - y1) * fh) / (float)(ph - 1);
    const float ws = ((x2 - x1) * fw) / (float)(pw - 1);
    float *orow = out + (size_t)r * pw * c;
    const float in_y = y1 * fh + (float)i * hs;
    if (!(in_y >= 0.0f && in_y <= fh)) {
      memset(orow, 0, (size_t)pw * c * sizeof(float));
      continue;
    }
    const float fty = floorf(in_y);
    const int ty = (int)fty, by = (int)ceilf(in_y);
    const float ly = in_y - fty;
    const float *rt = feat + (size_t)ty * wf * c;
    const float *rb = feat + (size_t)by * wf * c;
    for (int j = 0; j < pw; j++) {
      float *o = orow + (size_t)j * c;
      const float in_x = x1 * fw + (float)j * ws;
      if (!(in_x >= 0.0f && in_x <= fw)) {
        memset(o, 0, (size_t)c * sizeof(float));
        continue;
      }
      const float flx = floorf(in_x);
      const int lxi = (int)flx, rx = (int)ceilf(in_x);
      const float lx = in_x - flx;
      const float *tl = rt + (size_t)lxi * c, *tr = rt + (size_t)rx * c;
      const float *bl = rb + (size_t)lxi * c, *br = rb + (size_t)rx * c;
      for (int d = 0; d < c; d++) {
        const float top = tl[d] + (tr[d] - tl[d]) * lx;
        const float bottom = bl[d] + (br[d] - bl[d]) * lx;
        o[d] = top + (bottom - top) * ly;
      }
    }
  }
}

void cx_roi_levels(const float *boxes, int nb, int image_h, int image_w, int *levels) {
  const float image_area = (float)image_h * (float)image_w;
  const float denom = 224.0f / sqrtf(image_area);
  const float ln2 = logf(2.0f);
  for (int b = 0; b < nb; b++) {
    const float *bx = boxes + (size_t)b * 4;
    const float h = bx[2] - bx[0], w = bx[3] - bx[1];
    const float t = sqrtf(h * w) / denom;
    const float lvl = logf(t) / ln2;
    const float r = rintf(lvl); /* default rounding mode: half to even */
    int level;
    if (!(fabsf(r) < 2147483648.0f)) {
      /* -inf (zero-size box), +inf, NaN or out-of-range: TF's float->int32 cast yields
       * INT32_MIN on x86/CUDA, which the clamp turns into level 2 (spec §9.1, §18.9). */
      level = 2;
    } else {
      long long v = 4 + (long long)r;
      level = v < 2 ? 2 : (v > 5 ? 5 : (int)v);
    }
    levels[b] = level;
  }
}
