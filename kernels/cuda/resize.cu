/* resize.cu — scikit-image resize as used by matterport (order=1, mode='constant', cval=0,
 * clip=True, anti_aliasing=False; spec §3.3), double precision, same formulas and
 * evaluation order as kernels/cpu/resize.c:
 *   sy = (IH/OH) * (r + 0.5) - 0.5, r0 = floor(sy), r1 = ceil(sy), dr = sy - r0 (same in x);
 *   neighbours outside the input are 0; value = (1-dr)*top + dr*bottom with
 *   top/bottom = (1-dc)*P(.,c0) + dc*P(.,c1); clip to [min, max] of the whole input except
 *   exact 0.0 when 0 is outside that range (cval rule); u8 output truncates toward zero.
 * Layouts: in [ih, iw, c] -> out [oh, ow, c] (u8), in [ih, iw] float -> out [oh, ow] double
 * (masks). Compiled with --fmad=false: IEEE double add/multiply without contraction, so
 * the result equals the CPU kernel bit for bit. The input range comes from a one-block
 * min/max reduction (inputs are assumed NaN-free, as the CPU's running min/max is then
 * order-independent).
 * Validated by `ctxdiff validate --device cuda` against cx_skimage_resize_u8 / _f32 (exact). */
#include <math.h>

#include "cuda_common.cuh"

namespace {

template <typename TIn>
__global__ void minmax_kernel(const TIn *__restrict__ in, size_t total, double *__restrict__ range) {
  __shared__ double slo[1024], shi[1024];
  double lo, hi;
  cx_block_minmax(in, total, slo, shi, &lo, &hi);
  if (threadIdx.x == 0) {
    range[0] = lo;
    range[1] = hi;
  }
}

struct axis_tap {
  int i0, i1;
  double d;
};

__device__ inline axis_tap tap(int in, int out, int o) {
  const double f = (double)in / (double)out;
  const double s = f * ((double)o + 0.5) - 0.5;
  const double lo = floor(s);
  axis_tap t;
  t.i0 = (int)lo;
  t.i1 = (int)ceil(s);
  t.d = s - lo;
  return t;
}

template <typename TIn, typename TOut>
__global__ void resize_kernel(const TIn *__restrict__ in, int ih, int iw, int c, int oh, int ow,
                              const double *__restrict__ range, TOut *__restrict__ out) {
  const double lo = range[0], hi = range[1];
  const bool keep_zero = !(lo <= 0.0 && 0.0 <= hi);
  const long long total = (long long)oh * ow * c;
  for (long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x; o < total;
       o += (long long)gridDim.x * blockDim.x) {
    const int ch = (int)(o % c);
    const long long t = o / c;
    const int col = (int)(t % ow), r = (int)(t / ow);
    const axis_tap ty = tap(ih, oh, r), tx = tap(iw, ow, col);
    const bool v0 = ty.i0 >= 0 && ty.i0 < ih, v1 = ty.i1 >= 0 && ty.i1 < ih;
    const bool u0 = tx.i0 >= 0 && tx.i0 < iw, u1 = tx.i1 >= 0 && tx.i1 < iw;
    const long long row0 = v0 ? (long long)ty.i0 * iw * c : 0, row1 = v1 ? (long long)ty.i1 * iw * c : 0;
    const long long c0 = u0 ? (long long)tx.i0 * c : 0, c1 = u1 ? (long long)tx.i1 * c : 0;
    const double p00 = (v0 && u0) ? (double)in[row0 + c0 + ch] : 0.0;
    const double p01 = (v0 && u1) ? (double)in[row0 + c1 + ch] : 0.0;
    const double p10 = (v1 && u0) ? (double)in[row1 + c0 + ch] : 0.0;
    const double p11 = (v1 && u1) ? (double)in[row1 + c1 + ch] : 0.0;
    const double top = (1.0 - tx.d) * p00 + tx.d * p01;
    const double bottom = (1.0 - tx.d) * p10 + tx.d * p11;
    double v = (1.0 - ty.d) * top + ty.d * bottom;
    if (!(keep_zero && v == 0.0)) v = v < lo ? lo : (v > hi ? hi : v);
    out[o] = (TOut)v; /* u8: v in [0, 255], truncation toward zero */
  }
}

/* range: 2 doubles of device memory for the input's min/max, or NULL for the scratch arena */
template <typename TIn, typename TOut>
int resize_run(const TIn *in, int ih, int iw, int c, int oh, int ow, TOut *out, double *range) {
  const size_t total_in = (size_t)ih * iw * c, total_out = (size_t)oh * ow * c;
  if (total_out == 0) return 0;
  if (total_in == 0) return CX_CUDA_FAIL("resize: empty input (%dx%dx%d) for a %dx%d output", ih, iw, c, oh, ow);
  if (!range) range = (double *)cx_cuda_scratch(2 * sizeof(double));
  if (!range) return -1;
  const cudaStream_t st = cx_cuda_stream();
  minmax_kernel<TIn><<<1, 1024, 0, st>>>(in, total_in, range);
  CX_CUDA_LAUNCH_CHECK();
  resize_kernel<TIn, TOut><<<cx_blocks(total_out, 256), 256, 0, st>>>(in, ih, iw, c, oh, ow, range, out);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

} /* namespace */

int cx_cuda_resize_u8(const uint8_t *in, int ih, int iw, int c, int oh, int ow, uint8_t *out) {
  return resize_run<uint8_t, uint8_t>(in, ih, iw, c, oh, ow, out, nullptr);
}

int cx_cuda_resize_u8_ranged(const uint8_t *in, int ih, int iw, int c, int oh, int ow, uint8_t *out, double *range) {
  return resize_run<uint8_t, uint8_t>(in, ih, iw, c, oh, ow, out, range);
}

int cx_cuda_resize_mask(const float *in, int ih, int iw, int oh, int ow, double *out) {
  return resize_run<float, double>(in, ih, iw, 1, oh, ow, out, nullptr);
}
