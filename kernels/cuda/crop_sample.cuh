/* One sample of TensorFlow crop_and_resize (bilinear, extrapolation 0; spec §9.2), shared
 * by crop_resize.cu and the batched ROI align of graph_glue.cu. Exact float32 arithmetic:
 * files including it must be compiled with --fmad=false (kernels/CMakeLists.txt) so that
 * a + (b - a) * t and y1 * fh + i * hs round as on the CPU; NaN coordinates count as
 * outside. feat [hf, wf, c] of one image (float, __half or __nv_bfloat16); bx the box
 * (y1, x1, y2, x2), normalized. */
#ifndef CX_CROP_SAMPLE_CUH
#define CX_CROP_SAMPLE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

/* feature values: fp32, or the 16-bit activations of fp16/bf16 models (widened exactly) */
__device__ __forceinline__ float cx_feat(const float *p) { return *p; }
__device__ __forceinline__ float cx_feat(const __half *p) { return __half2float(*p); }
__device__ __forceinline__ float cx_feat(const __nv_bfloat16 *p) { return __bfloat162float(*p); }

template <typename F>
__device__ __forceinline__ float cx_crop_sample(const F *__restrict__ feat, int hf, int wf, int c,
                                                const float *__restrict__ bx, int ph, int pw, int i, int j, int d) {
  const float fh = (float)(hf - 1), fw = (float)(wf - 1);
  const float y1 = bx[0], x1 = bx[1], y2 = bx[2], x2 = bx[3];
  const float hs = ((y2 - y1) * fh) / (float)(ph - 1);
  const float ws = ((x2 - x1) * fw) / (float)(pw - 1);
  const float in_y = y1 * fh + (float)i * hs;
  const float in_x = x1 * fw + (float)j * ws;
  if (!(in_y >= 0.0f && in_y <= fh) || !(in_x >= 0.0f && in_x <= fw)) return 0.0f;
  const float fty = floorf(in_y);
  const int ty = (int)fty, by = (int)ceilf(in_y);
  const float ly = in_y - fty;
  const float flx = floorf(in_x);
  const int lxi = (int)flx, rx = (int)ceilf(in_x);
  const float lx = in_x - flx;
  const float tl = cx_feat(feat + ((long long)ty * wf + lxi) * c + d);
  const float tr = cx_feat(feat + ((long long)ty * wf + rx) * c + d);
  const float bl = cx_feat(feat + ((long long)by * wf + lxi) * c + d);
  const float br = cx_feat(feat + ((long long)by * wf + rx) * c + d);
  const float top = tl + (tr - tl) * lx;
  const float bottom = bl + (br - bl) * lx;
  return top + (bottom - top) * ly;
}

#endif
