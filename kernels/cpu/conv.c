/* 2-D convolution (TensorFlow cross-correlation, NHWC, Keras kernel layout) and dense.
 *
 * The Keras kernel (kh, kw, cin, cout) is already the row-major GEMM matrix
 * B[kh*kw*cin][cout], and an im2col row of NHWC input in (ky, kx, c) order is the
 * matching A row, so every convolution is Y[M][cout] = A[M][K] * B with
 * M = n*ho*wo, K = kh*kw*cin. 1x1 stride-1 convolutions and "whole-input" VALID
 * convolutions (the 7x7 classifier conv on 7x7 ROIs) use the input directly as A;
 * the rest build A in row chunks so the workspace stays bounded. GEMM: cx_sgemm (gemm.c).
 * The epilogue is fused by seeding Y with bias (+ residual) and accumulating (beta = 1).
 * Validated by tests/test_kernels against torch.nn.functional.conv2d with explicit TF pads
 * (cx_mask_class_sigmoid: against torch.sigmoid(x @ kernel)[..., class]). */
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"

#define DIRECT_CHUNK_FLOATS (1u << 20) /* 4 MB of output rows per GEMM call */
#define IM2COL_CHUNK_FLOATS (2u << 20) /* 8 MB of patches per GEMM call: stays in L3 */

void cx_same_pads(int in, int k, int s, int *before, int *after) {
  int out = (in + s - 1) / s;
  int pad = (out - 1) * s + k - in;
  if (pad < 0) pad = 0;
  *before = pad / 2;
  *after = pad - pad / 2;
}

int cx_conv2d_out(int in, int k, int s, int pad_before, int pad_after) {
  return (in + pad_before + pad_after - k) / s + 1;
}

static int direct_gemm(const cx_conv2d_desc *d, int h, int w) {
  int no_pad = !d->pad_t && !d->pad_l && !d->pad_b && !d->pad_r;
  if (!no_pad) return 0;
  if (d->kh == 1 && d->kw == 1 && d->stride == 1) return 1;
  return d->kh == h && d->kw == w; /* output is 1x1 and the patch is the whole input */
}

static size_t chunk_rows(const cx_conv2d_desc *d, size_t m) {
  size_t k = (size_t)d->kh * d->kw * d->cin;
  size_t rows = IM2COL_CHUNK_FLOATS / k;
  if (rows < 64) rows = 64;
  return rows < m ? rows : m;
}

double cx_conv2d_flops(const cx_conv2d_desc *d, double n, int h, int w) {
  const int ho = cx_conv2d_out(h, d->kh, d->stride, d->pad_t, d->pad_b);
  const int wo = cx_conv2d_out(w, d->kw, d->stride, d->pad_l, d->pad_r);
  return 2.0 * n * ho * wo * (double)d->kh * d->kw * d->cin * d->cout;
}

const char *cx_conv2d_path(const cx_conv2d_desc *d, int h, int w) {
  if (cx_winograd_applies(d)) return d->winograd_tile == 4 ? "winograd F(4x4,3x3)" : "winograd F(2x2,3x3)";
  if (direct_gemm(d, h, w)) return d->kh == 1 && d->kw == 1 ? "GEMM (1x1)" : "GEMM (whole input)";
  return "im2col + GEMM";
}

size_t cx_conv2d_workspace(const cx_conv2d_desc *d, int n, int h, int w) {
  if (cx_winograd_applies(d)) return cx_winograd_workspace(d, n, h, w);
  if (direct_gemm(d, h, w)) return 0;
  int ho = cx_conv2d_out(h, d->kh, d->stride, d->pad_t, d->pad_b);
  int wo = cx_conv2d_out(w, d->kw, d->stride, d->pad_l, d->pad_r);
  size_t m = (size_t)n * ho * wo;
  return chunk_rows(d, m) * (size_t)d->kh * d->kw * d->cin;
}

/* Seeds y rows [m0, m0+mc) with bias and residual so the GEMM can accumulate into them. */
static void seed_output(const cx_conv2d_desc *d, float *y, const float *residual, size_t m0, size_t mc) {
  const int co = d->cout;
#pragma omp parallel for schedule(static)
  for (size_t r = m0; r < m0 + mc; r++) {
    float *yr = y + r * co;
    if (residual) {
      const float *rr = residual + r * co;
      if (d->bias) for (int o = 0; o < co; o++) yr[o] = d->bias[o] + rr[o];
      else memcpy(yr, rr, (size_t)co * sizeof(float));
    } else if (d->bias) {
      memcpy(yr, d->bias, (size_t)co * sizeof(float));
    } else {
      memset(yr, 0, (size_t)co * sizeof(float));
    }
  }
}

static void relu_rows(float *y, size_t count) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < count; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

