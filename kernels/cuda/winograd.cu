/* winograd.cu — 3x3 / stride 1 / pad 1 convolution in Winograd form, strict fp32: the CUDA
 * version of kernels/cpu/winograd.c (cx_conv3x3_winograd), same transforms, same order of
 * operations, same packed kernel.
 *
 *   F(4x4, 3x3): 6x6 input tiles, 36 GEMMs over channels, 4x fewer multiplications than the
 *       direct convolution (the main case); F(2x2, 3x3): 4x4 tiles, 16 GEMMs, 2.25x.
 *
 * Layouts: x [n, h, w, cin] NHWC; U = d->winograd, device copy of cx_winograd_pack's
 * [(T+2)^2][cin][cout] (cx_cuda_winograd_upload); y and residual [n, h, w, cout]. Tiles
 * p = (b*th + ty)*tw + tx, th = ceil(h/T), tw = ceil(w/T); the tile at (ty, tx) reads the
 * (T+2)^2 patch whose corner is (T*ty - 1, T*tx - 1) (zero outside the image) and writes the
 * T x T outputs at (T*ty, T*tx) that lie inside the image.
 *   1. input transform: V[e][p][c] = (B^T d B)[e] per (tile, channel), one thread each, channel
 *      fastest (coalesced reads of x, coalesced writes of V);
 *   2. M[e] = V[e] x U[e] ([P][cin] x [cin][cout]) for every e: conv.cu's fp32 GEMM kernels
 *      through cx_cuda_gemm_f32_batched (one launch, gridDim.z = (T+2)^2);
 *   3. output transform + epilogue: Y = A^T M A per (tile, output channel), then (+ bias) +
 *      residual, ReLU — winograd.c's order, so both sides round alike.
 * Transforms as two 1-D passes (columns, then rows), the expressions of winograd.c's BT4/BT2,
 * at4_pass/output_tf2. V and M live in the backend's scratch arena (cx_cuda_scratch; every
 * op uses it within its own call only); tiles go in chunks so it stays under WS_CAP_FLOATS. Validated by `ctxdiff validate --device cuda --op
 * conv2d` ("winograd ..." rows) against the CPU's cx_conv2d with its own Winograd path. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_common.cuh"

namespace {

constexpr int TF_THREADS = 256;
/* V + M of one chunk: 512 MiB. FPN P2 at 1024^2 (256x256x256, 4096 tiles of 36 x 512 floats)
 * is 302 MB and the RPN conv on it 453 MB, so batch 1 runs in one chunk; bigger batches split
 * into chunks of thousands of tiles, still enough to fill the 36 GEMMs' grids. */
#ifndef CX_WINO_CAP_FLOATS
#define CX_WINO_CAP_FLOATS ((size_t)128 << 20) /* a build-time override tests the chunking */
#endif
constexpr size_t WS_CAP_FLOATS = CX_WINO_CAP_FLOATS;
static_assert(WS_CAP_FLOATS < ((size_t)1 << 31), "the kernels index a chunk's planes in 32 bits");

/* Index math is 32-bit (a 64-bit division is a software routine of dozens of instructions,
 * several per element would outweigh these kernels' memory work): tile counts fit an int
 * (checked by the launcher) and tc * max(cin, cout) is below the workspace cap; only addresses
 * are formed in 64 bits. */
struct wgeom {
  int h, w, cin, cout, th, tw;
  int t0, tc; /* this chunk: first tile, tile count */
  const int *live; /* device row limit (cx_cuda_conv2d_live) or NULL; per: images per item */
  int per;
};

/* Tiles of this chunk that belong to live images: tc, or fewer when a device-side limit is set
 * (read once per thread; 64-bit so that a count larger than the batch cannot overflow). */
__device__ inline int live_tiles(const wgeom &g) {
  if (!g.live) return g.tc;
  const long long t = (long long)__ldg(g.live) * g.per * g.th * g.tw - g.t0;
  return t <= 0 ? 0 : (t < g.tc ? (int)t : g.tc);
}

/* 1-D B^T of F(4,3) / F(2,3) (winograd.c's BT4 / BT2). */
__device__ inline void bt_1d(const float (&x)[6], float (&r)[6]) {
  r[0] = 4.0f * x[0] - 5.0f * x[2] + x[4];
  r[1] = -4.0f * x[1] - 4.0f * x[2] + x[3] + x[4];
  r[2] = 4.0f * x[1] - 4.0f * x[2] - x[3] + x[4];
  r[3] = -2.0f * x[1] - x[2] + 2.0f * x[3] + x[4];
  r[4] = 2.0f * x[1] - x[2] - 2.0f * x[3] + x[4];
  r[5] = 4.0f * x[1] - 5.0f * x[3] + x[5];
}
__device__ inline void bt_1d(const float (&x)[4], float (&r)[4]) {
  r[0] = x[0] - x[2];
  r[1] = x[1] + x[2];
  r[2] = x[2] - x[1];
  r[3] = x[1] - x[3];
}

