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
 * Kernels, chosen by cx_cuda_precision() and the conv version (cx_cuda_set_conv_version,
 * CTXDIFF_CUDA_CONV=v1|v2|v4|v5|v6; see pick_v2 for the automatic choice):
 *   v1 fp32  — strict fp32 on CUDA cores (no TF32): 64x64 block tile, BK 16, 256 threads,
 *              4x4 outputs per thread, FMA accumulation in k order per thread.
 *   v1 fp16/bf16 — tensor cores through WMMA m16n16k16: A and B are rounded to 16 bits when
 *              staged into shared memory, accumulation and epilogue in fp32. 64x64 tile,
 *              BK 32, 4 warps of 32x32.
 *   v2 fp32  — same arithmetic as v1 fp32 (each output: one fmaf chain in ascending k), on a
 *              128x128 (or 128x64) x 8 tile, 8x8 (8x4) outputs per thread, float4 gathers,
 *              register-staged double buffering.
 *   v2 fp16/bf16 — same rounding as v1 (operands rounded once to 16 bits, fp32 accumulate),
 *              128x128 (or 128x64) x 32 tile, 8 warps of 64x32 (32x32), float4 gathers,
 *              register-staged double buffering, epilogue through a per-warp shared staging
 *              tile. Variants for 16-bit activations in and/or out (cx_cuda_conv2d_io) and
 *              split-K slices (KS; splitk_reduce_kernel adds them with the epilogue).
 *   v3 fp16/bf16 — v2's tile and arithmetic when both operands are 16-bit in memory: cp.async
 *              copies straight to shared memory, 3 stages (conv_tc_v3_kernel).
 *   v4 fp16/bf16 — v3 with 256 x 128 tiles of 64 x 64 warp tiles (opt-in, CTXDIFF_CUDA_CONV=v4:
 *              less shared-memory traffic per MMA, 1 block per SM; see v3_tile).
 *   v5 / v6 fp16/bf16 — wgmma (sm_90a) from 128-byte-swizzled shared memory, 128 x 128 (v5)
 *              or 128 x 256 (v6) tiles (opt-in; conv_wg_v5_kernel).
 *   v2/v3 fragments: fp16 through WMMA, bf16 through ldmatrix + mma.sync m16n8k16
 *              (mma_ptx.cuh: nvcc's bf16 WMMA loads are generic, not ldmatrix); tc_acc.
 * All v2 kernels: 2 blocks per SM (<= 128 registers, no spills, <= 40 KB static shared
 * memory); numbers and predictions in bench/cuda-notes.md.
 * fp32 3x3 / stride 1 / pad 1 convolutions whose descriptor carries a packed Winograd kernel go
 * to winograd.cu instead, whose 36 GEMMs run on the fp32 kernels here as one batched launch
 * (cx_cuda_gemm_f32_batched, gridDim.z = batch, at the end of this file).
 * v1 is written to be obviously correct (bounds-checked loads, zero fill), not fast, and stays
 * as the fallback for small GEMMs and as the A/B baseline; bench/cuda-notes.md tracks the
 * versions. Validated by `ctxdiff validate --device cuda` against cx_conv2d / cx_dense
 * (kernels/cpu/conv.c) with a relative-RMS tolerance per precision. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <limits.h>
#include <cuda_pipeline.h>
#include <mma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "cuda_common.cuh"
#include "mma_ptx.cuh"

namespace {

struct conv_geom {
  int h, w, cin, cout, kh, kw, stride, pad_t, pad_l, ho, wo;
  int k;       /* kh * kw * cin */
  long long m; /* n * ho * wo */
  /* Device-side row limit (NULL: none): only rows m < *live * live_per - live_off are needed.
   * The mask head runs on a detection count that stays on the device (cx_cuda_conv2d_live). */
  const int *live;
  long long live_per, live_off;
};

/* A block whose whole row tile lies past the live rows returns at once (block-uniform, before
 * any barrier); rows of a tile that straddles the limit are computed and ignored by callers. */
__device__ inline bool tile_dead(const conv_geom &g, long long m0) {
  return g.live && m0 >= (long long)__ldg(g.live) * g.live_per - g.live_off;
}

/* What blockIdx.z selects. Element offsets of x, kernel and y per slice: cx_cuda_gemm_f32_batched
 * runs one GEMM per z slice (Winograd's 36). kz > 0 (the KS kernel variants): split-K — slice z
 * computes the GEMM columns k in [z*kz, min(K, (z+1)*kz)) into its own partial output (y + z*y,
 * no epilogue; splitk_reduce adds the slices and applies it). kz is a multiple of SPLIT_KQ, so
 * slices start on a k-tile boundary of every kernel and the A quads / 16-runs never straddle
 * two slices. A plain convolution launches one slice with everything 0. */
struct zstride {
  long long x, w, y;
  int kz;
};
constexpr int SPLIT_KQ = 64; /* 2 x the largest BK (32) */

/* First and end k column of this block's slice. */
__device__ inline int2 k_range(const conv_geom &g, const zstride &zs) {
  if (!zs.kz) return make_int2(0, g.k);
  const int kb = (int)blockIdx.z * zs.kz;
  return make_int2(kb, min(g.k, kb + zs.kz));
}

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
                     const float *__restrict__ res, float *__restrict__ y, conv_geom g, int relu, zstride zs) {
  __shared__ float As[F_BK][F_BM + 4];
  x += blockIdx.z * zs.x;
  wt += blockIdx.z * zs.w;
  y += blockIdx.z * zs.y;
  __shared__ float Bs[F_BK][F_BN + 4];
  __shared__ tile_rows<F_BM> rows;
  const long long m0 = (long long)blockIdx.x * F_BM;
  if (tile_dead(g, m0)) return;
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

/* B[kk][nn] already rounded to T (desc.kernel16), or 0 outside the GEMM. */
template <typename T>
__device__ inline T load_b16(const T *__restrict__ wt, const conv_geom &g, int kk, int nn) {
  return (kk < g.k && nn < g.cout) ? wt[(long long)kk * g.cout + nn] : to_t<T>(0.0f);
}

/* W16: wt holds the weights already rounded to T (converted once at load), else fp32 rounded
 * here while staging; both give the same T values. */
template <typename T, bool W16>
__global__ void __launch_bounds__(T_THREADS)
    conv_tc_kernel(const float *__restrict__ x, const void *__restrict__ wt_, const float *__restrict__ bias,
                   const float *__restrict__ res, float *__restrict__ y, conv_geom g, int relu) {
  const float *wt = static_cast<const float *>(wt_);
  const T *wt16 = static_cast<const T *>(wt_);
  using namespace nvcuda;
  /* WMMA pointers must be 32-byte aligned: every fragment offset below is a multiple of 32 B */
  __shared__ __align__(128) T As[T_BM][T_LDA];
  __shared__ __align__(128) T Bs[T_BK][T_LDB];
  __shared__ __align__(128) float Cs[T_BM][T_LDC];
  __shared__ tile_rows<T_BM> rows;
  const long long m0 = (long long)blockIdx.x * T_BM;
  if (tile_dead(g, m0)) return;
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
      if constexpr (W16) Bs[kr][b_n] = load_b16<T>(wt16, g, k0 + kr, n0 + b_n);
      else Bs[kr][b_n] = to_t<T>(load_b(wt, g, k0 + kr, n0 + b_n));
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

/* ---- v2 helpers ---------------------------------------------------------------------- */
/* Gather info of one GEMM row (output pixel): element offset of its window origin
 * x[b, iy0, ix0, 0] (may point before the image: only formed into an address after the bounds
 * check) and the origin itself. Rows past M get iy0 far out of range, so the bounds check
 * alone zero-fills them. */
struct arow {
  long long off;
  int iy0, ix0;
};
constexpr int ROW_NONE = -(1 << 30);

__device__ inline arow row_info(const conv_geom &g, long long m) {
  arow r;
  if (m < g.m) {
    const int ox = (int)(m % g.wo);
    const long long t = m / g.wo;
    const int oy = (int)(t % g.ho);
    r.iy0 = oy * g.stride - g.pad_t;
    r.ix0 = ox * g.stride - g.pad_l;
    r.off = ((t / g.ho) * g.h * g.w + (long long)r.iy0 * g.w + r.ix0) * g.cin;
  } else {
    r.off = 0;
    r.iy0 = ROW_NONE;
    r.ix0 = 0;
  }
  return r;
}

/* (ky, kx, c) of a GEMM column kk and its offset from the window origin,
 * (ky*w + kx)*cin + c — the same for every row, so one per loader thread per k-tile. Stepped
 * forward without a division per k-tile. Past K it keeps counting; callers mask with kk < K. */
struct kpos {
  int c, kx, ky, off;
};

__device__ inline kpos kpos_of(const conv_geom &g, int kk) {
  kpos p;
  p.c = kk % g.cin;
  const int q = kk / g.cin;
  p.kx = q % g.kw;
  p.ky = q / g.kw;
  p.off = (p.ky * g.w + p.kx) * g.cin + p.c;
  return p;
}

__device__ inline void kpos_advance(const conv_geom &g, kpos &p, int by) {
  p.c += by;
  p.off += by;
  while (p.c >= g.cin) { /* once per tile when cin >= BK; small cin loops a few times */
    p.c -= g.cin;        /* (c - cin, kx + 1): same offset */
    if (++p.kx == g.kw) {
      p.kx = 0;
      ++p.ky;
      p.off += (g.w - g.kw) * g.cin;
    }
  }
}

/* One A element (scalar path). */
__device__ inline float load_a1(const float *__restrict__ x, const conv_geom &g, const arow &r, const kpos &p,
                                bool kvalid) {
  const int iy = r.iy0 + p.ky, ix = r.ix0 + p.kx;
  if (!kvalid || (unsigned)iy >= (unsigned)g.h || (unsigned)ix >= (unsigned)g.w) return 0.0f;
  return __ldg(x + r.off + p.off);
}

/* A elements kk..kk+3 of one row. AVEC (cin % 4 == 0, x 16-byte aligned, kk % 4 == 0): the
 * four share one (ky, kx) and one pixel, and K % 4 == 0 makes them all valid or all not, so
 * one float4 load. Otherwise four scalar gathers, each with its own position. */
template <bool AVEC>
__device__ inline float4 load_a4(const float *__restrict__ x, const conv_geom &g, const arow &r, kpos p, int kk) {
  if (AVEC) {
    const int iy = r.iy0 + p.ky, ix = r.ix0 + p.kx;
    if (kk < g.k && (unsigned)iy < (unsigned)g.h && (unsigned)ix < (unsigned)g.w)
      return __ldg(reinterpret_cast<const float4 *>(x + r.off + p.off));
    return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  } else {
    float v[4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
      v[j] = load_a1(x, g, r, p, kk + j < g.k);
      kpos_advance(g, p, 1);
    }
    return make_float4(v[0], v[1], v[2], v[3]);
  }
}

/* B[kk][nn..nn+3]. BVEC (cout % 4 == 0, kernel 16-byte aligned, nn % 4 == 0): all four
 * columns are in range or none is. 32-bit index arithmetic (pick_v2 checks K*cout fits): it
 * saves the registers of 64-bit products that would push the tensor-core kernel into spills. */
template <bool BVEC>
__device__ inline float4 load_b4(const float *__restrict__ wt, const conv_geom &g, int kk, int nn) {
  if (BVEC) {
    if (kk < g.k && nn < g.cout) return __ldg(reinterpret_cast<const float4 *>(wt + (kk * g.cout + nn)));
    return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  } else {
    float v[4];
#pragma unroll
    for (int j = 0; j < 4; j++) v[j] = (kk < g.k && nn + j < g.cout) ? __ldg(wt + (kk * g.cout + nn + j)) : 0.0f;
    return make_float4(v[0], v[1], v[2], v[3]);
  }
}

/* Four outputs' epilogue in store_out's order: (bias + residual) + acc, then ReLU. */
__device__ inline float4 epilogue4(float4 acc, const float *__restrict__ bias, int nn, bool has_res, float4 r,
                                   int relu) {
  float4 s = bias ? *reinterpret_cast<const float4 *>(bias + nn) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (has_res) {
    s.x = s.x + r.x;
    s.y = s.y + r.y;
    s.z = s.z + r.z;
    s.w = s.w + r.w;
  }
  float4 v = make_float4(s.x + acc.x, s.y + acc.y, s.z + acc.z, s.w + acc.w);
  if (relu) {
    v.x = v.x > 0.0f ? v.x : 0.0f;
    v.y = v.y > 0.0f ? v.y : 0.0f;
    v.z = v.z > 0.0f ? v.z : 0.0f;
    v.w = v.w > 0.0f ? v.w : 0.0f;
  }
  return v;
}

/* store_out for outputs (m, nn..nn+3); vec: cout % 4 == 0 and y/residual/bias 16-byte aligned
 * (checked by the launcher). Same operation order as store_out: (bias + residual) + acc, ReLU. */
__device__ inline void store_out4(const conv_geom &g, long long m, int nn, float4 acc, const float *__restrict__ bias,
                                  const float *__restrict__ res, int relu, float *__restrict__ y, bool vec) {
  if (!vec) {
    store_out(g, m, nn, acc.x, bias, res, relu, y);
    store_out(g, m, nn + 1, acc.y, bias, res, relu, y);
    store_out(g, m, nn + 2, acc.z, bias, res, relu, y);
    store_out(g, m, nn + 3, acc.w, bias, res, relu, y);
    return;
  }
  if (m >= g.m || nn >= g.cout) return;
  const long long o = m * g.cout + nn;
  const float4 r = res ? *reinterpret_cast<const float4 *>(res + o) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  *reinterpret_cast<float4 *>(y + o) = epilogue4(acc, bias, nn, res != nullptr, r, relu);
}

/* ---- v2 fp32 ------------------------------------------------------------------------ */
/* 128 x BN x 8 tile, 256 threads as 16x16; a thread owns rows ty*4+{0..3} and +64, columns
 * tx*4+{0..3} (and +64 when BN = 128): two 4-wide quads per dimension, so its shared reads
 * are float4 and a warp (4 ty x 8 tx) reads 4 broadcast A quads and 8 contiguous B quads —
 * no bank conflicts. 8x8 outputs per thread give 64 FMA per 4 LDS.128. A is stored k-major
 * ([BK][BM+4]) so those row quads are contiguous; the +4 pad puts the two k-quad halves of a
 * warp's transposed stores in different banks (4*132 % 32 == 16).
 * Pipeline: the global loads of tile k+1 go to registers before tile k is computed, then to
 * the other shared buffer; one __syncthreads per k-tile. BN = 64 (8x4 per thread) serves
 * cout <= 64 and grids that would not fill the SMs with 128-wide tiles. */
constexpr int G_BM = 128, G_BK = 8, G_THREADS = 256, G_LDA = G_BM + 4;

template <int BN, bool AVEC, bool BVEC, bool KS>
__global__ void __launch_bounds__(G_THREADS, 2)
    conv_fp32_v2_kernel(const float *__restrict__ x, const float *__restrict__ wt, const float *__restrict__ bias,
                        const float *__restrict__ res, float *__restrict__ y, conv_geom g, int relu, int out_vec,
                        zstride zs) {
  constexpr int NQ = BN / 64;   /* column quads per thread */
  constexpr int BQ = BN / 4;    /* float4 per B tile row */
  constexpr int LDB = BN + 4;
  __shared__ __align__(16) float As[2][G_BK][G_LDA];
  __shared__ __align__(16) float Bs[2][G_BK][LDB];
  const int t = threadIdx.x;
  const long long m0 = (long long)blockIdx.x * G_BM;
  if (tile_dead(g, m0)) return;
  const int n0 = blockIdx.y * BN;
  const int warp = t / 32, lane = t % 32;
  const int ty = (warp / 2) * 4 + lane / 8, tx = (warp % 2) * 8 + lane % 8;

  /* A loader: row t/2 (fixed for the whole kernel, so its gather info lives in registers),
   * k quad (t%2)*4: a warp reads 16 rows x 32 contiguous bytes when cin % 8 == 0. */
  const int a_r = t / 2, a_q = (t % 2) * 4;
  arow ar = row_info(g, m0 + a_r);
  ar.off += blockIdx.z * zs.x; /* folded into the row offset: no extra live register in the loop */
  wt += blockIdx.z * zs.w;
  y += blockIdx.z * zs.y;
  const int2 kr = KS ? k_range(g, zs) : make_int2(0, g.k);
  kpos ap = kpos_of(g, kr.x + a_q);
  /* B loader: k row t/BQ, column quad (t%BQ)*4 (BN = 64: threads 128.. idle). */
  const int b_k = t / BQ, b_n = (t % BQ) * 4;
  const bool b_on = b_k < G_BK;

  float acc[8][4 * NQ];
#pragma unroll
  for (int i = 0; i < 8; i++)
#pragma unroll
    for (int j = 0; j < 4 * NQ; j++) acc[i][j] = 0.0f;

  float4 ra = load_a4<AVEC>(x, g, ar, ap, kr.x + a_q);
  float4 rb = b_on ? load_b4<BVEC>(wt, g, kr.x + b_k, n0 + b_n) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  As[0][a_q + 0][a_r] = ra.x;
  As[0][a_q + 1][a_r] = ra.y;
  As[0][a_q + 2][a_r] = ra.z;
  As[0][a_q + 3][a_r] = ra.w;
  if (b_on) *reinterpret_cast<float4 *>(&Bs[0][b_k][b_n]) = rb;
  __syncthreads();

  const int nk = (kr.y - kr.x + G_BK - 1) / G_BK;
  for (int kt = 0; kt < nk; kt++) {
    const int cur = kt & 1;
    const int k1 = kr.x + (kt + 1) * G_BK;
    /* Unconditional: after the last tile (k1 >= K) the loads are masked to zeros and the stores
     * go to a buffer nobody reads; an `if` would keep ra/rb live around the whole loop. (A
     * split-K slice's last prefetch reads the next slice's first tile, also never used.) */
    kpos_advance(g, ap, G_BK);
    ra = load_a4<AVEC>(x, g, ar, ap, k1 + a_q);
    if (b_on) rb = load_b4<BVEC>(wt, g, k1 + b_k, n0 + b_n);
#pragma unroll
    for (int q = 0; q < G_BK; q++) {
      float a[8], b[4 * NQ];
      const float4 a0 = *reinterpret_cast<const float4 *>(&As[cur][q][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4 *>(&As[cur][q][ty * 4 + 64]);
      a[0] = a0.x, a[1] = a0.y, a[2] = a0.z, a[3] = a0.w;
      a[4] = a1.x, a[5] = a1.y, a[6] = a1.z, a[7] = a1.w;
#pragma unroll
      for (int jq = 0; jq < NQ; jq++) {
        const float4 bv = *reinterpret_cast<const float4 *>(&Bs[cur][q][tx * 4 + jq * 64]);
        b[jq * 4 + 0] = bv.x, b[jq * 4 + 1] = bv.y, b[jq * 4 + 2] = bv.z, b[jq * 4 + 3] = bv.w;
      }
#pragma unroll
      for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 4 * NQ; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    /* buffer cur^1 was last read in iteration kt-1, whose barrier every thread has passed */
    As[cur ^ 1][a_q + 0][a_r] = ra.x;
    As[cur ^ 1][a_q + 1][a_r] = ra.y;
    As[cur ^ 1][a_q + 2][a_r] = ra.z;
    As[cur ^ 1][a_q + 3][a_r] = ra.w;
    if (b_on) *reinterpret_cast<float4 *>(&Bs[cur ^ 1][b_k][b_n]) = rb;
    __syncthreads();
  }

  const bool vec = out_vec != 0;
#pragma unroll
  for (int i = 0; i < 8; i++) {
    const long long m = m0 + ty * 4 + (i & 3) + (i >> 2) * 64;
#pragma unroll
    for (int jq = 0; jq < NQ; jq++)
      store_out4(g, m, n0 + tx * 4 + jq * 64,
                 make_float4(acc[i][jq * 4], acc[i][jq * 4 + 1], acc[i][jq * 4 + 2], acc[i][jq * 4 + 3]), bias, res,
                 relu, y, vec);
  }
}

/* ---- v2 fp16 / bf16 tensor cores (WMMA) ------------------------------------------------ */
/* 128 x BN x 32 tile, 8 warps (256 threads). BN = 128: warps 2 (m) x 4 (n), each 64x32 = 4x2
 * accumulator fragments (per k16: 2 B + 4 A fragment loads for 8 MMAs). BN = 64: warps 4 x 2,
 * each 32x32 = 2x2 fragments — for cout <= 64 and for grids that 128-wide tiles would leave
 * half the SMs idle (res4 at 1024^2, batch 1: 64x64x256 -> 64 blocks). Global loads stay fp32
 * and are rounded to T when stored to shared memory, so each operand is rounded exactly once,
 * as in v1.
 * Shared: two stages of A [128][40] and B [32][BN+8] (T; rows padded by 8 elements: ldm % 8
 * == 0, and every fragment pointer is a multiple of 32 bytes: 80-byte A rows x 16, B rows of
 * 272 or 144 bytes x 16, 32-byte column steps) = 37888 / 29696 bytes; after the k loop the same
 * bytes hold each warp's 16x32 fp32 staging tile (8 x 2304 bytes) for the epilogue; + 2 KB of
 * row info.
 * Loaders: thread t owns A row t/2 and its 16 k columns (t%2)*16..+15 of the tile: when
 * cin % 16 == 0 they are 16 channels of one pixel, so one bounds check and four float4 loads
 * (a warp reads 16 rows x 128 contiguous bytes when cin % 32 == 0). B: one column quad of
 * every (256/(BN/4))-th k row, BN*4-byte rows. Converted values are packed in pairs so the
 * shared stores are 16-byte (A) and 8-byte (B) wide.
 * Pipeline: the global loads of tile kt+1 are issued before the MMAs of tile kt and stored
 * (rounded) into the other stage after them; one __syncthreads per k-tile. The stage cur^1 is
 * free during all of iteration kt (last read in kt-1, whose barrier every thread passed), so
 * the variants with scalar B gathers store A after the first k16 half and only then load B
 * (16 staging registers live instead of 32). Everything fits 128 registers (2 blocks per SM)
 * without spills with CUDA 13.0's ptxas; recheck -Xptxas -v when the loaders change. */
constexpr int H_BM = 128, H_BK = 32, H_THREADS = 256;
constexpr int H_LDA = H_BK + 8, H_LDC = 32 + 4;
constexpr int H_A_BYTES = H_BM * H_LDA * 2;
constexpr int H_C_BYTES = (H_THREADS / 32) * 16 * H_LDC * 4;
static_assert(H_A_BYTES % 32 == 0 && (16 * H_LDC * 4) % 32 == 0 && (H_LDA * 2) % 16 == 0, "WMMA / vector alignment");

template <int BN>
struct tc_tile {
  static constexpr int LDB = BN + 8;
  static constexpr int B_BYTES = H_BK * LDB * 2;
  static constexpr int PIPE_BYTES = 2 * (H_A_BYTES + B_BYTES);
  static constexpr int SMEM_BYTES = PIPE_BYTES > H_C_BYTES ? PIPE_BYTES : H_C_BYTES;
  static constexpr int WARPS_N = BN / 32, WARPS_M = 8 / WARPS_N; /* warp tile (128/WARPS_M) x 32 */
  static constexpr int FM = H_BM / WARPS_M / 16;                   /* accumulator rows per warp */
  static constexpr int BQ = BN / 4, B_RSTEP = H_THREADS / BQ, NB = H_BK / B_RSTEP; /* B loader */
  static_assert(B_BYTES % 32 == 0 && (16 * LDB * 2) % 32 == 0 && (LDB * 2) % 8 == 0, "WMMA / vector alignment");
};

/* Two floats rounded to T, packed little-endian (the lower address holds the first). memcpy of
 * the 16-bit values keeps this plain C++ (no type punning through the half2 types). */
template <typename T>
__device__ inline unsigned pack2(float a, float b) {
  const T ta = to_t<T>(a), tb = to_t<T>(b);
  unsigned short ua, ub;
  memcpy(&ua, &ta, sizeof ua);
  memcpy(&ub, &tb, sizeof ub);
  return (unsigned)ua | ((unsigned)ub << 16);
}

/* A: the 16 k columns kk..kk+15 of the thread's row. AVEC: cin % 16 == 0 and x 16-byte
 * aligned (then K % 16 == 0 and kk % 16 == 0: all 16 valid or none, one pixel). */
template <bool AVEC>
__device__ inline void load_a16(const float *__restrict__ x, const conv_geom &g, const long long *row_off,
                                const int2 *row_yx, int a_r, const kpos &ap, int kk, float4 ra[4]) {
  arow r;
  r.off = row_off[a_r];
  r.iy0 = row_yx[a_r].x;
  r.ix0 = row_yx[a_r].y;
  if (AVEC) {
    const int iy = r.iy0 + ap.ky, ix = r.ix0 + ap.kx;
    const bool ok = kk < g.k && (unsigned)iy < (unsigned)g.h && (unsigned)ix < (unsigned)g.w;
    const float4 *src = reinterpret_cast<const float4 *>(x + (ok ? r.off + ap.off : 0));
#pragma unroll
    for (int j = 0; j < 4; j++) ra[j] = ok ? __ldg(src + j) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  } else {
    kpos p = ap;
    float v[16];
#pragma unroll
    for (int j = 0; j < 16; j++) {
      v[j] = load_a1(x, g, r, p, kk + j < g.k);
      kpos_advance(g, p, 1);
    }
#pragma unroll
    for (int j = 0; j < 4; j++) ra[j] = make_float4(v[4 * j], v[4 * j + 1], v[4 * j + 2], v[4 * j + 3]);
  }
}

template <typename T>
__device__ inline void store_a16(T *As, int a_r, int a_c, const float4 ra[4]) {
  uint4 *d = reinterpret_cast<uint4 *>(As + a_r * H_LDA + a_c); /* 80-byte rows, 32-byte halves */
  d[0] = make_uint4(pack2<T>(ra[0].x, ra[0].y), pack2<T>(ra[0].z, ra[0].w), pack2<T>(ra[1].x, ra[1].y),
                    pack2<T>(ra[1].z, ra[1].w));
  d[1] = make_uint4(pack2<T>(ra[2].x, ra[2].y), pack2<T>(ra[2].z, ra[2].w), pack2<T>(ra[3].x, ra[3].y),
                    pack2<T>(ra[3].z, ra[3].w));
}

/* Where the 16-bit A values of tile row r at GEMM column kk (position ap) start in x, or NULL
 * where they lie in the padding or past K (the loaders read zeros there). */
__device__ inline const unsigned short *a16_src(const unsigned short *__restrict__ x, const conv_geom &g,
                                                const long long *row_off, const int2 *row_yx, int r, const kpos &ap,
                                                int kk) {
  const int iy = row_yx[r].x + ap.ky, ix = row_yx[r].y + ap.kx;
  return kk < g.k && (unsigned)iy < (unsigned)g.h && (unsigned)ix < (unsigned)g.w ? x + row_off[r] + ap.off : nullptr;
}

/* The gather info of the block's BM tile rows (row_info), into shared memory. */
template <int BM>
__device__ inline void fill_rows(const conv_geom &g, long long m0, long long *row_off, int2 *row_yx) {
  for (int r = threadIdx.x; r < BM; r += H_THREADS) {
    const arow a = row_info(g, m0 + r);
    row_off[r] = a.off;
    row_yx[r] = make_int2(a.iy0, a.ix0);
  }
}

/* 16-bit activations (A16: x holds T values): the same 16 k columns as two 16-byte loads, stored
 * to shared memory as they are (cin % 16 == 0 and x 16-byte aligned: the AVEC conditions). */
template <bool AVEC>
__device__ inline void load_a16(const unsigned short *__restrict__ x, const conv_geom &g, const long long *row_off,
                                const int2 *row_yx, int a_r, const kpos &ap, int kk, uint4 ra[2]) {
  static_assert(AVEC, "16-bit activations are read by the vector loader only");
  const uint4 *src = reinterpret_cast<const uint4 *>(a16_src(x, g, row_off, row_yx, a_r, ap, kk));
  ra[0] = src ? __ldg(src) : make_uint4(0u, 0u, 0u, 0u);
  ra[1] = src ? __ldg(src + 1) : make_uint4(0u, 0u, 0u, 0u);
}

template <typename T>
__device__ inline void store_a16(T *As, int a_r, int a_c, const uint4 ra[2]) {
  uint4 *d = reinterpret_cast<uint4 *>(As + a_r * H_LDA + a_c);
  d[0] = ra[0];
  d[1] = ra[1];
}

template <typename T>
__device__ inline float from_t(unsigned short u) {
  T v;
  memcpy(&v, &u, sizeof v);
  if constexpr (std::is_same<T, __half>::value) return __half2float(v);
  else return __bfloat162float(v);
}

/* store_out4 for 16-bit outputs and residual (O16): the same fp32 arithmetic, rounded once to T
 * when stored (cout % 4 == 0, y and residual 16-byte aligned: checked by the launcher). */
template <typename T>
__device__ inline void store_out4_16(const conv_geom &g, long long m, int nn, float4 acc, const float *__restrict__ bias,
                                     const unsigned short *__restrict__ res, int relu, unsigned short *__restrict__ y) {
  if (m >= g.m || nn >= g.cout) return;
  const long long o = m * g.cout + nn;
  float4 r = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (res) {
    const uint2 u = *reinterpret_cast<const uint2 *>(res + o);
    r = make_float4(from_t<T>((unsigned short)(u.x & 0xffffu)), from_t<T>((unsigned short)(u.x >> 16)),
                    from_t<T>((unsigned short)(u.y & 0xffffu)), from_t<T>((unsigned short)(u.y >> 16)));
  }
  const float4 v = epilogue4(acc, bias, nn, res != nullptr, r, relu);
  *reinterpret_cast<uint2 *>(y + o) = make_uint2(pack2<T>(v.x, v.y), pack2<T>(v.z, v.w));
}

/* B[kk][nn..nn+3] of 16-bit weights as four packed values (zero bits outside the GEMM: +0 in
 * fp16 and bf16). BVEC: cout % 4 == 0 and the kernel 8-byte aligned, one 8-byte load. */
template <bool BVEC>
__device__ inline uint2 load_b4_16(const unsigned short *__restrict__ wt, const conv_geom &g, int kk, int nn) {
  if (BVEC) {
    if (kk < g.k && nn < g.cout) return __ldg(reinterpret_cast<const uint2 *>(wt + (kk * g.cout + nn)));
    return make_uint2(0u, 0u);
  } else {
    unsigned v[4];
#pragma unroll
    for (int j = 0; j < 4; j++) v[j] = (kk < g.k && nn + j < g.cout) ? __ldg(wt + (kk * g.cout + nn + j)) : 0u;
    return make_uint2(v[0] | (v[1] << 16), v[2] | (v[3] << 16));
  }
}

/* The B stage: fp32 weights in float4 registers, rounded when stored to shared memory, or
 * 16-bit ones in uint2 registers, stored as they are (overloads on the weight type). */
template <bool W16>
using breg = typename std::conditional<W16, uint2, float4>::type;
template <bool W16>
using wtype = typename std::conditional<W16, unsigned short, float>::type;
/* activations: fp32, or 16-bit T values (A16 input, O16 output and residual) */
template <bool B16>
using atype = typename std::conditional<B16, unsigned short, float>::type;
template <bool A16>
using areg = typename std::conditional<A16, uint4, float4>::type;

template <int BN, bool BVEC>
__device__ inline void load_b_stage(const float *__restrict__ wt, const conv_geom &g, int kk, int nn, float4 *rb) {
#pragma unroll
  for (int i = 0; i < tc_tile<BN>::NB; i++) rb[i] = load_b4<BVEC>(wt, g, kk + tc_tile<BN>::B_RSTEP * i, nn);
}

template <int BN, bool BVEC>
__device__ inline void load_b_stage(const unsigned short *__restrict__ wt, const conv_geom &g, int kk, int nn,
                                    uint2 *rb) {
#pragma unroll
  for (int i = 0; i < tc_tile<BN>::NB; i++) rb[i] = load_b4_16<BVEC>(wt, g, kk + tc_tile<BN>::B_RSTEP * i, nn);
}

template <int BN, typename T>
__device__ inline void store_b_stage(T *Bs, int b_k, int b_n, const float4 *rb) {
#pragma unroll
  for (int i = 0; i < tc_tile<BN>::NB; i++) {
    uint2 v;
    v.x = pack2<T>(rb[i].x, rb[i].y);
    v.y = pack2<T>(rb[i].z, rb[i].w);
    *reinterpret_cast<uint2 *>(Bs + (b_k + tc_tile<BN>::B_RSTEP * i) * tc_tile<BN>::LDB + b_n) = v;
  }
}

template <int BN, typename T>
__device__ inline void store_b_stage(T *Bs, int b_k, int b_n, const uint2 *rb) {
#pragma unroll
  for (int i = 0; i < tc_tile<BN>::NB; i++)
    *reinterpret_cast<uint2 *>(Bs + (b_k + tc_tile<BN>::B_RSTEP * i) * tc_tile<BN>::LDB + b_n) = rb[i];
}

/* The warp's (16*FM) x WN fp32 accumulator tile (WN 32, or 64 for v4's warp tiles), reading A
 * with row stride H_LDA and B with LDB from shared memory. fp16: WMMA m16n16k16 fragments (nvcc
 * loads them with ldmatrix). bf16: raw mma.sync m16n8k16 fragments fed by ldmatrix
 * (mma_ptx.cuh), because nvcc 13.0 emits WMMA's bf16 loads as generic per-element loads. Same
 * products and fp32 accumulation; only the order within a 16-wide k step is the hardware's. */
template <typename T>
constexpr bool PTX_MMA = std::is_same<T, __nv_bfloat16>::value;

template <typename T, int FM, int WN, int LDB, bool PTX = PTX_MMA<T>>
struct tc_acc {
  static constexpr int FN = WN / 16;
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> f[FM][FN];
  __device__ void zero() {
#pragma unroll
    for (int i = 0; i < FM; i++)
#pragma unroll
      for (int j = 0; j < FN; j++) nvcuda::wmma::fill_fragment(f[i][j], 0.0f);
  }
  /* one k16 slice at column q of the stage: FN B + FM A fragment loads, FN*FM MMAs */
  __device__ void mma_k16(const T *As, const T *Bs, int q, int wm, int wn) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[FN];
#pragma unroll
    for (int j = 0; j < FN; j++) wmma::load_matrix_sync(fb[j], Bs + q * LDB + wn * WN + j * 16, LDB);
#pragma unroll
    for (int i = 0; i < FM; i++) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
      wmma::load_matrix_sync(fa, As + (wm * FM * 16 + i * 16) * H_LDA + q, H_LDA);
#pragma unroll
      for (int j = 0; j < FN; j++) wmma::mma_sync(f[i][j], fa, fb[j], f[i][j]);
    }
  }
  /* rows 16i..16i+15 of the warp tile into the 16 x WN staging tile cw (ldm WN + 4) */
  __device__ void stage(int i, float *cw, int lane) {
    (void)lane;
#pragma unroll
    for (int j = 0; j < FN; j++) nvcuda::wmma::store_matrix_sync(cw + j * 16, f[i][j], WN + 4, nvcuda::wmma::mem_row_major);
  }
};

template <typename T, int FM, int WN, int LDB>
struct tc_acc<T, FM, WN, LDB, true> {
  static constexpr int F8 = WN / 8;
  float f[FM][F8][4]; /* [16-row slice][8-column slice][fragment register] */
  __device__ void zero() {
#pragma unroll
    for (int i = 0; i < FM; i++)
#pragma unroll
      for (int j = 0; j < F8; j++)
#pragma unroll
        for (int r = 0; r < 4; r++) f[i][j][r] = 0.0f;
  }
  /* Lane l addresses row l%16, columns 8(l/16).. of a 16x16 A slice (matrices: rows 0-7 / 8-15
   * x k 0-7 / 8-15 = a[0..3]) and k row l%16, columns 8(l/16).. of each 16x16 B block read
   * transposed (k 0-7 / 8-15 x n 0-7 = b[0], b[1] of the block's first 8 columns, then of the
   * next 8). Row strides 80 B (A) and 272/144 B (B): the 8 rows of each matrix hit distinct banks. */
  __device__ void mma_k16(const T *As, const T *Bs, int q, int wm, int wn) {
    const int lane = threadIdx.x % 32, lr = lane % 16, lc = (lane / 16) * 8;
    unsigned b[F8][2];
#pragma unroll
    for (int h = 0; h < F8 / 2; h++) {
      unsigned r[4];
      ldsm_x4<true>(r, Bs + (q + lr) * LDB + wn * WN + h * 16 + lc);
      b[2 * h][0] = r[0];
      b[2 * h][1] = r[1];
      b[2 * h + 1][0] = r[2];
      b[2 * h + 1][1] = r[3];
    }
#pragma unroll
    for (int i = 0; i < FM; i++) {
      unsigned a[4];
      ldsm_x4<false>(a, As + (wm * FM * 16 + i * 16 + lr) * H_LDA + q + lc);
#pragma unroll
      for (int j = 0; j < F8; j++) mma_16816<T>(f[i][j], a, b[j]);
    }
  }
  __device__ void stage(int i, float *cw, int lane) {
    const int r = lane / 4, c = 2 * (lane % 4);
#pragma unroll
    for (int j = 0; j < F8; j++) {
      *reinterpret_cast<float2 *>(cw + r * (WN + 4) + j * 8 + c) = make_float2(f[i][j][0], f[i][j][1]);
      *reinterpret_cast<float2 *>(cw + (r + 8) * (WN + 4) + j * 8 + c) = make_float2(f[i][j][2], f[i][j][3]);
    }
  }
};

/* The tensor-core kernels' epilogue: per 16-row slice, the warp's accumulators go to its 16 x WN
 * staging tile cw (shared memory the k loop no longer uses, ldm WN + 4); then each lane
 * finishes float4s, WN/4 lanes per output row segment (O16: rounded to 16-bit outputs). */
template <typename T, int FM, int WN, int LDB, bool O16>
__device__ inline void tc_epilogue(tc_acc<T, FM, WN, LDB> &acc, float *cw, const conv_geom &g, long long m0, int n0,
                                   int wm, int wn, int lane, const float *__restrict__ bias,
                                   const atype<O16> *__restrict__ res, int relu, atype<O16> *__restrict__ y, bool vec) {
  constexpr int LDC = WN + 4, Q = WN / 4; /* float4s per staged row */
#pragma unroll
  for (int i = 0; i < FM; i++) {
    acc.stage(i, cw, lane);
    __syncwarp();
#pragma unroll
    for (int p = 0; p < WN / 8; p++) {
      const int idx = p * 32 + lane, r = idx / Q, c = (idx % Q) * 4;
      const float4 v = *reinterpret_cast<const float4 *>(cw + r * LDC + c);
      if constexpr (O16) store_out4_16<T>(g, m0 + (wm * FM + i) * 16 + r, n0 + wn * WN + c, v, bias, res, relu, y);
      else store_out4(g, m0 + (wm * FM + i) * 16 + r, n0 + wn * WN + c, v, bias, res, relu, y, vec);
    }
    __syncwarp(); /* the next slice overwrites the staging tile */
  }
}

template <typename T, int BN, bool AVEC, bool BVEC, bool W16, bool KS, bool A16, bool O16>
__global__ void __launch_bounds__(H_THREADS, 2)
    conv_tc_v2_kernel(const atype<A16> *__restrict__ x, const wtype<W16> *__restrict__ wt,
                      const float *__restrict__ bias, const atype<O16> *__restrict__ res, atype<O16> *__restrict__ y,
                      conv_geom g, int relu, int out_vec, zstride zs) {
  static_assert(!(KS && O16), "split-K slices write fp32 partials");
  using namespace nvcuda;
  using tile = tc_tile<BN>;
  /* Scalar B gathers (4 predicated loads per quad) need more registers: those variants load B
   * only after the first k16 half (see the pipeline note above) to stay spill-free. */
  constexpr bool SPLIT = !BVEC;
  __shared__ __align__(128) unsigned char smem[tile::SMEM_BYTES];
  /* The loader's row info is re-read from shared memory each k-tile rather than held in
   * registers: at 128 registers the allocator would otherwise spill it to local memory. */
  __shared__ long long row_off[H_BM];
  __shared__ int2 row_yx[H_BM];
  const long long m0 = (long long)blockIdx.x * H_BM;
  if (tile_dead(g, m0)) return;
  const int n0 = blockIdx.y * BN;
  const int t = threadIdx.x;
  const int warp = t / 32, lane = t % 32;
  const int wm = warp / tile::WARPS_N, wn = warp % tile::WARPS_N; /* rows wm*16*FM, cols wn*32 */
  const int a_r = t / 2, a_c = (t % 2) * 16;
  const int b_n = (t % tile::BQ) * 4, b_k = t / tile::BQ;
  fill_rows<H_BM>(g, m0, row_off, row_yx);
  const int2 kr = KS ? k_range(g, zs) : make_int2(0, g.k); /* split-K slice, else all of K */
  if (KS) y += blockIdx.z * zs.y;
  kpos ap = kpos_of(g, kr.x + a_c);
  areg<A16> ra[A16 ? 2 : 4];
  breg<W16> rb[tile::NB];
  tc_acc<T, tile::FM, 32, tile::LDB> acc;
  acc.zero();

  __syncthreads(); /* row info */
  load_a16<AVEC>(x, g, row_off, row_yx, a_r, ap, kr.x + a_c, ra);
  load_b_stage<BN, BVEC>(wt, g, kr.x + b_k, n0 + b_n, rb);
  store_a16<T>(reinterpret_cast<T *>(smem), a_r, a_c, ra);
  store_b_stage<BN, T>(reinterpret_cast<T *>(smem + 2 * H_A_BYTES), b_k, b_n, rb);
  __syncthreads();

  const int nk = (kr.y - kr.x + H_BK - 1) / H_BK;
  for (int kt = 0; kt < nk; kt++) {
    const int cur = kt & 1;
    const int k1 = kr.x + (kt + 1) * H_BK;
    const T *As = reinterpret_cast<const T *>(smem + cur * H_A_BYTES);
    const T *Bs = reinterpret_cast<const T *>(smem + 2 * H_A_BYTES + cur * tile::B_BYTES);
    /* Unconditional: after the last tile k1 >= K, the loads are masked to zeros and the stores
     * go to a stage nobody reads. An `if (more)` here would keep ra/rb live around the whole
     * loop (their old values flow through the skipped path) and cost 32 registers. */
    kpos_advance(g, ap, H_BK);
    load_a16<AVEC>(x, g, row_off, row_yx, a_r, ap, k1 + a_c, ra);
    if (!SPLIT) load_b_stage<BN, BVEC>(wt, g, k1 + b_k, n0 + b_n, rb);
    acc.mma_k16(As, Bs, 0, wm, wn);
    if (SPLIT) {
      store_a16<T>(reinterpret_cast<T *>(smem + (cur ^ 1) * H_A_BYTES), a_r, a_c, ra);
      load_b_stage<BN, BVEC>(wt, g, k1 + b_k, n0 + b_n, rb);
    }
    acc.mma_k16(As, Bs, 16, wm, wn);
    if (!SPLIT) store_a16<T>(reinterpret_cast<T *>(smem + (cur ^ 1) * H_A_BYTES), a_r, a_c, ra);
    store_b_stage<BN, T>(reinterpret_cast<T *>(smem + 2 * H_A_BYTES + (cur ^ 1) * tile::B_BYTES), b_k, b_n, rb);
    __syncthreads(); /* after the last tile: every warp is done with the stages, C may reuse them */
  }

  tc_epilogue<T, tile::FM, 32, tile::LDB, O16>(acc, reinterpret_cast<float *>(smem) + warp * 16 * H_LDC, g, m0, n0, wm,
                                               wn, lane, bias, res, relu, y, out_vec != 0);
}

/* ---- v3 fp16 / bf16: 16-bit operands straight to shared memory (cp.async) ---------------- */
/* When both operands are already 16-bit in memory (16-bit activations and weights, v3 of
 * bench/cuda-notes.md) nothing needs converting on the way to shared memory, so the loads go
 * there directly as asynchronous copies (cp.async through the pipeline primitives): no staging
 * registers, no shared stores, and V3_STAGES tiles in flight instead of the one of v2's
 * register double buffer. Same tile (128 x BN x 32), warps, MMAs, split-K slices and epilogue
 * as v2, so the same sums in the same order (bit-identical to v2 in the emulator).
 * Conditions (the launcher checks): A16 and 16-bit weights, cin % 16 == 0, cout % 8 == 0 (B
 * in 16-byte chunks of 8 columns), 16-byte aligned buffers.
 * Dynamic shared memory: row info, then V3_STAGES x (A [128][40] + B [32][BN+8]) of T (the
 * epilogue's staging tiles reuse the stages); its base is aligned to 128 bytes by hand (WMMA
 * pointers need 32), so the launch asks for 128 bytes more. Past the last tile the copies are
 * not issued but the groups still committed, so "wait for all but the newest S-2" always means
 * "the tile about to be used has landed". */
constexpr int V3_STAGES = 3;

/* The first S-1 tiles of a cp.async pipeline, one commit group each (empty past the last tile,
 * so that "all but the newest S-2 groups" always means "the tile about to be used"). */
template <int S, class F>
__device__ inline void pipe_prologue(F &issue, int nk) {
#pragma unroll
  for (int s = 0; s < S - 1; s++) {
    if (s < nk) issue(s);
    __pipeline_commit();
  }
}

/* BM 128: v2's tile and warps (8 warps of (128/WARPS_M) x 32). BM 256 (v4, BN 128 only): 8
 * warps of 64 x 64, so each A fragment feeds 8 MMAs instead of 4 and each B fragment 4: a
 * third less shared-memory traffic per MMA (v2/v3's 12 ldmatrix per 32 HMMA per warp and
 * k-tile are about as many shared-memory cycles as the MMAs take), at 1 block per SM (128
 * accumulators per thread). */
template <int BN, int BM = 128>
struct v3_tile {
  static_assert(BM == 128 || (BM == 256 && BN == 128), "v3 tiles: 128 x 64, 128 x 128, 256 x 128");
  static constexpr int WARPS_N = BM == 128 ? tc_tile<BN>::WARPS_N : 2, WARPS_M = 8 / WARPS_N;
  static constexpr int WN = BN / WARPS_N, FM = BM / WARPS_M / 16;
  static constexpr int LDB = tc_tile<BN>::LDB, A_BYTES = BM * H_LDA * 2, B_BYTES = tc_tile<BN>::B_BYTES;
  static constexpr int ROW_BYTES = BM * (8 + 8);      /* row_off + row_yx */
  static constexpr int STAGE_BYTES = A_BYTES + B_BYTES; /* both multiples of 128 */
  static constexpr int PIPE_BYTES = V3_STAGES * STAGE_BYTES;
  static constexpr int C_BYTES = (H_THREADS / 32) * 16 * (WN + 4) * 4; /* the epilogue's staging tiles */
  static constexpr int BODY = PIPE_BYTES > C_BYTES ? PIPE_BYTES : C_BYTES;
  static constexpr int SMEM_BYTES = ROW_BYTES + BODY + 128; /* + the alignment slack */
  static constexpr int BCH = BN / 8, B_PER = H_BK * BCH / H_THREADS; /* B 16-byte chunks per thread */
  static constexpr int A_PER = BM / 128;                              /* A rows per thread */
  static constexpr int MIN_BLOCKS = BM == 128 ? 2 : 1;
  static_assert(A_BYTES % 128 == 0 && B_BYTES % 128 == 0, "stage alignment");
  static_assert(B_PER >= 1 && H_BK * BCH % H_THREADS == 0, "B loader");
};

template <typename T, int BN, bool KS, bool O16, int BM = 128>
__global__ void __launch_bounds__(H_THREADS, v3_tile<BN, BM>::MIN_BLOCKS)
    conv_tc_v3_kernel(const unsigned short *__restrict__ x, const unsigned short *__restrict__ wt,
                      const float *__restrict__ bias, const atype<O16> *__restrict__ res, atype<O16> *__restrict__ y,
                      conv_geom g, int relu, zstride zs) {
  using v3 = v3_tile<BN, BM>;
  constexpr int LDB = v3::LDB;
  static_assert(!(KS && O16), "split-K slices write fp32 partials");
  extern __shared__ uint4 v3_smem_raw[];
  /* base + padding, not an integer rounded and cast back: the pointer must stay derived from the
   * shared array, or nvcc loses its address space and the WMMA loads become generic (LD, not LDSM) */
  unsigned char *sm = reinterpret_cast<unsigned char *>(v3_smem_raw) + ((128 - ((uintptr_t)v3_smem_raw & 127)) & 127);
  long long *row_off = reinterpret_cast<long long *>(sm);
  int2 *row_yx = reinterpret_cast<int2 *>(sm + BM * 8);
  unsigned char *body = sm + v3::ROW_BYTES;
  const long long m0 = (long long)blockIdx.x * BM;
  if (tile_dead(g, m0)) return;
  const int n0 = blockIdx.y * BN;
  const int t = threadIdx.x;
  const int warp = t / 32;
  const int wm = warp / v3::WARPS_N, wn = warp % v3::WARPS_N;
  const int a_r = t / 2, a_c = (t % 2) * 16; /* and rows a_r + 128 with BM 256 */
  fill_rows<BM>(g, m0, row_off, row_yx);
  const int2 kr = KS ? k_range(g, zs) : make_int2(0, g.k);
  if (KS) y += blockIdx.z * zs.y;
  const int nk = (kr.y - kr.x + H_BK - 1) / H_BK;
  kpos ap = kpos_of(g, kr.x + a_c); /* the A position of the next tile to issue */
  __syncthreads();                  /* row info */

  /* issue tile `it` (k columns kr.x + it*32 ..) into stage it % S */
  auto issue = [&](int it) {
    const int kk0 = kr.x + it * H_BK;
    unsigned char *st = body + (it % V3_STAGES) * v3::STAGE_BYTES;
    T *As = reinterpret_cast<T *>(st);
    T *Bs = reinterpret_cast<T *>(st + v3::A_BYTES);
#pragma unroll
    for (int h = 0; h < v3::A_PER; h++) {
      /* A: 16 channels of one pixel = two 16-byte copies, zero-filled outside the image / K */
      const int ar = a_r + h * 128;
      const unsigned short *a = a16_src(x, g, row_off, row_yx, ar, ap, kk0 + a_c);
      const bool ok = a != nullptr;
      const unsigned short *src = ok ? a : x;
      T *dst = As + ar * H_LDA + a_c;
      __pipeline_memcpy_async(dst, src, 16, ok ? 0 : 16);
      __pipeline_memcpy_async(dst + 8, src + (ok ? 8 : 0), 16, ok ? 0 : 16);
    }
#pragma unroll
    for (int q = 0; q < v3::B_PER; q++) { /* B: 8 columns of one k row per copy */
      const int c = t + q * H_THREADS, kb = c / v3::BCH, nb = (c % v3::BCH) * 8;
      const int kk = kk0 + kb, nn = n0 + nb;
      const bool ok = kk < g.k && nn < g.cout;
      __pipeline_memcpy_async(Bs + kb * LDB + nb, wt + (ok ? kk * g.cout + nn : 0), 16, ok ? 0 : 16);
    }
    kpos_advance(g, ap, H_BK);
  };

  tc_acc<T, v3::FM, v3::WN, LDB> acc;
  acc.zero();

  pipe_prologue<V3_STAGES>(issue, nk);
  for (int kt = 0; kt < nk; kt++) {
    __pipeline_wait_prior(V3_STAGES - 2); /* this thread's copies of tile kt have landed */
    __syncthreads(); /* everyone's have; and everyone is done with tile kt-1's stage */
    if (kt + V3_STAGES - 1 < nk) issue(kt + V3_STAGES - 1); /* into tile kt-1's stage */
    __pipeline_commit();
    const unsigned char *st = body + (kt % V3_STAGES) * v3::STAGE_BYTES;
    const T *As = reinterpret_cast<const T *>(st);
    const T *Bs = reinterpret_cast<const T *>(st + v3::A_BYTES);
    acc.mma_k16(As, Bs, 0, wm, wn);
    acc.mma_k16(As, Bs, 16, wm, wn);
  }
  __pipeline_wait_prior(0);
  __syncthreads(); /* the stages become the epilogue's staging tiles */

  tc_epilogue<T, v3::FM, v3::WN, LDB, O16>(acc, reinterpret_cast<float *>(body) + warp * 16 * (v3::WN + 4), g, m0, n0,
                                          wm, wn, t % 32, bias, res, relu, y, true);
}

/* ---- v5 fp16 / bf16: wgmma (sm_90a) ------------------------------------------------------ */
/* Where unsplit 128-wide v3 runs (16-bit activations and weights, cin % 16 == 0, cout % 8 == 0)
 * on an sm_90 device with the sm_90a build: the block's two warpgroups each multiply a 64 x 128
 * slice with wgmma.mma_async m64n128k16 straight from shared memory, so no ldmatrix traffic and
 * no fragment registers (v2/v3 spend about as many shared-memory cycles on ldmatrix as on the
 * MMAs, see v4), and the MMAs run at the Hopper tensor-core rate that mma.sync only reaches ~2/3
 * of. Operands stay in the 128-byte-swizzle layouts of the PTX ISA's matrix descriptors:
 *   A (K-major): 128 rows of 64 k (128 bytes), 8-row atoms of 1024 bytes (SBO), row r's
 *     16-byte chunk j (k 8j..8j+7) at (r/8)*1024 + (r%8)*128 + (j ^ r%8)*16; warpgroup w's
 *     64 rows start at w*8192, the k16 step s at +32s (inside the swizzled row, base offset 0);
 *   B (N-major, the weights' [k][cout] as they are, imm-trans-b): per 64-column half h
 *     (LBO 8192), 64 k rows of 128 bytes in 8-row atoms (SBO 1024): k row kb's chunk j
 *     (columns 8j..) at h*8192 + (kb/8)*1024 + (kb%8)*128 + (j ^ kb%8)*16; k16 step s at +2048s.
 * Both fill by cp.async (16-byte chunks, zero-fill for the padding and the K tail: the v3
 * gather with 8-channel chunks) in V5_STAGES stages of 32 KB; each thread makes its copies
 * visible to the async proxy (fence.proxy.async) before the barrier that precedes the MMAs.
 * The MMAs of a k-tile are waited for before the next barrier, so the stage refilled after it
 * (the previous tile's) is free. fp32 accumulators in the ISA's m64nNk16 fragment: thread l
 * of warp w of warpgroup g holds rows 64g + 16w + l/4 (+8) and column pairs 8j + 2(l%4); the
 * epilogue stages them as a 128 x 128 fp32 tile in the freed stages and stores float4s along
 * rows (store_out4: store_out's order; straight from the fragments a warp would write 16-byte
 * pieces of 8 rows, half-used sectors on the memory-bound 1x1 convs). 256 threads, 99 KB of
 * dynamic shared memory, 2 blocks per SM. Validated on the CPU emulator, which implements the
 * descriptors, layouts and fragments from the ISA's tables (tests/cuda/emu/emu.cpp wg_elem). */
constexpr int V5_BM = 128, V5_BK = 64, V5_A_BYTES = V5_BM * V5_BK * 2;
/* NH 128-column halves per tile: 1 (v5, 128 x 128, 3 stages of 32 KB, 2 blocks per SM) or 2
 * (v6, 128 x 256: each warpgroup's k16 step is two m64n128k16 on the two halves of B, 128
 * accumulators per thread, 4 stages of 48 KB = 195 KB, 1 block per SM). A 128 x 256 tile loads
 * 48 KB from L2 per 4.2 MFLOP k-tile, 87 FLOP per byte instead of 64: the L2-to-SM bandwidth
 * cap of the 128 x 128 tiles (~350 TFLOP/s predicted) moves to ~480. */
template <int NH>
struct v5c {
  static constexpr int BN = 128 * NH, STAGES = NH == 1 ? 3 : 4;
  static constexpr int B_BYTES = V5_BK * BN * 2, STAGE_BYTES = V5_A_BYTES + B_BYTES;
  static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES + V5_BM * 16 + 1024; /* + row info + alignment */
  static constexpr int LDC = BN + 4; /* the epilogue's fp32 tile, in the stages */
  static_assert(STAGE_BYTES % 1024 == 0, "swizzle atoms start on 1024-byte boundaries");
  static_assert(V5_BM * LDC * 4 <= STAGES * STAGE_BYTES, "epilogue tile fits the stages");
  static_assert(SMEM_BYTES <= 227 * 1024, "dynamic shared memory per block");
};

/* wgmma matrix descriptor: start address, leading and stride byte offsets (each >> 4), 128-byte
 * swizzle (mode 1), base offset 0 */
__device__ inline unsigned long long wg_desc(unsigned addr, unsigned lbo, unsigned sbo) {
  return (unsigned long long)((addr & 0x3ffffu) >> 4) | ((unsigned long long)((lbo & 0x3ffffu) >> 4) << 16) |
         ((unsigned long long)((sbo & 0x3ffffu) >> 4) << 32) | (1ull << 62);
}

template <typename T, bool O16, int NH>
__global__ void __launch_bounds__(H_THREADS, NH == 1 ? 2 : 1)
    conv_wg_v5_kernel(const unsigned short *__restrict__ x, const unsigned short *__restrict__ wt,
                      const float *__restrict__ bias, const atype<O16> *__restrict__ res, atype<O16> *__restrict__ y,
                      conv_geom g, int relu) {
  using C = v5c<NH>;
  extern __shared__ uint4 v5_smem_raw[];
  /* the swizzle pattern repeats from 1024-byte boundaries of the shared address space */
  unsigned char *raw = reinterpret_cast<unsigned char *>(v5_smem_raw);
  unsigned char *sm = raw + ((1024u - (smem_u32(raw) & 1023u)) & 1023u);
  long long *row_off = reinterpret_cast<long long *>(sm + C::STAGES * C::STAGE_BYTES);
  int2 *row_yx = reinterpret_cast<int2 *>(sm + C::STAGES * C::STAGE_BYTES + V5_BM * 8);
  const long long m0 = (long long)blockIdx.x * V5_BM;
  if (tile_dead(g, m0)) return;
  const int n0 = blockIdx.y * C::BN;
  const int t = threadIdx.x, wg = t / 128;
  fill_rows<V5_BM>(g, m0, row_off, row_yx);
  /* A loader: chunk a_j (k 8a_j..+7 of every tile: 8 channels of one pixel) of rows a_r0 + 32q */
  const int a_j = t % 8, a_r0 = t / 8;
  kpos ap = kpos_of(g, a_j * 8);
  const int nk = (g.k + V5_BK - 1) / V5_BK;
  __syncthreads(); /* row info */

  auto issue = [&](int it) {
    const int kk0 = it * V5_BK;
    unsigned char *st = sm + (it % C::STAGES) * C::STAGE_BYTES;
#pragma unroll
    for (int q = 0; q < 4; q++) {
      const int r = a_r0 + 32 * q;
      const unsigned short *a = a16_src(x, g, row_off, row_yx, r, ap, kk0 + a_j * 8);
      __pipeline_memcpy_async(st + (r / 8) * 1024 + (r % 8) * 128 + ((a_j ^ (r % 8)) * 16), a ? a : x, 16,
                              a ? 0 : 16);
    }
    kpos_advance(g, ap, V5_BK);
#pragma unroll
    for (int q = 0; q < 4 * NH; q++) { /* B: chunk cj (columns 8cj..) of k row kb, 64-column half h */
      const int c = t + H_THREADS * q, kb = c / (16 * NH), cj = c % (16 * NH), h = cj / 8, j = cj % 8;
      const int kk = kk0 + kb, nn = n0 + cj * 8;
      const bool ok = kk < g.k && nn < g.cout;
      __pipeline_memcpy_async(st + V5_A_BYTES + h * 8192 + (kb / 8) * 1024 + (kb % 8) * 128 + ((j ^ (kb % 8)) * 16),
                              wt + (ok ? kk * g.cout + nn : 0), 16, ok ? 0 : 16);
    }
  };

  float d[NH][64]; /* per 128-column half */
#pragma unroll
  for (int hh = 0; hh < NH; hh++)
#pragma unroll
    for (int i = 0; i < 64; i++) d[hh][i] = 0.0f;
  pipe_prologue<C::STAGES>(issue, nk);
  for (int kt = 0; kt < nk; kt++) {
    __pipeline_wait_prior(C::STAGES - 2); /* this thread's copies of tile kt have landed */
    fence_proxy_async();                  /* ... and are visible to the wgmma operand reads */
    __syncthreads();                      /* everyone's are; tile kt-1's MMAs are all done */
    const unsigned st = smem_u32(sm + (kt % C::STAGES) * C::STAGE_BYTES);
    wg_fence();
#pragma unroll
    for (int s = 0; s < V5_BK / 16; s++)
#pragma unroll
      for (int hh = 0; hh < NH; hh++) /* columns 128hh..: B's 64-column halves 2hh, 2hh+1 */
        wg_mma_n128<T>(d[hh], wg_desc(st + wg * 8192 + s * 32, 16, 1024),
                       wg_desc(st + V5_A_BYTES + hh * 16384 + s * 2048, 8192, 1024));
    wg_commit();
    if (kt + C::STAGES - 1 < nk) issue(kt + C::STAGES - 1); /* into tile kt-1's stage */
    __pipeline_commit();
    wg_wait<0>();
  }

  /* epilogue: the fragments to a 128 x BN fp32 tile in the (now free) stages, then row-contiguous
   * float4s through v2/v3's store_out4 / store_out4_16 (coalesced stores, the same order) */
  __syncthreads();
  float *cs = reinterpret_cast<float *>(sm);
  const int w = (t % 128) / 32, l = t % 32;
#pragma unroll
  for (int hh = 0; hh < NH; hh++)
#pragma unroll
    for (int i = 0; i < 64; i += 2) {
      const int r = 64 * wg + 16 * w + l / 4 + 8 * ((i / 2) % 2), c = 128 * hh + 8 * (i / 4) + 2 * (l % 4);
      *reinterpret_cast<float2 *>(cs + r * C::LDC + c) = make_float2(d[hh][i], d[hh][i + 1]);
    }
  __syncthreads();
  for (int q = t; q < V5_BM * (C::BN / 4); q += H_THREADS) {
    const int r = q / (C::BN / 4), c = (q % (C::BN / 4)) * 4;
    const float4 v = *reinterpret_cast<const float4 *>(cs + r * C::LDC + c);
    if constexpr (O16) store_out4_16<T>(g, m0 + r, n0 + c, v, bias, res, relu, y);
    else store_out4(g, m0 + r, n0 + c, v, bias, res, relu, y, true);
  }
}

/* ---- version choice ------------------------------------------------------------------ */
int g_conv_version = -1; /* -1: CTXDIFF_CUDA_CONV not read yet; then 0 auto, 1 v1, 2 v2, 4 auto + v4 tiles,
                            5 auto + v5 (wgmma) where it runs, 6 as 5 with v6's tiles, 7 tuned */
#define CONV_TUNE 7

int conv_version() {
  if (g_conv_version < 0) {
    const char *e = getenv("CTXDIFF_CUDA_CONV");
    g_conv_version = (e && !strcmp(e, "v1"))   ? 1
                     : (e && !strcmp(e, "v2")) ? 2
                     : (e && !strcmp(e, "v4")) ? 4
                     : (e && !strcmp(e, "v5")) ? 5
                     : (e && !strcmp(e, "v6")) ? 6
                     : (e && !strcmp(e, "tune")) ? CONV_TUNE
                                               : 0;
  }
  return g_conv_version;
}

int g_sm_count = 0;      /* multiprocessors of the current device, read once */
int g_sm_count_hint = 0; /* > 0: cx_cuda_set_sm_count_hint's value instead */

int sm_count() {
  if (g_sm_count_hint > 0) return g_sm_count_hint;
  if (g_sm_count <= 0) {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
        n > 0)
      g_sm_count = n;
    else {
      (void)cudaGetLastError(); /* only a tile-size hint: fall back to an H100-sized guess */
      g_sm_count = 132;
    }
  }
  return g_sm_count;
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* Whether the v5/v6 (wgmma) kernels can run: their instructions exist only in sm_90a machine
 * code (CTXDIFF_CUDA_SM90A: the build's CUDA architectures include 90a), which only a compute
 * capability 9.0 device (H100/H200) loads. Elsewhere v5/v6 requests run v3. The emulator has
 * them. CTXDIFF_CUDA_WGMMA=0 turns them off everywhere (a kill switch should a GPU disagree
 * with the emulator's reading of the descriptors: validate then skips their rows). */
bool wgmma_ok() {
  static int off = -1;
  if (off < 0) {
    const char *e = getenv("CTXDIFF_CUDA_WGMMA");
    off = e && !strcmp(e, "0");
  }
  if (off) return false;
#if defined(CTXDIFF_CUDA_EMU)
  return true;
#elif defined(CTXDIFF_CUDA_SM90A)
  static int ok = -1; /* one device per process */
  if (ok < 0) {
    int dev = 0, major = 0, minor = 0;
    ok = cudaGetDevice(&dev) == cudaSuccess &&
         cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
         cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess && major == 9 && minor == 0;
    if (!ok) (void)cudaGetLastError();
  }
  return ok != 0;
#else
  return false;
#endif
}

/* Auto choice. v2's 128-row tile and its pipeline prologue only pay when there are at least
 * two row tiles (M >= 256; below that the GEMM is a few MFLOP and v1's 64-row tiles spread it
 * over more SMs). Both v2s have a 64-wide variant; with fewer output channels than half of it
 * (RPN heads: 6 and 12; fp32 keeps 16..31 as its tile costs less per padded column than the
 * tensor-core one) v1's 64x64 tile is as wasteful and has twice the blocks, so v1 stays. */
bool pick_v2(const conv_geom &g, cx_precision p) {
  const int v = conv_version();
  if (v == 1) return false;
  if ((long long)g.k * g.cout >= INT_MAX / 2) return false; /* v2's 32-bit weight indexing */
  if (v == 2) return true;
  if (g.m < 256) return false;
  return g.cout >= (p == CX_PREC_FP32 ? 16 : 32);
}

/* v2 launches: one instantiation per (tile width, A vector path, B vector path, and for the
 * tensor-core kernels fp32 or 16-bit weights). */
struct conv_args {
  const void *x;  /* float, or T when a16 */
  const void *wt; /* float, or T when w16 */
  const float *bias;
  const void *res; /* as y */
  void *y;         /* float, or T when o16 (split-K: the fp32 partials) */
  conv_geom g;
  int relu, out_vec;
  zstride zs; /* Winograd's batch (fp32 only) or split-K slices */
  bool a16, o16;
  bool v3; /* the cp.async kernel (16-bit operands, see conv_tc_v3_kernel) */
  bool v4; /* ... with 256 x 128 tiles and 64 x 64 warp tiles (CTXDIFF_CUDA_CONV=v4, unsplit, 128-wide) */
  bool v5; /* the wgmma kernel where unsplit 128-wide v3 runs (CTXDIFF_CUDA_CONV=v5, sm_90a) */
  bool v6; /* ... with 128 x 256 tiles (CTXDIFF_CUDA_CONV=v6), set by conv_run only */
};

template <int BN, bool AV, bool BV, bool KS>
void fp32_v2_launch(dim3 grid, cudaStream_t st, const conv_args &a) {
  conv_fp32_v2_kernel<BN, AV, BV, KS><<<grid, G_THREADS, 0, st>>>(
      static_cast<const float *>(a.x), static_cast<const float *>(a.wt), a.bias, static_cast<const float *>(a.res),
      static_cast<float *>(a.y), a.g, a.relu, a.out_vec, a.zs);
}

/* split-K slices (a.zs.kz) only on the all-vector paths: the caller checks av && bv */
template <int BN>
void fp32_v2_ab(bool av, bool bv, dim3 grid, cudaStream_t st, const conv_args &a) {
  if (a.zs.kz) fp32_v2_launch<BN, true, true, true>(grid, st, a);
  else if (av && bv) fp32_v2_launch<BN, true, true, false>(grid, st, a);
  else if (av) fp32_v2_launch<BN, true, false, false>(grid, st, a);
  else if (bv) fp32_v2_launch<BN, false, true, false>(grid, st, a);
  else fp32_v2_launch<BN, false, false, false>(grid, st, a);
}

template <typename T, int BN, bool AV, bool BV, bool W16, bool KS, bool A16 = false, bool O16 = false>
void tc_v2_launch(dim3 grid, cudaStream_t st, const conv_args &a) {
  conv_tc_v2_kernel<T, BN, AV, BV, W16, KS, A16, O16><<<grid, H_THREADS, 0, st>>>(
      static_cast<const atype<A16> *>(a.x), static_cast<const wtype<W16> *>(a.wt), a.bias,
      static_cast<const atype<O16> *>(a.res), static_cast<atype<O16> *>(a.y), a.g, a.relu, a.out_vec, a.zs);
}

template <typename T, int BN, bool W16>
void tc_v2_ab(bool av16, bool bv, dim3 grid, cudaStream_t st, const conv_args &a) {
  if (a.zs.kz) tc_v2_launch<T, BN, true, true, W16, true>(grid, st, a);
  else if (av16 && bv) tc_v2_launch<T, BN, true, true, W16, false>(grid, st, a);
  else if (bv) tc_v2_launch<T, BN, false, true, W16, false>(grid, st, a);
  else if constexpr (BN == 64) {
    if (av16) tc_v2_launch<T, BN, true, false, W16, false>(grid, st, a);
    else tc_v2_launch<T, BN, false, false, W16, false>(grid, st, a);
  } else {
    CX_CUDA_FAIL("conv2d: internal: no 128-wide tensor-core tile for scalar B gathers");
  }
}

template <typename T, int BN, bool KS, bool O16, int BM = 128>
void tc_v3_launch(dim3 grid, cudaStream_t st, const conv_args &a) {
  constexpr int smem = v3_tile<BN, BM>::SMEM_BYTES;
  static bool attr_set = false; /* once per instantiation (and device: one device per process) */
  if (!attr_set) {
    void (*kernel)(const unsigned short *, const unsigned short *, const float *, const atype<O16> *, atype<O16> *,
                   conv_geom, int, zstride) = conv_tc_v3_kernel<T, BN, KS, O16, BM>;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess) {
      CX_CUDA_FAIL("conv2d: setting %d bytes of dynamic shared memory for the v3 kernel failed", smem);
      return;
    }
    attr_set = true;
  }
  conv_tc_v3_kernel<T, BN, KS, O16, BM><<<grid, H_THREADS, smem, st>>>(
      static_cast<const unsigned short *>(a.x), static_cast<const unsigned short *>(a.wt), a.bias,
      static_cast<const atype<O16> *>(a.res), static_cast<atype<O16> *>(a.y), a.g, a.relu, a.zs);
}

template <typename T, bool O16, int NH>
void tc_v5_launch(dim3 grid, cudaStream_t st, const conv_args &a) {
  static bool attr_set = false; /* once per instantiation (and device: one device per process) */
  if (!attr_set) {
    void (*kernel)(const unsigned short *, const unsigned short *, const float *, const atype<O16> *, atype<O16> *,
                   conv_geom, int) = conv_wg_v5_kernel<T, O16, NH>;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, v5c<NH>::SMEM_BYTES) != cudaSuccess) {
      CX_CUDA_FAIL("conv2d: setting %d bytes of dynamic shared memory for the v%d kernel failed", v5c<NH>::SMEM_BYTES,
                   NH == 1 ? 5 : 6);
      return;
    }
    attr_set = true;
  }
  constexpr int smem = v5c<NH>::SMEM_BYTES; /* (the emulator's launch rewrite takes no '>' in <<<>>>) */
  conv_wg_v5_kernel<T, O16, NH><<<grid, H_THREADS, smem, st>>>(
      static_cast<const unsigned short *>(a.x), static_cast<const unsigned short *>(a.wt), a.bias,
      static_cast<const atype<O16> *>(a.res), static_cast<atype<O16> *>(a.y), a.g, a.relu);
}

/* 16-bit activations: v3 where its conditions hold (a.v3), else the v2 variants with vector A
 * gathers and 16-bit weights (the launcher checks); vector B and outputs, except 16-bit input to
 * an fp32 output with cout % 4 != 0 (64-wide only: the 128-wide scalar-B 16-bit-weight tile
 * would spill) */
template <typename T, int BN>
void tc_v2_io(bool bv, dim3 grid, cudaStream_t st, const conv_args &a) {
  if (a.v3) {
    if constexpr (BN == 128) {
      if (a.v6) { /* 128 x 256 tiles (the caller's grid counts them) */
        if (a.o16) tc_v5_launch<T, true, 2>(grid, st, a);
        else tc_v5_launch<T, false, 2>(grid, st, a);
        return;
      }
      if (a.v5) {
        if (a.o16) tc_v5_launch<T, true, 1>(grid, st, a);
        else tc_v5_launch<T, false, 1>(grid, st, a);
        return;
      }
      if (a.v4) { /* 256-row tiles (the caller's grid counts them) */
        if (a.o16) tc_v3_launch<T, 128, false, true, 256>(grid, st, a);
        else tc_v3_launch<T, 128, false, false, 256>(grid, st, a);
        return;
      }
    }
    if (a.zs.kz) tc_v3_launch<T, BN, true, false>(grid, st, a);
    else if (a.o16) tc_v3_launch<T, BN, false, true>(grid, st, a);
    else tc_v3_launch<T, BN, false, false>(grid, st, a);
  } else if (a.zs.kz) {
    if (a.a16) tc_v2_launch<T, BN, true, true, true, true, true, false>(grid, st, a);
    else tc_v2_launch<T, BN, true, true, true, true, false, false>(grid, st, a);
  } else if (a.a16 && a.o16) tc_v2_launch<T, BN, true, true, true, false, true, true>(grid, st, a);
  else if (a.a16 && bv) tc_v2_launch<T, BN, true, true, true, false, true, false>(grid, st, a);
  else if (a.a16) {
    if constexpr (BN == 64) tc_v2_launch<T, 64, true, false, true, false, true, false>(grid, st, a);
    else CX_CUDA_FAIL("conv2d: internal: no 128-wide scalar-B tile for 16-bit activations");
  } else tc_v2_launch<T, BN, true, true, true, false, false, true>(grid, st, a);
}

template <typename T, int BN>
void tc_v2_w(bool w16, bool av16, bool bv, dim3 grid, cudaStream_t st, const conv_args &a) {
  if (a.a16 || a.o16) tc_v2_io<T, BN>(bv, grid, st, a);
  else if (w16) tc_v2_ab<T, BN, true>(av16, bv, grid, st, a);
  else tc_v2_ab<T, BN, false>(av16, bv, grid, st, a);
}

/* fp32 weights rounded to T, for desc.kernel16 (cx_cuda_weights16_upload) */
template <typename T>
__global__ void to16_kernel(const float *__restrict__ src, size_t n, T *__restrict__ dst) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dst[i] = to_t<T>(src[i]);
}

/* ---- split-K ------------------------------------------------------------------------- */
/* Output tiles that would leave SMs idle (the classifier's 7x7 conv on 1000 ROIs: 8x8 tiles of
 * 128x128 on 132 SMs; res5 1x1s at batch 1) are also split along K: slice z of the v2 kernels
 * writes its partial sums to ws[z] (fp32 in every precision), then splitk_reduce adds the
 * slices in ascending k order and applies the epilogue exactly as store_out does:
 * ((bias + residual) + acc), ReLU. Only the summation order differs from one slice. */
int g_splitk = -1; /* -1: CTXDIFF_CUDA_SPLITK not read yet; 0 auto, 1 off, >= 2 forced slices */

int splitk_setting() {
  if (g_splitk < 0) {
    const char *e = getenv("CTXDIFF_CUDA_SPLITK");
    const int v = e ? atoi(e) : 0;
    g_splitk = (e && !strcmp(e, "off")) ? 1 : (v >= 2 && v <= 64) ? v : 0;
  }
  return g_splitk;
}

/* k columns per slice for `want` slices of K, rounded up to SPLIT_KQ; 0 when that leaves one */
int split_kz(int k, int want) {
  if (want < 2) return 0;
  const int q = (k + SPLIT_KQ - 1) / SPLIT_KQ;
  const int kz = (q + want - 1) / want * SPLIT_KQ;
  return kz < k ? kz : 0;
}

/* Auto: only grids under one block per SM, only K >= 1024, slices of >= 512 columns, aiming at
 * two blocks per SM (the v2 kernels' occupancy). */
int pick_splits(const conv_geom &g, long long blocks) {
  const int set = splitk_setting();
  if (set == 1) return 1;
  if (set >= 2) return set;
  const int sms = sm_count();
  if (blocks >= sms || g.k < 1024) return 1;
  long long s = 2LL * sms / blocks;
  if (s > g.k / 512) s = g.k / 512;
  if (s > 16) s = 16;
  return s < 2 ? 1 : (int)s;
}

/* One thread per 4 outputs (the split path needs cout % 4 == 0 and 16-byte aligned buffers);
 * O16: y and residual hold T values (16-bit activations). */
template <typename T, bool O16>
__global__ void splitk_reduce_kernel(const float *__restrict__ ws, int slices, long long slice,
                                     const float *__restrict__ bias, const atype<O16> *__restrict__ res, int relu,
                                     atype<O16> *__restrict__ y, conv_geom g) {
  /* rows past the device-side live count stay untouched, as in the GEMM kernels */
  long long rows = g.m;
  if (g.live) {
    const long long lim = (long long)__ldg(g.live) * g.live_per - g.live_off;
    if (lim < rows) rows = lim < 0 ? 0 : lim;
  }
  const long long cq = g.cout / 4, total = rows * cq;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long m = i / cq;
    const int nn = (int)(i % cq) * 4;
    const long long o = m * g.cout + nn;
    float4 acc = *reinterpret_cast<const float4 *>(ws + o);
    for (int z = 1; z < slices; z++) { /* ascending k */
      const float4 p = *reinterpret_cast<const float4 *>(ws + z * slice + o);
      acc.x += p.x, acc.y += p.y, acc.z += p.z, acc.w += p.w;
    }
    if constexpr (O16) store_out4_16<T>(g, m, nn, acc, bias, res, relu, y);
    else store_out4(g, m, nn, acc, bias, res, relu, y, true);
  }
}

template <typename T>
void splitk_reduce(const float *ws, int slices, long long slice, const float *bias, const void *res, int relu,
                   void *y, bool o16, const conv_geom &g, cudaStream_t st) {
  const unsigned blocks = cx_blocks((size_t)g.m * (size_t)(g.cout / 4), 256);
  if (o16)
    splitk_reduce_kernel<T, true><<<blocks, 256, 0, st>>>(ws, slices, slice, bias,
                                                          static_cast<const unsigned short *>(res), relu,
                                                          static_cast<unsigned short *>(y), g);
  else
    splitk_reduce_kernel<T, false><<<blocks, 256, 0, st>>>(ws, slices, slice, bias, static_cast<const float *>(res),
                                                           relu, static_cast<float *>(y), g);
}

template <typename T>
__global__ void from16_kernel(const unsigned short *__restrict__ src, size_t n, float *__restrict__ dst) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dst[i] = from_t<T>(src[i]);
}

} /* namespace */

