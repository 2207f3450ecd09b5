/* crop_resize.cu — TensorFlow crop_and_resize (bilinear, extrapolation 0) in exact float32
 * arithmetic (spec §9.2, §16.4) and the PyramidROIAlign level assignment (spec §9.1).
 * Layouts as kernels/cpu/crop_resize.c: feat [hf, wf, c] (one image), boxes [nb, 4]
 * normalized (y1, x1, y2, x2), out [nb, ph, pw, c]; levels [nb] int.
 * One thread per output element, channel fastest. This file is compiled with
 * --fmad=false so that a + (b - a) * t and y1 * fh + i * hs round exactly as on the CPU
 * (TF's own GPU kernel may fuse; the CPU reference does not). floorf/ceilf, IEEE division
 * (-prec-div=true) and the NaN-as-outside comparisons make the result bit-identical.
 * roi_levels uses logf/sqrtf/rintf: sqrtf is IEEE; CUDA logf (<= 1 ulp) may differ from
 * glibc's in the last bit, which can move a level only when log2 lands within an ulp of
 * k + 0.5 (spec §16.2 lists this as an accepted discrete flip).
 * Validated by `ctxdiff validate --device cuda` against cx_crop_and_resize (exact) and
 * cx_roi_levels (exact on random boxes). */
#include <math.h>

#include "crop_sample.cuh"
#include "cuda_common.cuh"

namespace {

__global__ void crop_and_resize_kernel(const float *__restrict__ feat, int hf, int wf, int c,
                                       const float *__restrict__ boxes, int nb, int ph, int pw,
                                       float *__restrict__ out) {
  const long long total = (long long)nb * ph * pw * c;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)gridDim.x * blockDim.x) {
    const int d = (int)(idx % c);
    long long t = idx / c;
    const int j = (int)(t % pw);
    t /= pw;
    const int i = (int)(t % ph);
    const long long bi = t / ph;
    out[idx] = cx_crop_sample(feat, hf, wf, c, boxes + bi * 4, ph, pw, i, j, d);
  }
}

__global__ void roi_levels_kernel(const float *__restrict__ boxes, int nb, float denom, float ln2,
                                  int *__restrict__ levels, const int *__restrict__ live) {
  if (live) nb = min(nb, __ldg(live));
  for (int b = blockIdx.x * blockDim.x + threadIdx.x; b < nb; b += gridDim.x * blockDim.x) {
    const float *bx = boxes + (size_t)b * 4;
    const float h = bx[2] - bx[0], w = bx[3] - bx[1];
    const float t = sqrtf(h * w) / denom;
    const float lvl = logf(t) / ln2;
    const float r = rintf(lvl); /* half to even */
    int level;
    if (!(fabsf(r) < 2147483648.0f)) {
      level = 2; /* -inf / +inf / NaN: INT32_MIN after TF's cast, clamped to 2 (spec §9.1) */
    } else {
      const long long v = 4 + (long long)r;
      level = v < 2 ? 2 : (v > 5 ? 5 : (int)v);
    }
    levels[b] = level;
  }
}

} /* namespace */

int cx_cuda_crop_and_resize(const float *feat, int hf, int wf, int c, const float *boxes, int nb, int ph, int pw,
                            float *out) {
  if (ph < 2 || pw < 2) return CX_CUDA_FAIL("crop_and_resize: output size %dx%d must be at least 2x2", ph, pw);
  const size_t total = (size_t)nb * ph * pw * c;
  if (total == 0) return 0;
  crop_and_resize_kernel<<<cx_blocks(total, 256), 256, 0, cx_cuda_stream()>>>(feat, hf, wf, c, boxes, nb, ph, pw,
                                                                              out);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

int cx_cuda_roi_levels(const float *boxes, int nb, int image_h, int image_w, int *levels) {
  return cx_cuda_roi_levels_live(boxes, nb, image_h, image_w, levels, NULL);
}

int cx_cuda_roi_levels_live(const float *boxes, int nb, int image_h, int image_w, int *levels, const int *live) {
  if (nb <= 0) return 0;
  /* the two constants exactly as the CPU computes them (host glibc, float) */
  const float image_area = (float)image_h * (float)image_w;
  const float denom = 224.0f / sqrtf(image_area);
  const float ln2 = logf(2.0f);
  roi_levels_kernel<<<cx_blocks((size_t)nb, 256), 256, 0, cx_cuda_stream()>>>(boxes, nb, denom, ln2, levels,
                                                                                   live);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}
