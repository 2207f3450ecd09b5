/* pool.cu — TensorFlow max-pooling with SAME padding (padded cells never win) and the
 * MaxPooling2D(1, 2) subsampling of P6 (spec §4.1, §5).
 * Layout: NHWC float32, x [n, h, w, c] -> y [n, ceil(h/s), ceil(w/s), c]; one thread per
 * output element, channel fastest (coalesced).
 * Comparison as in kernels/cpu/pool.c (first real cell initialises, then v > max), so the
 * result is bit-identical, NaN handling included.
 * Validated by `ctxdiff validate --device cuda` against cx_maxpool_same / cx_subsample2
 * (exact). */
#include "cuda_common.cuh"

namespace {

__global__ void maxpool_same_kernel(const float *__restrict__ x, int n, int h, int w, int c, int k, int s, int ho,
                                    int wo, int pt, int pl, float *__restrict__ y) {
  const long long total = (long long)n * ho * wo * c;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    int ch, ox, oy;
    const long long b = cx_divmod(cx_divmod(cx_divmod(i, c, &ch), wo, &ox), ho, &oy);
    int y0 = oy * s - pt, y1 = y0 + k, x0 = ox * s - pl, x1 = x0 + k;
    y0 = y0 < 0 ? 0 : y0;
    y1 = y1 > h ? h : y1;
    x0 = x0 < 0 ? 0 : x0;
    x1 = x1 > w ? w : x1;
    const float *xb = x + b * h * (long long)w * c + ch;
    float m = xb[((long long)y0 * w + x0) * c];
    for (int iy = y0; iy < y1; iy++)
      for (int ix = x0; ix < x1; ix++) {
        if (iy == y0 && ix == x0) continue;
        const float v = xb[((long long)iy * w + ix) * c];
        m = v > m ? v : m;
      }
    y[i] = m;
  }
}

template <typename E>
__global__ void subsample2_kernel(const E *__restrict__ x, int n, int h, int w, int c, int ho, int wo,
                                  E *__restrict__ y) {
  const long long total = (long long)n * ho * wo * c;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    int ch, ox, oy;
    const long long b = cx_divmod(cx_divmod(cx_divmod(i, c, &ch), wo, &ox), ho, &oy);
    y[i] = x[((b * h + 2 * oy) * w + 2 * ox) * (long long)c + ch];
  }
}

void same_pad(int in, int k, int s, int *out, int *before) {
  const int o = (in + s - 1) / s;
  int pad = (o - 1) * s + k - in;
  if (pad < 0) pad = 0;
  *out = o;
  *before = pad / 2;
}

} /* namespace */

int cx_cuda_maxpool_same(const float *x, int n, int h, int w, int c, int k, int s, float *y) {
  if (s <= 0 || k <= 0) return CX_CUDA_FAIL("maxpool_same: bad window %d stride %d", k, s);
  int ho, wo, pt, pl;
  same_pad(h, k, s, &ho, &pt);
  same_pad(w, k, s, &wo, &pl);
  const size_t total = (size_t)n * ho * wo * c;
  if (total == 0) return 0;
  maxpool_same_kernel<<<cx_blocks(total, 256), 256, 0, cx_cuda_stream()>>>(x, n, h, w, c, k, s, ho, wo, pt, pl, y);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

/* E: float, or unsigned short for 16-bit values (a copy either way) */
template <typename E>
static int subsample2_launch(const void *x, int n, int h, int w, int c, void *y) {
  const int ho = (h + 1) / 2, wo = (w + 1) / 2;
  const size_t total = (size_t)n * ho * wo * c;
  if (total == 0) return 0;
  subsample2_kernel<E><<<cx_blocks(total, 256), 256, 0, cx_cuda_stream()>>>(static_cast<const E *>(x), n, h, w, c, ho,
                                                                          wo, static_cast<E *>(y));
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

int cx_cuda_subsample2(const float *x, int n, int h, int w, int c, float *y) {
  return subsample2_launch<float>(x, n, h, w, c, y);
}

int cx_cuda_subsample2_16(const void *x, int n, int h, int w, int c, void *y) {
  return subsample2_launch<unsigned short>(x, n, h, w, c, y);
}