void cx_conv2d(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y, const float *residual,
               int relu, float *ws) {
  const int ho = cx_conv2d_out(h, d->kh, d->stride, d->pad_t, d->pad_b);
  const int wo = cx_conv2d_out(w, d->kw, d->stride, d->pad_l, d->pad_r);
  const size_t m = (size_t)n * ho * wo;
  const int k = d->kh * d->kw * d->cin;
  if (m == 0) return;
  if (cx_winograd_applies(d)) {
    cx_conv3x3_winograd(d, x, n, h, w, y, residual, relu, ws);
    return;
  }
  if (direct_gemm(d, h, w)) {
    /* Row chunks keep seed -> GEMM -> ReLU on the same few MB of y while it is in cache. */
    size_t rows = DIRECT_CHUNK_FLOATS / (size_t)d->cout;
    if (rows < 256) rows = 256;
    for (size_t m0 = 0; m0 < m; m0 += rows) {
      size_t mc = (m - m0 < rows) ? m - m0 : rows;
      seed_output(d, y, residual, m0, mc);
      cx_sgemm((int)mc, d->cout, k, x + m0 * k, k, d->kernel, d->cout, 1.0f, y + m0 * d->cout, d->cout);
      if (relu) relu_rows(y + m0 * d->cout, mc * d->cout);
    }
    return;
  }
  const size_t rows = chunk_rows(d, m);
  const int cin = d->cin, kh = d->kh, kw = d->kw, s = d->stride;
  for (size_t m0 = 0; m0 < m; m0 += rows) {
    size_t mc = (m - m0 < rows) ? m - m0 : rows;
    /* im2col for output rows [m0, m0 + mc): A[r][(ky*kw + kx)*cin + c]. */
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < mc; r++) {
      size_t idx = m0 + r;
      int ox = (int)(idx % wo);
      int oy = (int)((idx / wo) % ho);
      int b = (int)(idx / ((size_t)wo * ho));
      float *a = ws + r * (size_t)k;
      for (int ky = 0; ky < kh; ky++) {
        int iy = oy * s + ky - d->pad_t;
        if (iy < 0 || iy >= h) {
          memset(a + (size_t)ky * kw * cin, 0, (size_t)kw * cin * sizeof(float));
          continue;
        }
        const float *row = x + ((size_t)b * h + iy) * (size_t)w * cin;
        int ix0 = ox * s - d->pad_l;
        if (ix0 >= 0 && ix0 + kw <= w) { /* whole kernel row inside: one contiguous copy */
          memcpy(a + (size_t)ky * kw * cin, row + (size_t)ix0 * cin, (size_t)kw * cin * sizeof(float));
          continue;
        }
        for (int kx = 0; kx < kw; kx++) {
          int ix = ix0 + kx;
          float *dst = a + ((size_t)ky * kw + kx) * cin;
          if (ix < 0 || ix >= w) memset(dst, 0, (size_t)cin * sizeof(float));
          else memcpy(dst, row + (size_t)ix * cin, (size_t)cin * sizeof(float));
        }
      }
    }
    seed_output(d, y, residual, m0, mc);
    cx_sgemm((int)mc, d->cout, k, ws, k, d->kernel, d->cout, 1.0f, y + m0 * d->cout, d->cout);
    if (relu) relu_rows(y + m0 * d->cout, mc * d->cout);
  }
}

void cx_dense(const float *x, int rows, int in, const float *k, const float *bias, int out, int relu, float *y) {
  cx_conv2d_desc d = {1, 1, in, out, 1, 0, 0, 0, 0, k, bias, NULL, 0, NULL, 0};
  cx_conv2d(&d, x, rows, 1, 1, y, NULL, relu, NULL);
}

void cx_mask_class_sigmoid(const float *x, int rows, int pix, int cin, const float *kernel, const float *bias,
                           int nc, const int *cls, float *y) {
  enum { KB = 256, L = 16 }; /* column block on the stack; 16 partial sums = one AVX-512 register */
#pragma omp parallel for schedule(dynamic, 1)
  for (int r = 0; r < rows; r++) {
    const int c = cls[r] < 0 ? 0 : (cls[r] >= nc ? nc - 1 : cls[r]);
    const float *xr = x + (size_t)r * pix * cin;
    float *yr = y + (size_t)r * pix;
    for (int p = 0; p < pix; p++) yr[p] = bias ? bias[c] : 0.0f;
    for (int k0 = 0; k0 < cin; k0 += KB) {
      const int kc = cin - k0 < KB ? cin - k0 : KB;
      float col[KB];
      for (int k = 0; k < kc; k++) col[k] = kernel[(size_t)(k0 + k) * nc + c];
      for (int p = 0; p < pix; p++) {
        const float *xp = xr + (size_t)p * cin + k0;
        float s[L] = {0};
        int k = 0;
        for (; k + L <= kc; k += L)
          for (int j = 0; j < L; j++) s[j] += xp[k + j] * col[k + j];
        float t = 0.0f;
        for (int j = 0; j < L; j++) t += s[j];
        for (; k < kc; k++) t += xp[k] * col[k];
        yr[p] += t;
      }
    }
    for (int p = 0; p < pix; p++) yr[p] = 1.0f / (1.0f + expf(-yr[p]));
  }
}