/* 1-D A^T of F(4,3) / F(2,3) (winograd.c's at4_pass / output_tf2). */
__device__ inline void at_1d(const float (&m)[6], float (&r)[4]) {
  r[0] = m[0] + m[1] + m[2] + m[3] + m[4];
  r[1] = m[1] - m[2] + 2.0f * m[3] - 2.0f * m[4];
  r[2] = m[1] + m[2] + 4.0f * m[3] + 4.0f * m[4];
  r[3] = m[1] - m[2] + 8.0f * m[3] - 8.0f * m[4] + m[5];
}
__device__ inline void at_1d(const float (&m)[4], float (&r)[2]) {
  r[0] = m[0] + m[1] + m[2];
  r[1] = m[1] - m[2] - m[3];
}

/* Tile t -> image b and the tile's row/column. */
__device__ inline void tile_pos(const wgeom &g, int t, int &b, int &ty, int &tx) {
  tx = t % g.tw;
  const int q = t / g.tw;
  ty = q % g.th;
  b = q / g.th;
}

/* V[e][tl][c] for the chunk's tiles; plane stride tc * cin (the GEMMs' A slices). */
template <int T>
__global__ void __launch_bounds__(TF_THREADS) wino_input_kernel(const float *__restrict__ x, float *__restrict__ V,
                                                                wgeom g) {
  constexpr int A = T + 2;
  const int total = g.tc * g.cin, end = live_tiles(g) * g.cin;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < end; i += gridDim.x * blockDim.x) {
    const int c = i % g.cin, tl = i / g.cin;
    int b, ty, tx;
    tile_pos(g, g.t0 + tl, b, ty, tx);
    const int y0 = T * ty - 1, x0 = T * tx - 1;
    const float *xb = x + (long long)b * g.h * g.w * g.cin + c;
    float tmp[A][A]; /* (B^T d)[k][j] */
#pragma unroll
    for (int j = 0; j < A; j++) {
      const int ix = x0 + j;
      const bool okx = (unsigned)ix < (unsigned)g.w;
      float col[A], r[A];
#pragma unroll
      for (int k = 0; k < A; k++) {
        const int iy = y0 + k;
        col[k] = (okx && (unsigned)iy < (unsigned)g.h) ? __ldg(xb + ((long long)iy * g.w + ix) * g.cin) : 0.0f;
      }
      bt_1d(col, r);
#pragma unroll
      for (int k = 0; k < A; k++) tmp[k][j] = r[k];
    }
    float *v = V + i; /* tl * cin + c */
#pragma unroll
    for (int k = 0; k < A; k++) {
      float r[A];
      bt_1d(tmp[k], r);
#pragma unroll
      for (int j = 0; j < A; j++) v[(long long)(k * A + j) * total] = r[j];
    }
  }
}

/* y (inside the image) from M[e][tl][o]; plane stride tc * cout. */
template <int T>
__global__ void __launch_bounds__(TF_THREADS)
    wino_output_kernel(const float *__restrict__ M, const float *__restrict__ bias, const float *__restrict__ res,
                       float *__restrict__ y, wgeom g, int relu) {
  constexpr int A = T + 2;
  const int total = g.tc * g.cout, end = live_tiles(g) * g.cout;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < end; i += gridDim.x * blockDim.x) {
    const int o = i % g.cout, tl = i / g.cout;
    int b, ty, tx;
    tile_pos(g, g.t0 + tl, b, ty, tx);
    const float *m = M + i; /* tl * cout + o */
    float tmp[T][A]; /* (A^T M)[k][j] */
#pragma unroll
    for (int j = 0; j < A; j++) {
      float col[A], r[T];
#pragma unroll
      for (int k = 0; k < A; k++) col[k] = __ldg(m + (long long)(k * A + j) * total);
      at_1d(col, r);
#pragma unroll
      for (int k = 0; k < T; k++) tmp[k][j] = r[k];
    }
    const float bo = bias ? __ldg(bias + o) : 0.0f;
#pragma unroll
    for (int k = 0; k < T; k++) {
      float r[T];
      at_1d(tmp[k], r);
      const int oy = T * ty + k;
#pragma unroll
      for (int j = 0; j < T; j++) {
        const int ox = T * tx + j;
        if (oy < g.h && ox < g.w) {
          const long long p = (((long long)b * g.h + oy) * g.w + ox) * g.cout + o;
          float v = r[j] + bo;
          if (res) v = v + __ldg(res + p);
          y[p] = (relu && v < 0.0f) ? 0.0f : v;
        }
      }
    }
  }
}

