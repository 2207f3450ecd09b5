/* conv.cu — 2-D convolution (TensorFlow cross-correlation with explicit pads) and dense, as
 * an implicit GEMM with a fused epilogue (+ bias, + residual, ReLU — the order of
 * kernels/cpu/conv.c).
 *
 * Layouts (as the CPU kernel): x [n, h, w, cin] NHWC; kernel in Keras layout
 * (kh, kw, cin, cout) = row-major B[K][cout] with K = kh*kw*cin; y and residual
 * [n, ho, wo, cout]. GEMM rows m = ((b*ho + oy)*wo + ox), columns = output channels, and the
 * A element (m, kk) with kk = (ky*kw + kx)*cin + c is x[b, oy*s+ky-pad_t, ox*s+kx-pad_l, c]
 * or 0 in the padding. No im2col buffer: each block gathers its A tile straight from x.
 *
 * Two versions, chosen by cx_cuda_precision():
 *   v1 fp32  — strict fp32 on CUDA cores (no TF32): 64x64 block tile, BK 16, 256 threads,
 *              4x4 outputs per thread, FMA accumulation in k order per thread.
 *   v1 fp16/bf16 — tensor cores through WMMA m16n16k16: A and B are rounded to 16 bits when
 *              staged into shared memory, accumulation and epilogue in fp32. 64x64 tile,
 *              BK 32, 4 warps of 32x32.
 * Both are written to be obviously correct first (bounds-checked loads, zero fill), not fast;
 * bench/cuda-notes.md tracks the versions.
 * Validated by `ctxdiff validate --device cuda` against cx_conv2d / cx_dense (kernels/cpu/conv.c)
 * with a relative-RMS tolerance per precision. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "cuda_common.cuh"

namespace {

struct conv_geom {
  int h, w, cin, cout, kh, kw, stride, pad_t, pad_l, ho, wo;
  int k;       /* kh * kw * cin */
  long long m; /* n * ho * wo */
};

/* Per-row (output pixel) gather info of one block tile, computed once per block. */
template <int BM>
struct tile_rows {
  long long base[BM]; /* offset of image b in x, or -1 past the last row */
  int iy0[BM], ix0[BM];
};

template <int BM>
__device__ inline void init_rows(const conv_geom &g, long long m0, tile_rows<BM> &rows) {
  for (int r = threadIdx.x; r < BM; r += blockDim.x) {
    const long long m = m0 + r;
    if (m < g.m) {
      const int ox = (int)(m % g.wo);
      const long long t = m / g.wo;
      const int oy = (int)(t % g.ho);
      const long long b = t / g.ho;
      rows.base[r] = b * (long long)g.h * g.w * g.cin;
      rows.iy0[r] = oy * g.stride - g.pad_t;
      rows.ix0[r] = ox * g.stride - g.pad_l;
    } else {
      rows.base[r] = -1;
      rows.iy0[r] = 0;
      rows.ix0[r] = 0;
    }
  }
}

/* One A element; kk decomposed by the caller into (ky, kx, c). */
__device__ inline float load_a(const float *__restrict__ x, const conv_geom &g, long long base, int iy0, int ix0,
                               int ky, int kx, int c, bool kvalid) {
  if (!kvalid || base < 0) return 0.0f;
  const int iy = iy0 + ky, ix = ix0 + kx;
  if ((unsigned)iy >= (unsigned)g.h || (unsigned)ix >= (unsigned)g.w) return 0.0f;
  return __ldg(x + base + ((long long)iy * g.w + ix) * g.cin + c);
}

__device__ inline float load_b(const float *__restrict__ wt, const conv_geom &g, int kk, int nn) {
  return (kk < g.k && nn < g.cout) ? __ldg(wt + (long long)kk * g.cout + nn) : 0.0f;
}

