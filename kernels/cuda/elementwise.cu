/* elementwise.cu — logistic sigmoid (in place), nearest 2x upsample + add (Keras
 * UpSampling2D + Add, spec §5), row softmax (spec §7 step 3, §10), NaN fill (validation
 * poisoning).
 * Layouts: flat float32; upsample is NHWC, x [n, h, w, c] added into y [n, 2h, 2w, c];
 * softmax rows of `cols` contiguous floats.
 * Compiled with --fmad=false. expf is CUDA's (<= 2 ulp) where the CPU uses glibc's, so
 * sigmoid/softmax agree to ~1e-7 relative, not bit for bit; upsample_add is exact.
 * Softmax: one warp per row, max-subtracted, sum in fp32 (order differs from the CPU's
 * sequential sum: rounding-level differences).
 * Validated by `ctxdiff validate --device cuda` against cx_sigmoid, cx_upsample2_add,
 * cx_softmax_rows. */
#include <math.h>

#include "cuda_common.cuh"

namespace {

__global__ void sigmoid_kernel(float *x, size_t count) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
    x[i] = 1.0f / (1.0f + expf(-x[i]));
}

__global__ void fill_nan_kernel(float *x, size_t count) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
    x[i] = __int_as_float(0x7fc00000);
}

__global__ void upsample2_add_kernel(const float *__restrict__ x, int n, int h, int w, int c, float *__restrict__ y) {
  const long long total = (long long)n * 2 * h * 2 * w * c;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    int ch, ox, oy;
    const long long b = cx_divmod(cx_divmod(cx_divmod(i, c, &ch), 2 * w, &ox), 2 * h, &oy);
    y[i] += x[((b * h + oy / 2) * w + ox / 2) * (long long)c + ch];
  }
}

/* one warp per row */
__global__ void softmax_rows_kernel(const float *x, size_t rows, int cols, float *y) {
  const size_t warps_per_block = blockDim.x / 32;
  const int lane = threadIdx.x % 32;
  for (size_t r = blockIdx.x * warps_per_block + threadIdx.x / 32; r < rows;
       r += (size_t)gridDim.x * warps_per_block) {
    const float *xr = x + r * (size_t)cols;
    float *yr = y + r * (size_t)cols;
    float m = xr[0];
    for (int j = lane; j < cols; j += 32) m = xr[j] > m ? xr[j] : m;
    for (int o = 16; o > 0; o /= 2) {
      const float v = __shfl_xor_sync(0xffffffffu, m, o);
      m = v > m ? v : m;
    }
    float sum = 0.0f;
    for (int j = lane; j < cols; j += 32) sum += expf(xr[j] - m);
    for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    /* y may alias x: every lane has finished reading its elements of the row (the shuffles
     * above are a warp-wide barrier) before any lane writes. */
    for (int j = lane; j < cols; j += 32) yr[j] = expf(xr[j] - m) / sum;
  }
}

/* one thread per row, for rows of at most SOFTMAX_NARROW columns (the RPN's 2 classes): a
 * warp per row would leave 30 of 32 lanes idle. The CPU kernel's order: max, exp and sum left
 * to right, then the divisions. */
constexpr int SOFTMAX_NARROW = 8;
__global__ void softmax_narrow_kernel(const float *x, size_t rows, int cols, float *y) {
  for (size_t r = blockIdx.x * (size_t)blockDim.x + threadIdx.x; r < rows; r += (size_t)gridDim.x * blockDim.x) {
    const float *xr = x + r * (size_t)cols;
    float *yr = y + r * (size_t)cols;
    float e[SOFTMAX_NARROW] = {};
    float m = xr[0];
#pragma unroll
    for (int j = 1; j < SOFTMAX_NARROW; j++)
      if (j < cols) m = xr[j] > m ? xr[j] : m;
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < SOFTMAX_NARROW; j++)
      if (j < cols) {
        e[j] = expf(xr[j] - m);
        sum += e[j];
      }
    /* y may alias x: the row was read completely above */
#pragma unroll
    for (int j = 0; j < SOFTMAX_NARROW; j++)
      if (j < cols) yr[j] = e[j] / sum;
  }
}

} /* namespace */

int cx_cuda_sigmoid(float *x, size_t count) {
  if (count == 0) return 0;
  sigmoid_kernel<<<cx_blocks(count, 256), 256, 0, cx_cuda_stream()>>>(x, count);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

int cx_cuda_fill_nan_impl(float *x, size_t count) {
  if (count == 0) return 0;
  fill_nan_kernel<<<cx_blocks(count, 256), 256, 0, cx_cuda_stream()>>>(x, count);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

int cx_cuda_upsample2_add(const float *x, int n, int h, int w, int c, float *y) {
  const size_t total = (size_t)n * 4 * h * w * c;
  if (total == 0) return 0;
  upsample2_add_kernel<<<cx_blocks(total, 256), 256, 0, cx_cuda_stream()>>>(x, n, h, w, c, y);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

int cx_cuda_softmax_rows(const float *x, size_t rows, int cols, float *y) {
  if (rows == 0 || cols <= 0) return 0;
  if (cols <= SOFTMAX_NARROW) {
    softmax_narrow_kernel<<<cx_blocks(rows, 256), 256, 0, cx_cuda_stream()>>>(x, rows, cols, y);
    CX_CUDA_LAUNCH_CHECK();
    return 0;
  }
  const unsigned threads = 256; /* 8 rows per block */
  softmax_rows_kernel<<<cx_blocks(rows * 32, threads), threads, 0, cx_cuda_stream()>>>(x, rows, cols, y);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}