/* ---- switch ------------------------------------------------------------------------------ */
int g_wino_on = -1; /* -1: CTXDIFF_CUDA_WINOGRAD not read yet */

} /* namespace */

void cx_cuda_set_winograd(int on) { g_wino_on = on != 0; }

int cx_cuda_winograd_on(void) {
  if (g_wino_on < 0) {
    const char *e = getenv("CTXDIFF_CUDA_WINOGRAD");
    g_wino_on = !(e && !strcmp(e, "0"));
  }
  return g_wino_on;
}

float *cx_cuda_winograd_upload(int tile, const float *kernel_host, int cin, int cout) {
  if ((tile != 2 && tile != 4) || cin <= 0 || cout <= 0 || !kernel_host) {
    CX_CUDA_FAIL("winograd_upload: bad arguments (tile %d, cin %d, cout %d)", tile, cin, cout);
    return NULL;
  }
  const size_t n = cx_winograd_packed_floats(tile, cin, cout);
  float *h = (float *)malloc(n * sizeof(float));
  if (!h) {
    CX_CUDA_FAIL("winograd_upload: out of host memory (%zu bytes) packing a 3x3 %d->%d kernel", n * sizeof(float),
                 cin, cout);
    return NULL;
  }
  cx_winograd_pack(tile, kernel_host, cin, cout, h);
  float *d = (float *)cx_cuda_malloc(n * sizeof(float));
  if (d && cx_cuda_upload(d, h, n * sizeof(float))) {
    cx_cuda_free(d);
    d = NULL;
  }
  free(h);
  return d;
}

int cx_cuda_conv3x3_winograd(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y,
                             const float *residual, int relu, const int *live, int per) {
  const int T = d->winograd_tile, planes = (T + 2) * (T + 2);
  if (T != 2 && T != 4) return CX_CUDA_FAIL("conv2d: Winograd tile %d (2 or 4 supported)", T);
  wgeom g;
  g.h = h;
  g.w = w;
  g.cin = d->cin;
  g.cout = d->cout;
  g.th = (h + T - 1) / T;
  g.tw = (w + T - 1) / T;
  g.live = live;
  g.per = per;
  if (n <= 0 || h <= 0 || w <= 0 || g.cout <= 0) return 0;
  const long long tiles = (long long)n * g.th * g.tw;
  if (tiles > INT_MAX) return CX_CUDA_FAIL("conv2d: %lld Winograd tiles (batch %d, %dx%d) exceed 2^31", tiles, n, h, w);
  const long long per_tile = (long long)planes * (g.cin + g.cout);
  long long chunk = (long long)(WS_CAP_FLOATS / (size_t)per_tile); /* chunk * max(cin, cout) < 2^31 */
  if (chunk > tiles) chunk = tiles;
  /* the backend's scratch arena: V and M live only for this call (stream order) */
  float *V = (float *)cx_cuda_scratch((size_t)(chunk * per_tile) * sizeof(float));
  if (!V) return -1;
  float *M = V + (size_t)planes * chunk * g.cin; /* planes % 4 == 0: M stays 16-byte aligned */
  const cudaStream_t st = cx_cuda_stream();
  for (long long t0 = 0; t0 < tiles; t0 += chunk) {
    g.t0 = (int)t0;
    g.tc = (int)(tiles - t0 < chunk ? tiles - t0 : chunk);
    const unsigned bi = cx_blocks((size_t)g.tc * g.cin, TF_THREADS);
    const unsigned bo = cx_blocks((size_t)g.tc * g.cout, TF_THREADS);
    if (T == 4) wino_input_kernel<4><<<bi, TF_THREADS, 0, st>>>(x, V, g);
    else wino_input_kernel<2><<<bi, TF_THREADS, 0, st>>>(x, V, g);
    CX_CUDA_LAUNCH_CHECK();
    if (cx_cuda_gemm_f32_batched(V, (long long)g.tc * g.cin, d->winograd, (long long)g.cin * g.cout, M,
                                 (long long)g.tc * g.cout, planes, g.tc, g.cin, g.cout, live,
                                 (long long)per * g.th * g.tw, t0))
      return -1;
    if (T == 4) wino_output_kernel<4><<<bo, TF_THREADS, 0, st>>>(M, d->bias, residual, y, g, relu);
    else wino_output_kernel<2><<<bo, TF_THREADS, 0, st>>>(M, d->bias, residual, y, g, relu);
    CX_CUDA_LAUNCH_CHECK();
  }
  return 0;
}