__device__ inline void store_out(const conv_geom &g, long long m, int nn, float acc, const float *__restrict__ bias,
                                 const float *__restrict__ res, int relu, float *__restrict__ y) {
  if (m >= g.m || nn >= g.cout) return;
  const long long o = m * g.cout + nn;
  float seed = bias ? bias[nn] : 0.0f;
  if (res) seed = seed + res[o];
  float v = seed + acc;
  if (relu) v = v > 0.0f ? v : 0.0f;
  y[o] = v;
}

/* ---- v1 fp32 ------------------------------------------------------------------------ */
constexpr int F_BM = 64, F_BN = 64, F_BK = 16, F_THREADS = 256;

__global__ void __launch_bounds__(F_THREADS)
    conv_fp32_kernel(const float *__restrict__ x, const float *__restrict__ wt, const float *__restrict__ bias,
                     const float *__restrict__ res, float *__restrict__ y, conv_geom g, int relu) {
  __shared__ float As[F_BK][F_BM + 4];
  __shared__ float Bs[F_BK][F_BN + 4];
  __shared__ tile_rows<F_BM> rows;
  const long long m0 = (long long)blockIdx.x * F_BM;
  const int n0 = blockIdx.y * F_BN;
  const int t = threadIdx.x;
  init_rows<F_BM>(g, m0, rows);
  __syncthreads();

  const int tx = t % 16, ty = t / 16;           /* compute: rows ty*4.., cols tx*4.. */
  const int a_k = t % F_BK, a_r = t / F_BK;     /* A loader: k column, first row (0..15) */
  const int b_n = t % F_BN, b_k = t / F_BN;     /* B loader: column, first k row (0..3) */
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < g.k; k0 += F_BK) {
    const int kk = k0 + a_k;
    const bool kv = kk < g.k;
    int c = 0, kx = 0, ky = 0;
    if (kv) {
      c = kk % g.cin;
      const int p = kk / g.cin;
      kx = p % g.kw;
      ky = p / g.kw;
    }
#pragma unroll
    for (int i = 0; i < F_BM / 16; i++) {
      const int r = a_r + 16 * i;
      As[a_k][r] = load_a(x, g, rows.base[r], rows.iy0[r], rows.ix0[r], ky, kx, c, kv);
    }
#pragma unroll
    for (int i = 0; i < F_BK / 4; i++) {
      const int kr = b_k + 4 * i;
      Bs[kr][b_n] = load_b(wt, g, k0 + kr, n0 + b_n);
    }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < F_BK; q++) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; i++) a[i] = As[q][ty * 4 + i];
#pragma unroll
      for (int j = 0; j < 4; j++) b[j] = Bs[q][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) store_out(g, m0 + ty * 4 + i, n0 + tx * 4 + j, acc[i][j], bias, res, relu, y);
}

/* ---- v1 fp16 / bf16 tensor cores (WMMA) ------------------------------------------------ */
constexpr int T_BM = 64, T_BN = 64, T_BK = 32, T_THREADS = 128;
constexpr int T_LDA = T_BK + 8, T_LDB = T_BN + 8, T_LDC = T_BN + 4; /* 16-bit ldm % 8 == 0 */

