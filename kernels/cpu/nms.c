/* nms.c — TensorFlow non_max_suppression (V2/V3) semantics, float32 (spec §8.1, §16.6):
 * candidates in descending score order with stable ties (ascending index; NaN scores last);
 * a candidate is dropped when its IoU with an already selected box is strictly greater
 * than the float32 threshold; boxes with area <= 0 have IoU 0 with everything, so they are
 * never suppressed and never suppress. Coordinates are min/max-normalised per box, so
 * (y1, x1, y2, x2) and flipped corners give the same result.
 * Layout: boxes [n, 4], scores [n]; sel_out [max_out] receives indices into boxes in
 * selection order; ws of cx_nms_workspace(n) bytes.
 * Greedy forward suppression on struct-of-arrays copies of the sorted boxes.
 * Validated by tests/kernels against tf_ops.nms_tf (tie_order="stable"), exact. */
#include "cpu_kernels.h"

#include "sortkeys.h"

#define CX_ALIGN_UP(v) (((v) + 63u) & ~(size_t)63u)

size_t cx_nms_workspace(int n) {
  const size_t nn = n > 0 ? (size_t)n : 1;
  return CX_ALIGN_UP(nn * sizeof(int)) + CX_ALIGN_UP(nn * sizeof(uint32_t)) +
         5 * CX_ALIGN_UP(nn * sizeof(float)) + CX_ALIGN_UP(nn) + 64;
}

int cx_nms(const float *boxes, const float *scores, int n, int max_out, float iou_threshold,
           int *sel_out, void *ws) {
  if (n <= 0 || max_out <= 0) return 0;
  const size_t nn = (size_t)n;
  /* carve the workspace (64-byte aligned pieces) */
  unsigned char *p = (unsigned char *)ws;
  p += (64 - ((uintptr_t)p & 63u)) & 63u;
  int *order = (int *)p;
  p += CX_ALIGN_UP(nn * sizeof(int));
  uint32_t *key = (uint32_t *)p;
  p += CX_ALIGN_UP(nn * sizeof(uint32_t));
  float *ymin = (float *)p;
  p += CX_ALIGN_UP(nn * sizeof(float));
  float *xmin = (float *)p;
  p += CX_ALIGN_UP(nn * sizeof(float));
  float *ymax = (float *)p;
  p += CX_ALIGN_UP(nn * sizeof(float));
  float *xmax = (float *)p;
  p += CX_ALIGN_UP(nn * sizeof(float));
  float *area = (float *)p;
  p += CX_ALIGN_UP(nn * sizeof(float));
  unsigned char *alive = p;

  for (int i = 0; i < n; i++) {
    order[i] = i;
    key[i] = cx_desc_key(scores[i]);
  }
  cx_partial_sort(order, n, n, key);

  for (int r = 0; r < n; r++) {
    const float *b = boxes + (size_t)order[r] * 4;
    const float y1 = b[0], x1 = b[1], y2 = b[2], x2 = b[3];
    ymin[r] = y1 < y2 ? y1 : y2;
    ymax[r] = y1 < y2 ? y2 : y1;
    xmin[r] = x1 < x2 ? x1 : x2;
    xmax[r] = x1 < x2 ? x2 : x1;
    area[r] = (ymax[r] - ymin[r]) * (xmax[r] - xmin[r]);
    alive[r] = 1;
  }

  int count = 0;
  for (int r = 0; r < n && count < max_out; r++) {
    if (!alive[r]) continue;
    sel_out[count++] = order[r];
    if (count == max_out) break;
    const float ai = area[r];
    if (!(ai > 0.0f)) continue; /* a zero-area box suppresses nothing */
    const float y0i = ymin[r], y1i = ymax[r], x0i = xmin[r], x1i = xmax[r];
    for (int j = r + 1; j < n; j++) {
      const float aj = area[j];
      if (!alive[j] || !(aj > 0.0f)) continue; /* zero-area boxes are never suppressed */
      const float ih0 = (y1i < ymax[j] ? y1i : ymax[j]) - (y0i > ymin[j] ? y0i : ymin[j]);
      const float iw0 = (x1i < xmax[j] ? x1i : xmax[j]) - (x0i > xmin[j] ? x0i : xmin[j]);
      const float ih = ih0 > 0.0f ? ih0 : 0.0f;
      const float iw = iw0 > 0.0f ? iw0 : 0.0f;
      const float inter = ih * iw;
      const float iou = inter / (ai + aj - inter);
      if (iou > iou_threshold) alive[j] = 0;
    }
  }
  return count;
}
