/* boxes.c — box arithmetic of the proposal/detection layers and of the host side:
 *   cx_apply_box_deltas  apply_box_deltas_graph, float32, exactly the order of spec §8 step 4;
 *   cx_clip_boxes        clip_boxes_graph, v = max(min(v, hi), lo) per coordinate;
 *   cx_norm_boxes        norm_boxes (spec §6.4), double, then float32;
 *   cx_denorm_boxes      denorm_boxes (spec §6.4): double multiply, + shift, np.around
 *                        (half to even), int32;
 *   cx_anchor_count / cx_generate_anchors  pyramid anchors of spec §6.2/§6.3 in double.
 * Layouts: boxes [nb, 4] as (y1, x1, y2, x2); anchors [count, 4], level-major, then
 * row-major positions, then ratios in the given order.
 * Validated by tests/kernels against tf_ops.apply_box_deltas / clip_boxes / norm_boxes /
 * denorm_boxes / generate_anchors. */
#include "cpu_kernels.h"

#include <math.h>

void cx_apply_box_deltas(const float *boxes, const float *deltas, int nb, float *out) {
  for (int i = 0; i < nb; i++) {
    const float *b = boxes + (size_t)i * 4, *d = deltas + (size_t)i * 4;
    const float by1 = b[0], bx1 = b[1], by2 = b[2], bx2 = b[3];
    const float dy = d[0], dx = d[1], dh = d[2], dw = d[3];
    float h = by2 - by1;
    float w = bx2 - bx1;
    float cy = by1 + 0.5f * h;
    float cx = bx1 + 0.5f * w;
    cy = cy + dy * h;
    cx = cx + dx * w;
    h = h * expf(dh);
    w = w * expf(dw);
    const float y1 = cy - 0.5f * h;
    const float x1 = cx - 0.5f * w;
    float *o = out + (size_t)i * 4;
    o[0] = y1;
    o[1] = x1;
    o[2] = y1 + h;
    o[3] = x1 + w;
  }
}

static inline float clampf(float v, float lo, float hi) {
  v = v < hi ? v : hi; /* tf.minimum / tf.maximum */
  return v > lo ? v : lo;
}

void cx_clip_boxes(float *boxes, int nb, const float window[4]) {
  const float wy1 = window[0], wx1 = window[1], wy2 = window[2], wx2 = window[3];
  for (int i = 0; i < nb; i++) {
    float *b = boxes + (size_t)i * 4;
    b[0] = clampf(b[0], wy1, wy2);
    b[1] = clampf(b[1], wx1, wx2);
    b[2] = clampf(b[2], wy1, wy2);
    b[3] = clampf(b[3], wx1, wx2);
  }
}

void cx_norm_boxes(const double *boxes_px, int nb, int h, int w, float *out) {
  const double sh = (double)(h - 1), sw = (double)(w - 1);
  for (int i = 0; i < nb; i++) {
    const double *b = boxes_px + (size_t)i * 4;
    float *o = out + (size_t)i * 4;
    o[0] = (float)((b[0] - 0.0) / sh);
    o[1] = (float)((b[1] - 0.0) / sw);
    o[2] = (float)((b[2] - 1.0) / sh);
    o[3] = (float)((b[3] - 1.0) / sw);
  }
}

static int32_t round_to_i32(double v) {
  const double r = nearbyint(v); /* half to even in the default rounding mode */
  /* NumPy's astype(int32) of a non-representable value is INT32_MIN on x86; avoid UB. */
  if (!(r >= -2147483648.0 && r <= 2147483647.0)) return INT32_MIN;
  return (int32_t)r;
}

void cx_denorm_boxes(const float *boxes, int nb, int h, int w, int32_t *out) {
  const double sh = (double)(h - 1), sw = (double)(w - 1);
  for (int i = 0; i < nb; i++) {
    const float *b = boxes + (size_t)i * 4;
    int32_t *o = out + (size_t)i * 4;
    o[0] = round_to_i32((double)b[0] * sh + 0.0);
    o[1] = round_to_i32((double)b[1] * sw + 0.0);
    o[2] = round_to_i32((double)b[2] * sh + 1.0);
    o[3] = round_to_i32((double)b[3] * sw + 1.0);
  }
}

size_t cx_anchor_count(const int *feat_h, const int *feat_w, int levels, int ratios,
                       int anchor_stride) {
  size_t total = 0;
  for (int l = 0; l < levels; l++) {
    const size_t ny = (size_t)((feat_h[l] + anchor_stride - 1) / anchor_stride);
    const size_t nx = (size_t)((feat_w[l] + anchor_stride - 1) / anchor_stride);
    total += ny * nx * (size_t)ratios;
  }
  return total;
}

void cx_generate_anchors(const double *scales, int levels, const double *ratios, int nratios,
                         const int *feat_h, const int *feat_w, const int *strides,
                         int anchor_stride, double *out_px) {
  double *o = out_px;
  for (int l = 0; l < levels; l++) {
    const double s = scales[l];
    for (int y = 0; y < feat_h[l]; y += anchor_stride) {
      const double cy = (double)y * (double)strides[l];
      for (int x = 0; x < feat_w[l]; x += anchor_stride) {
        const double cx = (double)x * (double)strides[l];
        for (int r = 0; r < nratios; r++) {
          const double sq = sqrt(ratios[r]);
          const double hh = s / sq, ww = s * sq;
          o[0] = cy - 0.5 * hh;
          o[1] = cx - 0.5 * ww;
          o[2] = cy + 0.5 * hh;
          o[3] = cx + 0.5 * ww;
          o += 4;
        }
      }
    }
  }
}
