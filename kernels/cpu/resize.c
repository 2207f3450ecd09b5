/* resize.c — scikit-image resize as used by matterport (order=1, mode='constant', cval=0,
 * clip=True, anti_aliasing=False), spec §3.3, in double precision:
 *   sy = (IH/OH) * (r + 0.5) - 0.5, r0 = floor(sy), r1 = ceil(sy), dr = sy - r0 (same in x);
 *   neighbours outside the input are 0; top/bottom = (1-dc)*P(.,c0) + dc*P(.,c1);
 *   value = (1-dr)*top + dr*bottom; then clip to [lo, hi] = min/max of the whole input,
 *   except that exact 0.0 outputs stay 0 when 0 is outside [lo, hi] (cval rule).
 * Layouts: in [ih, iw, c] -> out [oh, ow, c], channels independent. The u8 form truncates
 * the clipped double toward zero (NumPy astype); the f32 form (one channel) returns doubles.
 * Validated by tests/kernels against tf_ops.skimage_resize (u8: exact up to rare +-1). */
#include "cpu_kernels.h"

#include <math.h>

typedef struct {
  int i0, i1;
  double d;
} axis_tap;

static axis_tap tap(int in, int out, int o) {
  const double f = (double)in / (double)out;
  const double s = f * ((double)o + 0.5) - 0.5;
  const double lo = floor(s);
  axis_tap t;
  t.i0 = (int)lo;
  t.i1 = (int)ceil(s);
  t.d = s - lo;
  return t;
}

/* in_u8 / out_u8 select the element types: uint8_t or float input, uint8_t (truncated) or
 * double output. The branches are loop-invariant. */
static inline double rd(const void *in, int in_u8, size_t q) {
  return in_u8 ? (double)((const uint8_t *)in)[q] : (double)((const float *)in)[q];
}

static void resize_core(const void *in, int in_u8, int ih, int iw, int c, int oh, int ow,
                        void *out, int out_u8) {
  double lo = 0.0, hi = 0.0;
  const size_t total = (size_t)ih * iw * c;
  if (total > 0) {
    lo = hi = rd(in, in_u8, 0);
    for (size_t q = 1; q < total; q++) {
      const double v = rd(in, in_u8, q);
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
  }
  const int keep_zero = !(lo <= 0.0 && 0.0 <= hi); /* cval 0 outside [lo, hi] */
#pragma omp parallel for schedule(static)
  for (int r = 0; r < oh; r++) {
    const axis_tap ty = tap(ih, oh, r);
    const int v0 = ty.i0 >= 0 && ty.i0 < ih, v1 = ty.i1 >= 0 && ty.i1 < ih;
    const size_t row0 = v0 ? (size_t)ty.i0 * iw * c : 0, row1 = v1 ? (size_t)ty.i1 * iw * c : 0;
    for (int col = 0; col < ow; col++) {
      const axis_tap tx = tap(iw, ow, col);
      const int u0 = tx.i0 >= 0 && tx.i0 < iw, u1 = tx.i1 >= 0 && tx.i1 < iw;
      const size_t c0 = u0 ? (size_t)tx.i0 * c : 0, c1 = u1 ? (size_t)tx.i1 * c : 0;
      for (int ch = 0; ch < c; ch++) {
        const double p00 = (v0 && u0) ? rd(in, in_u8, row0 + c0 + ch) : 0.0;
        const double p01 = (v0 && u1) ? rd(in, in_u8, row0 + c1 + ch) : 0.0;
        const double p10 = (v1 && u0) ? rd(in, in_u8, row1 + c0 + ch) : 0.0;
        const double p11 = (v1 && u1) ? rd(in, in_u8, row1 + c1 + ch) : 0.0;
        const double top = (1.0 - tx.d) * p00 + tx.d * p01;
        const double bottom = (1.0 - tx.d) * p10 + tx.d * p11;
        double v = (1.0 - ty.d) * top + ty.d * bottom;
        if (!(keep_zero && v == 0.0)) v = v < lo ? lo : (v > hi ? hi : v);
        const size_t o = ((size_t)r * ow + col) * c + ch;
        if (out_u8)
          ((uint8_t *)out)[o] = (uint8_t)v; /* v in [0, 255]: truncation toward zero */
        else
          ((double *)out)[o] = v;
      }
    }
  }
}

void cx_skimage_resize_u8(const uint8_t *in, int ih, int iw, int c, int oh, int ow,
                          uint8_t *out) {
  resize_core(in, 1, ih, iw, c, oh, ow, out, 1);
}

void cx_skimage_resize_f32(const float *in, int ih, int iw, int oh, int ow, double *out) {
  resize_core(in, 0, ih, iw, 1, oh, ow, out, 0);
}