int cx_cuda_to16(const float *src, void *dst, size_t n) {
  const cx_precision p = cx_cuda_precision();
  if (p == CX_PREC_FP32) return CX_CUDA_FAIL("to16: precision fp32 has no 16-bit format");
  if (!n) return 0;
  const cudaStream_t st = cx_cuda_stream();
  if (p == CX_PREC_FP16) to16_kernel<__half><<<cx_blocks(n, 256), 256, 0, st>>>(src, n, static_cast<__half *>(dst));
  else to16_kernel<__nv_bfloat16><<<cx_blocks(n, 256), 256, 0, st>>>(src, n, static_cast<__nv_bfloat16 *>(dst));
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

int cx_cuda_from16(const void *src, float *dst, size_t n) {
  const cx_precision p = cx_cuda_precision();
  if (p == CX_PREC_FP32) return CX_CUDA_FAIL("from16: precision fp32 has no 16-bit format");
  if (!n) return 0;
  const cudaStream_t st = cx_cuda_stream();
  const unsigned short *s16 = static_cast<const unsigned short *>(src);
  if (p == CX_PREC_FP16) from16_kernel<__half><<<cx_blocks(n, 256), 256, 0, st>>>(s16, n, dst);
  else from16_kernel<__nv_bfloat16><<<cx_blocks(n, 256), 256, 0, st>>>(s16, n, dst);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

void cx_cuda_set_conv_version(int v) {
  g_conv_version = (v == 1 || v == 2 || v == 4 || v == 5 || v == 6 || v == CONV_TUNE) ? v : 0;
}
int cx_cuda_conv_wgmma_available(void) { return wgmma_ok() ? 1 : 0; }
void cx_cuda_set_sm_count_hint(int n) { g_sm_count_hint = n > 0 ? n : 0; }
int cx_cuda_conv_version(void) { return conv_version(); }
void cx_cuda_set_splitk(int s) { g_splitk = s == 1 ? 1 : (s >= 2 && s <= 64) ? s : 0; }
int cx_cuda_splitk(void) { return splitk_setting(); }

int cx_cuda_conv2d(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y, const float *residual,
                   int relu) {
  return cx_cuda_conv2d_rows(d, x, n, h, w, y, residual, relu, NULL, 1);
}

int cx_cuda_conv2d_live(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y, const float *residual,
                        int relu, const int *live) {
  return cx_cuda_conv2d_rows(d, x, n, h, w, y, residual, relu, live, 1);
}

/* ---- tactics (CTXDIFF_CUDA_CONV=tune) ---------------------------------------------------
 * Several configurations can compute the same conv (conv_direct's candidates: split-K or not,
 * 64- or 128-wide tiles, v3/v4/v5/v6; conv_run's: Winograd or the direct kernels). With tuning
 * on, the first time a shape runs outside a stream capture each candidate is launched on the
 * real operands and timed with CUDA events (one warm-up, the best of three), the fastest is kept
 * for the shape for the rest of the process, and it runs once more so that y holds its result.
 * A plan's first call is eager, so the captured graphs replay tuned choices. */
namespace {
struct tactic {
  conv_geom g; /* the shape (live: only whether there is a device-side row limit) */
  int kind;    /* 0: the direct kernels' configuration; 1: fp32 3x3 (ver 0 direct, 1 Winograd) */
  int x16, y16, res, relu, prec, sms;
  int split_set;     /* splitk_setting() when tuned: a forced split-K setting is another shape */
  int ver;           /* kind 0: 0 (v3 or v2), 4, 5, 6 */
  int splits, wide;  /* kind 0: K slices requested, 128-wide tile forced */
  int changed;       /* kind 0: not the heuristic's configuration */
};
#define MAX_TACTICS 1024
tactic g_tactics[MAX_TACTICS];
int g_ntactics;

bool same_shape(const tactic &t, const tactic &q) {
  const conv_geom &a = t.g, &b = q.g;
  return t.kind == q.kind && a.h == b.h && a.w == b.w && a.cin == b.cin && a.cout == b.cout && a.kh == b.kh && a.kw == b.kw &&
         a.stride == b.stride && a.pad_t == b.pad_t && a.pad_l == b.pad_l && a.m == b.m && (a.live != NULL) == (b.live != NULL) &&
         a.live_per == b.live_per && t.x16 == q.x16 && t.y16 == q.y16 && t.res == q.res && t.relu == q.relu &&
         t.prec == q.prec && t.sms == q.sms && t.split_set == q.split_set;
}

/* the tactic recorded for q's shape, or -1 */
int tactic_find(const tactic &q) {
  for (int i = 0; i < g_ntactics; i++)
    if (same_shape(g_tactics[i], q)) return i;
  return -1;
}

/* whether a new shape can be timed now: not while st is being captured, and room to keep it */
bool tactic_can_time(cudaStream_t st) {
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  return g_ntactics < MAX_TACTICS && cudaStreamIsCapturing(st, &cap) == cudaSuccess && cap == cudaStreamCaptureStatusNone;
}

/* Times run(c) for the candidates c < n on stream st (one warm-up, the best of three between
 * CUDA events); returns the fastest c (0 when nothing was measurable), or -1 with the CUDA
 * runtime's error recorded. */
template <class Run>
int tactic_time(int n, Run run, cudaStream_t st) {
  cudaEvent_t e0, e1;
  if (cudaEventCreate(&e0) != cudaSuccess) return -1;
  if (cudaEventCreate(&e1) != cudaSuccess) {
    cudaEventDestroy(e0);
    return -1;
  }
  int best = 0;
  float best_ms = 0.0f;
  for (int c = 0; c < n; c++) {
    run(c); /* warm-up */
    float t = 0.0f;
    for (int r = 0; r < 3; r++) {
      float m = 0.0f;
      if (cudaEventRecord(e0, st) != cudaSuccess) break;
      run(c);
      if (cudaEventRecord(e1, st) != cudaSuccess || cudaEventSynchronize(e1) != cudaSuccess ||
          cudaEventElapsedTime(&m, e0, e1) != cudaSuccess)
        break;
      t = r == 0 || m < t ? m : t;
    }
    if (t > 0.0f && (best_ms == 0.0f || t < best_ms)) best = c, best_ms = t;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  if (cudaGetLastError() != cudaSuccess) {
    CX_CUDA_FAIL("conv2d: timing the candidate kernels failed");
    return -1;
  }
  return best;
}
} // namespace

int cx_cuda_conv_tactics(char *buf, size_t size) {
  int n[4] = {0, 0, 0, 0}, wd[2] = {0, 0}, split = 0, changed = 0;
  for (int i = 0; i < g_ntactics; i++) {
    const tactic &t = g_tactics[i];
    if (t.kind == 1) {
      wd[t.ver]++;
      continue;
    }
    n[t.ver == 0 ? 0 : t.ver - 3]++;
    split += t.splits > 1;
    changed += t.changed;
  }
  if (buf && size)
    snprintf(buf, size,
             "%d shapes tuned: v3/v2 %d, v4 %d, v5 %d, v6 %d (split-K %d, not the heuristic's choice %d); fp32 3x3 "
             "winograd %d, direct %d",
             g_ntactics, n[0], n[1], n[2], n[3], split, changed, wd[1], wd[0]);
  return g_ntactics;
}

/* The kernel the last conv2d call queued, for the per-op profile (cx_cuda_conv_last_kernel). */
static char g_last_kernel[40];
const char *cx_cuda_conv_last_kernel(void) { return g_last_kernel; }

/* The implicit-GEMM kernels (v1, v2, v3 and the opt-in v4/v5/v6) */
static int conv_direct(const cx_conv2d_desc *d, const void *x, bool x16, int n, int h, int w, void *y, bool y16,
                       const void *residual, int relu, const int *live, int per) {
  const bool io16 = x16 || y16;
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
  g.live = live;
  g.live_per = (long long)per * g.ho * g.wo;
  g.live_off = 0;
  const cudaStream_t st = cx_cuda_stream();
  const cx_precision p = cx_cuda_precision();
  /* 16-bit runs read the weights converted once at load (kernel16) when the descriptor has them
   * in this precision's format, else round the fp32 kernel while staging (same values) */
  const bool w16 = p != CX_PREC_FP32 && d->kernel16 && d->kernel16_prec == (int)p;
  const void *wt = w16 ? d->kernel16 : static_cast<const void *>(d->kernel);
  const float *bias = d->bias;
  if (!wt)
    return CX_CUDA_FAIL("conv2d: no weights for %s in the descriptor (kernel NULL, kernel16 %s)", cx_precision_name(p),
                        d->kernel16 ? "in another 16-bit format" : "NULL");
  if (io16) {
    /* 16-bit activations: the v2 tensor-core kernel with vector A gathers and 16-bit weights */
    if (p == CX_PREC_FP32) return CX_CUDA_FAIL("conv2d: 16-bit activations need precision fp16 or bf16");
    if (!w16) return CX_CUDA_FAIL("conv2d: 16-bit activations need the descriptor's %s weights (kernel16)", cx_precision_name(p));
    if ((long long)g.k * g.cout >= INT_MAX / 2) return CX_CUDA_FAIL("conv2d: K x cout = %lld too large", (long long)g.k * g.cout);
    /* fp32 outputs with cout % 4 != 0 (the RPN class logits: 6) take the scalar B/output variant */
    const bool vec_out = g.cout % 4 == 0 && aligned16(y) && (!residual || aligned16(residual)) &&
                         (!bias || aligned16(bias)) && ((uintptr_t)wt & 7) == 0;
    if (g.cin % 16 || !aligned16(x) || (y16 && !vec_out))
      return CX_CUDA_FAIL("conv2d: 16-bit activations need cin %% 16 == 0 (%d), 16-byte aligned buffers and, for "
                          "16-bit outputs, cout %% 4 == 0 (%d)", g.cin, g.cout);
  }
  if (io16 || pick_v2(g, p)) {
    /* Vector paths only where every address they form is 16-byte aligned: base pointers are
     * checked here (they may be offsets into larger buffers), offsets are multiples of 4 floats
     * when cin (A) / cout (B, output) are. */
    const bool av = g.cin % 4 == 0 && aligned16(x);
    const bool av16 = g.cin % 16 == 0 && aligned16(x); /* tensor-core loader: 16-channel runs */
    const bool bv = g.cout % 4 == 0 && (w16 ? ((uintptr_t)wt & 7) == 0 : aligned16(wt));
    const int ov = g.cout % 4 == 0 && aligned16(y) && (!residual || aligned16(residual)) && (!bias || aligned16(bias));
    conv_args a = {x, wt, bias, residual, y, g, relu, ov, {0, 0, 0, 0}, x16, y16, false, false, false, false};
    /* v3 (cp.async) for 16-bit activations and weights in 8-column B chunks; CTXDIFF_CUDA_CONV=v2
     * keeps v2 (A/B) */
    a.v3 = x16 && w16 && ov && g.cout % 8 == 0 && ((uintptr_t)wt & 15) == 0 && conv_version() != 2;
    const unsigned mt = (unsigned)((g.m + 127) / 128);
    /* Tensor-core GEMMs whose weights are gathered one by one (cout % 4 != 0: mask logits,
     * class logits, odd shapes) take the 64-wide tile: the 128-wide bf16 ones spilled (4 to 28
     * bytes on sm_80/sm_90), so they are not instantiated */
    const bool only64 = g.cout <= 64 || (p != CX_PREC_FP32 && !bv);
    const int wide = only64 ? 64 : 128;
    /* Grids under one block per SM: split K (pick_splits; its kernel variants are the
     * all-vector ones) with the widest tile; where K is too short for that, 64-wide tiles (res4
     * at 1024^2 batch 1: 64x64 pixels x 256 -> 32x2 = 64 blocks at 128 wide) */
    const bool vec_all = (p == CX_PREC_FP32 ? av : av16) && bv && ov;
    const int splits_h = vec_all ? pick_splits(g, (long long)mt * ((g.cout + wide - 1) / wide)) : 1;
    const bool v6_fits = g.cout > 128 && (long long)mt * ((g.cout + 255) / 256) >= sm_count();
    /* One configuration: s_req slices of K (split_kz may make fewer), the 128-wide tile even where
     * the rule takes 64 for an under-filled grid (force_wide), kernel version ver (0: v3, or v2
     * where v3 cannot run; 4, 5, 6 where unsplit 128-wide v3 would run). */
    auto run = [&](int s_req, bool force_wide, int ver, const char *suffix) {
      conv_args b = a;
      b.zs.kz = split_kz(g.k, s_req);
      const int splits = b.zs.kz ? (g.k + b.zs.kz - 1) / b.zs.kz : 1;
      float *ws = NULL;
      if (splits > 1) {
        b.zs.y = g.m * g.cout;
        ws = static_cast<float *>(cx_cuda_scratch((size_t)splits * (size_t)b.zs.y * sizeof(float)));
        if (!ws) return;
        b.y = ws; /* fp32 partial sums; bias, residual, ReLU and the 16-bit store in splitk_reduce */
        b.bias = NULL;
        b.res = NULL;
        b.relu = 0;
        b.o16 = false;
        /* out_vec stays: the scratch arena is 256-byte aligned and cout % 4 == 0 */
      }
      const bool narrow =
          only64 || (!force_wide && splits == 1 && (long long)mt * ((g.cout + 127) / 128) < sm_count());
      const bool alt = b.v3 && !narrow && splits == 1; /* v4, v5, v6 can run it too */
      b.v4 = alt && ver == 4;                       /* 256-row tiles */
      b.v5 = alt && ver >= 5 && wgmma_ok();         /* 128 x 128, wgmma */
      /* v6: 128 x 256 where cout fills more than one 128-wide tile and the 256-wide grid still
       * has a block for every SM (one block per SM: its 195 KB of shared memory) */
      b.v6 = b.v5 && ver == 6 && v6_fits;
      const dim3 grid(b.v4 ? (unsigned)((g.m + 255) / 256) : mt,
                      (unsigned)(narrow ? (g.cout + 63) / 64 : b.v6 ? (g.cout + 255) / 256 : (g.cout + 127) / 128),
                      (unsigned)splits);
      char sk[24] = "";
      if (splits > 1) snprintf(sk, sizeof sk, " split-K %d", splits);
      snprintf(g_last_kernel, sizeof g_last_kernel, "%s %s%s%s%s",
               b.v6 ? "v6 wgmma" : b.v5 ? "v5 wgmma" : b.v4 ? "v4" : b.v3 ? "v3" : "v2",
               b.v4 ? "256x128" : narrow ? "128x64" : b.v6 ? "128x256" : "128x128", io16 ? " a16" : "", sk, suffix);
      if (p == CX_PREC_FP32) {
        if (narrow) fp32_v2_ab<64>(av, bv, grid, st, b);
        else fp32_v2_ab<128>(av, bv, grid, st, b);
      } else if (p == CX_PREC_FP16) {
        if (narrow) tc_v2_w<__half, 64>(w16, av16, bv, grid, st, b);
        else tc_v2_w<__half, 128>(w16, av16, bv, grid, st, b);
      } else {
        if (narrow) tc_v2_w<__nv_bfloat16, 64>(w16, av16, bv, grid, st, b);
        else tc_v2_w<__nv_bfloat16, 128>(w16, av16, bv, grid, st, b);
      }
      if (splits > 1) {
        if (cudaGetLastError() != cudaSuccess) {
          CX_CUDA_FAIL("conv2d: the split-K GEMM did not launch");
          return;
        }
        if (p == CX_PREC_BF16) splitk_reduce<__nv_bfloat16>(ws, splits, b.zs.y, bias, residual, relu, y, y16, g, st);
        else splitk_reduce<__half>(ws, splits, b.zs.y, bias, residual, relu, y, y16, g, st);
      }
    };
    const int had_err = cx_cuda_has_error(); /* the launchers record their own failures */
    int ver = conv_version();
    if (ver == CONV_TUNE) {
      /* Candidates: the heuristic configuration; where it splits K, unsplit and half and twice
       * its slice count (within pick_splits' bounds: slices of >= 512 columns, <= 16); the
       * 128-wide tile where it takes 64 for an under-filled grid; v4, v5, v6 on the unsplit
       * 128-wide tile. A forced split-K setting stays forced. Rerunning must not change y: no
       * tuning where y is also an input. */
      struct cfg {
        int s;
        bool wide;
        int ver;
      } cand[8];
      int nc = 0;
      const bool rule_narrow = !only64 && (long long)mt * ((g.cout + 127) / 128) < sm_count();
      cand[nc++] = {splits_h, false, 0};
      const bool split_auto = splitk_setting() == 0; /* CTXDIFF_CUDA_SPLITK / cx_cuda_set_splitk win */
      if (split_auto && splits_h > 1) {
        cand[nc++] = {1, false, 0};
        int twice = 2 * splits_h;
        if (twice > g.k / 512) twice = g.k / 512;
        if (twice > 16) twice = 16;
        if (splits_h / 2 >= 2) cand[nc++] = {splits_h / 2, false, 0};
        if (twice > splits_h) cand[nc++] = {twice, false, 0};
      }
      if (rule_narrow && (split_auto || splits_h == 1)) cand[nc++] = {1, true, 0};
      if (a.v3 && !only64 && (split_auto || splits_h == 1)) { /* v3 on the unsplit 128-wide tile is above */
        cand[nc++] = {1, true, 4};
        if (wgmma_ok()) cand[nc++] = {1, true, 5};
        if (wgmma_ok() && v6_fits) cand[nc++] = {1, true, 6};
      }
      tactic q;
      memset(&q, 0, sizeof q);
      q.g = g; /* same_shape compares whether g.live is set, not its address */
      q.x16 = x16, q.y16 = y16, q.res = residual != NULL, q.relu = relu, q.prec = (int)p, q.sms = sm_count();
      q.split_set = splitk_setting();
      const int i = nc > 1 && y != x && y != residual ? tactic_find(q) : -2;
      if (i >= 0) {
        const tactic &t = g_tactics[i];
        run(t.splits, t.wide, t.ver, " tuned");
      } else if (i == -1 && tactic_can_time(st)) {
        const int c = tactic_time(nc, [&](int k) { run(cand[k].s, cand[k].wide, cand[k].ver, ""); }, st);
        if (c < 0) return -1;
        q.splits = cand[c].s, q.wide = cand[c].wide, q.ver = cand[c].ver;
        q.changed = c > 0;
        g_tactics[g_ntactics++] = q;
        run(q.splits, q.wide, q.ver, " tuned"); /* y holds the chosen configuration's result */
      } else {
        run(splits_h, false, 0, "");
      }
    } else {
      run(splits_h, false, ver == 4 || ver == 5 || ver == 6 ? ver : 0, "");
    }
    CX_CUDA_LAUNCH_CHECK();
    return !had_err && cx_cuda_has_error() ? -1 : 0;
  }
  /* v1 reads and writes fp32 activations only */
  snprintf(g_last_kernel, sizeof g_last_kernel, "v1");
  const float *xf = static_cast<const float *>(x), *rf = static_cast<const float *>(residual);
  float *yf = static_cast<float *>(y);
  if (p == CX_PREC_FP32) {
    dim3 grid((unsigned)((g.m + F_BM - 1) / F_BM), (unsigned)((g.cout + F_BN - 1) / F_BN));
    conv_fp32_kernel<<<grid, F_THREADS, 0, st>>>(xf, static_cast<const float *>(wt), bias, rf, yf, g, relu,
                                                 zstride{0, 0, 0, 0});
  } else {
    dim3 grid((unsigned)((g.m + T_BM - 1) / T_BM), (unsigned)((g.cout + T_BN - 1) / T_BN));
    if (p == CX_PREC_FP16 && w16)
      conv_tc_kernel<__half, true><<<grid, T_THREADS, 0, st>>>(xf, wt, bias, rf, yf, g, relu);
    else if (p == CX_PREC_FP16)
      conv_tc_kernel<__half, false><<<grid, T_THREADS, 0, st>>>(xf, wt, bias, rf, yf, g, relu);
    else if (w16)
      conv_tc_kernel<__nv_bfloat16, true><<<grid, T_THREADS, 0, st>>>(xf, wt, bias, rf, yf, g, relu);
    else
      conv_tc_kernel<__nv_bfloat16, false><<<grid, T_THREADS, 0, st>>>(xf, wt, bias, rf, yf, g, relu);
  }
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

/* Every convolution: x16 / y16 say whether x / (y, residual) hold 16-bit activations. */
static int conv_run(const cx_conv2d_desc *d, const void *x, bool x16, int n, int h, int w, void *y, bool y16,
                    const void *residual, int relu, const int *live, int per) {
  g_last_kernel[0] = 0;
  if (live && per <= 0) return CX_CUDA_FAIL("conv2d: %d images per live item", per);
  /* 3x3 / stride 1 / pad 1 with a packed Winograd kernel: 4x fewer multiplications (F(4x4,3x3)).
   * Strict fp32 only: the transforms amplify 16-bit operand rounding. */
  if (x16 || y16 || !d->winograd || cx_cuda_precision() != CX_PREC_FP32 || !cx_cuda_winograd_on() ||
      !cx_winograd_applies(d))
    return conv_direct(d, x, x16, n, h, w, y, y16, residual, relu, live, per);
  auto wino = [&](const char *suffix) {
    snprintf(g_last_kernel, sizeof g_last_kernel, "winograd F(%dx%d,3x3)%s", d->winograd_tile, d->winograd_tile, suffix);
    return cx_cuda_conv3x3_winograd(d, static_cast<const float *>(x), n, h, w, static_cast<float *>(y),
                                    static_cast<const float *>(residual), relu, live, per);
  };
  /* tuning: Winograd or the direct kernels, where the descriptor has both forms and rerunning
   * cannot change y */
  if (conv_version() != CONV_TUNE || !d->kernel || y == x || y == residual || n <= 0) return wino("");
  tactic q;
  memset(&q, 0, sizeof q);
  q.kind = 1;
  q.g.h = h, q.g.w = w, q.g.cin = d->cin, q.g.cout = d->cout, q.g.kh = 3, q.g.kw = 3, q.g.stride = 1;
  q.g.pad_t = q.g.pad_l = 1, q.g.m = (long long)n * h * w, q.g.live = live, q.g.live_per = per;
  q.res = residual != NULL, q.relu = relu, q.prec = (int)CX_PREC_FP32, q.sms = sm_count();
  q.split_set = splitk_setting();
  auto direct = [&](const char *suffix) {
    const int rc = conv_direct(d, x, false, n, h, w, y, false, residual, relu, live, per);
    if (suffix[0] && strlen(g_last_kernel) + strlen(suffix) < sizeof g_last_kernel) strcat(g_last_kernel, suffix);
    return rc;
  };
  const int i = tactic_find(q);
  if (i >= 0) return g_tactics[i].ver ? wino(" tuned") : direct(" tuned");
  if (!tactic_can_time(cx_cuda_stream())) return wino("");
  /* direct("") tunes its own configuration at its first (warm-up) run */
  const int c = tactic_time(2, [&](int k) { k ? wino("") : direct(""); }, cx_cuda_stream());
  if (c < 0) return -1;
  q.ver = c;
  g_tactics[g_ntactics++] = q;
  return c ? wino(" tuned") : direct(" tuned"); /* y holds the chosen path's result */
}

int cx_cuda_conv2d_rows(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y, const float *residual,
                        int relu, const int *live, int per) {
  return conv_run(d, x, false, n, h, w, y, false, residual, relu, live, per);
}

int cx_cuda_conv2d_io(const cx_conv2d_desc *d, const void *x, int x16, int n, int h, int w, void *y, int y16,
                      const void *residual, int relu) {
  return conv_run(d, x, x16 != 0, n, h, w, y, y16 != 0, residual, relu, NULL, 1);
}

int cx_cuda_conv2d_io_rows(const cx_conv2d_desc *d, const void *x, int x16, int n, int h, int w, void *y, int y16,
                           const void *residual, int relu, const int *live, int per) {
  return conv_run(d, x, x16 != 0, n, h, w, y, y16 != 0, residual, relu, live, per);
}

/* Winograd's 36 (16) independent GEMMs in one launch: the fp32 conv kernels above as 1x1
 * convolutions over an M x 1 "image" (row m of A = pixel m, K = cin), gridDim.z = batch. Same
 * v1/v2 choice and per-output fmaf order as a convolution; no epilogue. */
int cx_cuda_gemm_f32_batched(const float *A, long long sA, const float *B, long long sB, float *C, long long sC,
                             int batch, int M, int K, int N, const int *live, long long live_per, long long live_off) {
  if (batch <= 0 || M <= 0 || N <= 0) return 0;
  if (K <= 0 || batch > 65535) return CX_CUDA_FAIL("gemm_f32_batched: bad shape (batch %d, K %d)", batch, K);
  conv_geom g;
  g.h = M;
  g.w = 1;
  g.cin = K;
  g.cout = N;
  g.kh = g.kw = g.stride = 1;
  g.pad_t = g.pad_l = 0;
  g.ho = M;
  g.wo = 1;
  g.k = K;
  g.m = M;
  g.live = live;
  g.live_per = live_per;
  g.live_off = live_off;
  const zstride zs = {sA, sB, sC, 0};
  const cudaStream_t st = cx_cuda_stream();
  if (pick_v2(g, CX_PREC_FP32)) {
    /* the vector paths also need every slice's base 16-byte aligned */
    const bool av = K % 4 == 0 && sA % 4 == 0 && aligned16(A);
    const bool bv = N % 4 == 0 && sB % 4 == 0 && aligned16(B);
    const int ov = N % 4 == 0 && sC % 4 == 0 && aligned16(C);
    const conv_args a = {A, B, nullptr, nullptr, C, g, 0, ov, zs, false, false, false, false, false, false};
    const unsigned mt = (unsigned)((M + 127) / 128);
    const bool narrow = N <= 64 || (long long)mt * ((N + 127) / 128) * batch < sm_count();
    const dim3 grid(mt, (unsigned)(narrow ? (N + 63) / 64 : (N + 127) / 128), (unsigned)batch);
    if (narrow) fp32_v2_ab<64>(av, bv, grid, st, a);
    else fp32_v2_ab<128>(av, bv, grid, st, a);
  } else {
    const dim3 grid((unsigned)((M + F_BM - 1) / F_BM), (unsigned)((N + F_BN - 1) / F_BN), (unsigned)batch);
    conv_fp32_kernel<<<grid, F_THREADS, 0, st>>>(A, B, nullptr, nullptr, C, g, 0, zs);
  }
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

void *cx_cuda_weights16_upload(cx_precision p, const float *host, size_t count) {
  if ((p != CX_PREC_FP16 && p != CX_PREC_BF16) || !host || !count) {
    CX_CUDA_FAIL("weights16_upload: bad arguments (precision %s, %zu values)", cx_precision_name(p), count);
    return NULL;
  }
  /* rounded on the device with the kernels' own conversion: the same values as staging fp32 */
  float *tmp = static_cast<float *>(cx_cuda_malloc(count * sizeof(float)));
  void *out = cx_cuda_malloc(count * 2);
  if (tmp && out && !cx_cuda_upload(tmp, host, count * sizeof(float))) {
    const cudaStream_t st = cx_cuda_stream();
    if (p == CX_PREC_FP16)
      to16_kernel<__half><<<cx_blocks(count, 256), 256, 0, st>>>(tmp, count, static_cast<__half *>(out));
    else
      to16_kernel<__nv_bfloat16><<<cx_blocks(count, 256), 256, 0, st>>>(tmp, count, static_cast<__nv_bfloat16 *>(out));
    if (cudaGetLastError() == cudaSuccess && !cx_cuda_sync()) {
      cx_cuda_free(tmp);
      return out;
    }
    CX_CUDA_FAIL("weights16_upload: conversion kernel failed");
  }
  cx_cuda_free(tmp);
  cx_cuda_free(out);
  return NULL;
}