template <typename T>
__device__ inline T to_t(float v);
template <>
__device__ inline __half to_t<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ inline __nv_bfloat16 to_t<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T>
__global__ void __launch_bounds__(T_THREADS)
    conv_tc_kernel(const float *__restrict__ x, const float *__restrict__ wt, const float *__restrict__ bias,
                   const float *__restrict__ res, float *__restrict__ y, conv_geom g, int relu) {
  using namespace nvcuda;
  /* WMMA pointers must be 32-byte aligned: every fragment offset below is a multiple of 32 B */
  __shared__ __align__(128) T As[T_BM][T_LDA];
  __shared__ __align__(128) T Bs[T_BK][T_LDB];
  __shared__ __align__(128) float Cs[T_BM][T_LDC];
  __shared__ tile_rows<T_BM> rows;
  const long long m0 = (long long)blockIdx.x * T_BM;
  const int n0 = blockIdx.y * T_BN;
  const int t = threadIdx.x;
  const int warp = t / 32, wm = warp / 2, wn = warp % 2; /* warp tile: rows wm*32, cols wn*32 */
  init_rows<T_BM>(g, m0, rows);
  __syncthreads();

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);

  const int a_k = t % T_BK, a_r = t / T_BK; /* a_r 0..3 */
  const int b_n = t % T_BN, b_k = t / T_BN; /* b_k 0..1 */
  for (int k0 = 0; k0 < g.k; k0 += T_BK) {
    const int kk = k0 + a_k;
    const bool kv = kk < g.k;
    int c = 0, kx = 0, ky = 0;
    if (kv) {
      c = kk % g.cin;
      const int p = kk / g.cin;
      kx = p % g.kw;
      ky = p / g.kw;
    }
#pragma unroll 4
    for (int i = 0; i < T_BM / 4; i++) {
      const int r = a_r + 4 * i;
      As[r][a_k] = to_t<T>(load_a(x, g, rows.base[r], rows.iy0[r], rows.ix0[r], ky, kx, c, kv));
    }
#pragma unroll 4
    for (int i = 0; i < T_BK / 2; i++) {
      const int kr = b_k + 2 * i;
      Bs[kr][b_n] = to_t<T>(load_b(wt, g, k0 + kr, n0 + b_n));
    }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < T_BK; q += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; i++) wmma::load_matrix_sync(fa[i], &As[wm * 32 + i * 16][q], T_LDA);
#pragma unroll
      for (int j = 0; j < 2; j++) wmma::load_matrix_sync(fb[j], &Bs[q][wn * 32 + j * 16], T_LDB);
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 2; j++)
      wmma::store_matrix_sync(&Cs[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], T_LDC, wmma::mem_row_major);
  __syncthreads();
  for (int idx = t; idx < T_BM * T_BN; idx += T_THREADS) {
    const int r = idx / T_BN, cc = idx % T_BN;
    store_out(g, m0 + r, n0 + cc, Cs[r][cc], bias, res, relu, y);
  }
}

} /* namespace */

int cx_cuda_conv2d(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y, const float *residual,
                   int relu) {
  conv_geom g;
  g.h = h;
  g.w = w;
  g.cin = d->cin;
  g.cout = d->cout;
  g.kh = d->kh;
  g.kw = d->kw;
  g.stride = d->stride;
  g.pad_t = d->pad_t;
  g.pad_l = d->pad_l;
  g.ho = cx_conv2d_out(h, d->kh, d->stride, d->pad_t, d->pad_b);
  g.wo = cx_conv2d_out(w, d->kw, d->stride, d->pad_l, d->pad_r);
  g.k = d->kh * d->kw * d->cin;
  if (n <= 0 || g.ho <= 0 || g.wo <= 0 || g.cout <= 0) return 0;
  if (d->stride <= 0 || g.k <= 0) return CX_CUDA_FAIL("conv2d: bad descriptor (stride %d, K %d)", d->stride, g.k);
  g.m = (long long)n * g.ho * g.wo;
  const cudaStream_t st = cx_cuda_stream();
  const cx_precision p = cx_cuda_precision();
  if (p == CX_PREC_FP32) {
    dim3 grid((unsigned)((g.m + F_BM - 1) / F_BM), (unsigned)((g.cout + F_BN - 1) / F_BN));
    conv_fp32_kernel<<<grid, F_THREADS, 0, st>>>(x, d->kernel, d->bias, residual, y, g, relu);
  } else {
    dim3 grid((unsigned)((g.m + T_BM - 1) / T_BM), (unsigned)((g.cout + T_BN - 1) / T_BN));
    if (p == CX_PREC_FP16)
      conv_tc_kernel<__half><<<grid, T_THREADS, 0, st>>>(x, d->kernel, d->bias, residual, y, g, relu);
    else
      conv_tc_kernel<__nv_bfloat16><<<grid, T_THREADS, 0, st>>>(x, d->kernel, d->bias, residual, y, g, relu);
  }
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}
