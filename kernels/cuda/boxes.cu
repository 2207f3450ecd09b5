/* boxes.cu — apply_box_deltas_graph (spec §8 step 4) and clip_boxes_graph (spec §8 step 5)
 * in float32, one thread per box. Layout: boxes/deltas/out [nb, 4] as (y1, x1, y2, x2) /
 * (dy, dx, dh, dw); out may alias boxes.
 * Compiled with --fmad=false so cy + dy * h etc. round as on the CPU; the only difference
 * from kernels/cpu/boxes.c is expf (CUDA <= 2 ulp vs glibc), i.e. ~1e-7 relative in h, w.
 * clip is exact (min then max, tf.minimum / tf.maximum order).
 * Validated by `ctxdiff validate --device cuda` against cx_apply_box_deltas / cx_clip_boxes. */
#include <math.h>

#include "cuda_common.cuh"

namespace {

__global__ void box_deltas_kernel(const float *boxes, const float *deltas, int nb, float *out) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < nb; i += gridDim.x * blockDim.x) {
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

__device__ inline float clampf(float v, float lo, float hi) {
  v = v < hi ? v : hi;
  return v > lo ? v : lo;
}

__global__ void clip_boxes_kernel(float *boxes, int nb, float wy1, float wx1, float wy2, float wx2) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < nb; i += gridDim.x * blockDim.x) {
    float *b = boxes + (size_t)i * 4;
    b[0] = clampf(b[0], wy1, wy2);
    b[1] = clampf(b[1], wx1, wx2);
    b[2] = clampf(b[2], wy1, wy2);
    b[3] = clampf(b[3], wx1, wx2);
  }
}

} /* namespace */

int cx_cuda_apply_box_deltas(const float *boxes, const float *deltas, int nb, float *out) {
  if (nb <= 0) return 0;
  box_deltas_kernel<<<cx_blocks((size_t)nb, 256), 256, 0, cx_cuda_stream()>>>(boxes, deltas, nb, out);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

int cx_cuda_clip_boxes(float *boxes, int nb, const float window[4]) {
  if (nb <= 0) return 0;
  clip_boxes_kernel<<<cx_blocks((size_t)nb, 256), 256, 0, cx_cuda_stream()>>>(boxes, nb, window[0], window[1],
                                                                              window[2], window[3]);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}
