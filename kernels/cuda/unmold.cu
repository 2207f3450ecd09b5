/* unmold.cu — the mask part of unmold_detections (spec §13) on the device: each valid
 * detection's 28x28 mask (own class, sigmoid applied: graph_glue.cu mask_class) resampled to
 * its pixel box with the scikit-image resampler of resize.cu / kernels/cpu/resize.c
 * (order 1, mode constant, clip to the input range with the cval rule, double arithmetic)
 * and thresholded at 0.5, written as 0/1 bytes [bh, bw] per mask, packed. The host pastes
 * those boxes into the full-size masks (clipping to the image), as model.c's unmold does.
 *
 * One kernel: grid (x: pixel blocks, y: mask); each block first reduces the min/max of its
 * mask's 784 inputs (order-independent for NaN-free inputs, as the CPU's running min/max),
 * then evaluates resize.cu's expressions for its pixels. Compiled with --fmad=false, so
 * every value, and hence every thresholded pixel, equals the CPU's bit for bit.
 * Layouts: masks [rows, 28, 28] float; prm [nm][4] ints (mask row, bh, bw, unused);
 * off [nm] byte offsets into out.
 * Validated by `ctxdiff validate` (whole model, masks compared pixel by pixel with the CPU). */
#include <math.h>

#include "cuda_common.cuh"

namespace {

constexpr int UM_THREADS = 256;

__global__ void __launch_bounds__(UM_THREADS)
    mask_unmold_kernel(const float *__restrict__ masks, const int *__restrict__ prm, const long long *__restrict__ off,
                       unsigned char *__restrict__ out) {
  __shared__ double slo[UM_THREADS], shi[UM_THREADS];
  const int k = blockIdx.y;
  const int row = prm[k * 4 + 0], oh = prm[k * 4 + 1], ow = prm[k * 4 + 2];
  const int ih = 28, iw = 28;
  const float *in = masks + (size_t)row * (ih * iw);
  double lo, hi;
  cx_block_minmax(in, (size_t)ih * iw, slo, shi, &lo, &hi);
  const bool keep_zero = !(lo <= 0.0 && 0.0 <= hi);
  unsigned char *dst = out + off[k];
  const long long total = (long long)oh * ow;
  const double fy = (double)ih / (double)oh, fx = (double)iw / (double)ow;
  for (long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x; o < total; o += (long long)gridDim.x * blockDim.x) {
    const int col = (int)(o % ow), r = (int)(o / ow);
    /* resize.cu's tap(): s = f * (o + 0.5) - 0.5, i0 = floor(s), i1 = ceil(s), d = s - i0 */
    const double sy = fy * ((double)r + 0.5) - 0.5, sx = fx * ((double)col + 0.5) - 0.5;
    const double ly = floor(sy), lx = floor(sx);
    const int y0 = (int)ly, y1 = (int)ceil(sy), x0 = (int)lx, x1 = (int)ceil(sx);
    const double dy = sy - ly, dx = sx - lx;
    const bool v0 = y0 >= 0 && y0 < ih, v1 = y1 >= 0 && y1 < ih;
    const bool u0 = x0 >= 0 && x0 < iw, u1 = x1 >= 0 && x1 < iw;
    const double p00 = (v0 && u0) ? (double)in[y0 * iw + x0] : 0.0;
    const double p01 = (v0 && u1) ? (double)in[y0 * iw + x1] : 0.0;
    const double p10 = (v1 && u0) ? (double)in[y1 * iw + x0] : 0.0;
    const double p11 = (v1 && u1) ? (double)in[y1 * iw + x1] : 0.0;
    const double top = (1.0 - dx) * p00 + dx * p01;
    const double bottom = (1.0 - dx) * p10 + dx * p11;
    double v = (1.0 - dy) * top + dy * bottom;
    if (!(keep_zero && v == 0.0)) v = v < lo ? lo : (v > hi ? hi : v);
    dst[o] = v >= 0.5 ? 1 : 0;
  }
}

} /* namespace */

int cx_cuda_mask_unmold(const float *masks, const int *prm, const long long *off, int nm, long long max_area,
                        unsigned char *out) {
  if (nm <= 0 || max_area <= 0) return 0;
  if (nm > 65535) return CX_CUDA_FAIL("mask_unmold: %d masks exceed the grid limit of 65535", nm);
  long long bx = (max_area + UM_THREADS - 1) / UM_THREADS;
  if (bx > 256) bx = 256; /* grid-stride beyond */
  mask_unmold_kernel<<<dim3((unsigned)bx, (unsigned)nm), UM_THREADS, 0, cx_cuda_stream()>>>(masks, prm, off, out);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}
