/* Winograd F(2x2, 3x3) convolution for 3x3, stride 1, padding 1 on every side (the TF SAME
 * padding of every 3x3 convolution in Mask R-CNN: backbone branch2b, FPN outputs, RPN,
 * mask head), NHWC float32, Keras kernel (3, 3, cin, cout).
 *
 * Output tiles of 2x2 read 4x4 input tiles (zero outside the image). With the usual
 * matrices  B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 * A^T = [1 1 1 0; 0 1 -1 -1]:  V = B^T d B (per channel), U = G g G^T (per channel pair,
 * packed once at load), M[e] = V[e] * U[e] for the 16 elements e (GEMMs over channels),
 * Y = A^T M A, then + bias, + residual, ReLU. Tiles are processed in chunks so the
 * transformed data stays in cache; the 16 GEMMs of a chunk run in parallel, each on one
 * thread. Validated by tests/test_kernels against torch.nn.functional.conv2d. */
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"

#define CHUNK_FLOATS (4u << 20) /* V + M of one chunk: 16 MB */
#define WINO_MAX_C 4096         /* channel limit of the branch-free loops (Mask R-CNN: <= 512) */

static const float zeros[WINO_MAX_C]; /* the image's zero padding, and "no bias/residual" */

size_t cx_winograd_packed_floats(int cin, int cout) { return (size_t)16 * cin * cout; }

void cx_winograd_pack(const float *k, int cin, int cout, float *U) {
  const size_t plane = (size_t)cin * cout;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < cin; c++)
    for (int o = 0; o < cout; o++) {
      float g[3][3], t[4][3], u[4][4];
      for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) g[i][j] = k[(((size_t)i * 3 + j) * cin + c) * cout + o];
      for (int j = 0; j < 3; j++) { /* G g */
        t[0][j] = g[0][j];
        t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
        t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
        t[3][j] = g[2][j];
      }
      for (int i = 0; i < 4; i++) { /* (G g) G^T */
        u[i][0] = t[i][0];
        u[i][1] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
        u[i][2] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
        u[i][3] = t[i][2];
      }
      for (int e = 0; e < 16; e++) U[e * plane + (size_t)c * cout + o] = u[e / 4][e % 4];
    }
}

static int enabled = 1;

int cx_conv_select(const char *name) {
  if (!strcmp(name, "winograd")) { enabled = 1; return 0; }
  if (!strcmp(name, "im2col")) { enabled = 0; return 0; }
  return -1;
}

const char *cx_conv_name(void) { return enabled ? "winograd" : "im2col"; }

int cx_winograd_applies(const cx_conv2d_desc *d) {
  return enabled && d->winograd && d->cin <= WINO_MAX_C && d->cout <= WINO_MAX_C && d->kh == 3 && d->kw == 3 && d->stride == 1 && d->pad_t == 1 && d->pad_l == 1 &&
         d->pad_b == 1 && d->pad_r == 1;
}

static size_t chunk_tiles(const cx_conv2d_desc *d, size_t tiles) {
  size_t t = CHUNK_FLOATS / (16u * (size_t)(d->cin + d->cout));
  if (t < 16) t = 16;
  return t < tiles ? t : tiles;
}

size_t cx_winograd_workspace(const cx_conv2d_desc *d, int n, int h, int w) {
  size_t tiles = (size_t)n * ((h + 1) / 2) * ((w + 1) / 2);
  return chunk_tiles(d, tiles) * 16u * (size_t)(d->cin + d->cout);
}

void cx_conv3x3_winograd(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y,
                         const float *residual, int relu, float *ws) {
  const int cin = d->cin, cout = d->cout;
  const int th = (h + 1) / 2, tw = (w + 1) / 2;
  const size_t tiles = (size_t)n * th * tw;
  if (!tiles) return;
  const size_t T = chunk_tiles(d, tiles);
  float *V = ws, *M = ws + 16 * T * (size_t)cin;
  const size_t uplane = (size_t)cin * cout;
  for (size_t t0 = 0; t0 < tiles; t0 += T) {
    const size_t tc = tiles - t0 < T ? tiles - t0 : T;
    /* Input transform: V[e][t][c]. Positions outside the image read a zero row, so the
     * channel loop is branch-free and vectorises. */
#pragma omp parallel for schedule(static)
    for (size_t t = 0; t < tc; t++) {
      size_t idx = t0 + t;
      int tx = (int)(idx % tw), ty = (int)((idx / tw) % th), b = (int)(idx / ((size_t)tw * th));
      int y0 = 2 * ty - 1, x0 = 2 * tx - 1;
      const float *src[16];
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
          int iy = y0 + i, ix = x0 + j;
          src[i * 4 + j] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x + (((size_t)b * h + iy) * w + ix) * cin : zeros;
        }
      const size_t es = tc * (size_t)cin;
      float *v = V + t * cin;
#pragma omp simd
      for (int c = 0; c < cin; c++) {
        float r[4][4];
        for (int j = 0; j < 4; j++) { /* B^T d */
          r[0][j] = src[j][c] - src[8 + j][c];
          r[1][j] = src[4 + j][c] + src[8 + j][c];
          r[2][j] = src[8 + j][c] - src[4 + j][c];
          r[3][j] = src[4 + j][c] - src[12 + j][c];
        }
        for (int i = 0; i < 4; i++) { /* (B^T d) B */
          v[(i * 4 + 0) * es + c] = r[i][0] - r[i][2];
          v[(i * 4 + 1) * es + c] = r[i][1] + r[i][2];
          v[(i * 4 + 2) * es + c] = r[i][2] - r[i][1];
          v[(i * 4 + 3) * es + c] = r[i][1] - r[i][3];
        }
      }
    }
    /* 16 independent GEMMs, one per thread at a time (BLAS runs single-threaded inside). */
#pragma omp parallel for schedule(dynamic, 1)
    for (int e = 0; e < 16; e++)
      cx_sgemm((int)tc, cout, cin, V + (size_t)e * tc * cin, cin, d->winograd + (size_t)e * uplane, cout, 0.0f,
               M + (size_t)e * tc * cout, cout);
    /* Output transform + epilogue. Pixels past the image edge (odd sizes) go to a
     * scratch row, so the channel loop is branch-free too. */
#pragma omp parallel for schedule(static)
    for (size_t t = 0; t < tc; t++) {
      size_t idx = t0 + t;
      int tx = (int)(idx % tw), ty = (int)((idx / tw) % th), b = (int)(idx / ((size_t)tw * th));
      const size_t es = tc * (size_t)cout;
      const float *m = M + t * cout;
      float dump[WINO_MAX_C];
      float *dst[4];
      const float *res[4];
      for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
          int oy = 2 * ty + i, ox = 2 * tx + j;
          int ok = oy < h && ox < w;
          size_t p = (((size_t)b * h + oy) * w + ox) * cout;
          dst[i * 2 + j] = ok ? y + p : dump;
          res[i * 2 + j] = (ok && residual) ? residual + p : zeros;
        }
      const float *bias = d->bias ? d->bias : zeros;
#pragma omp simd
      for (int o = 0; o < cout; o++) {
        float s0[4], s1[4];
        for (int j = 0; j < 4; j++) { /* A^T m */
          s0[j] = m[(0 * 4 + j) * es + o] + m[(1 * 4 + j) * es + o] + m[(2 * 4 + j) * es + o];
          s1[j] = m[(1 * 4 + j) * es + o] - m[(2 * 4 + j) * es + o] - m[(3 * 4 + j) * es + o];
        }
        float v00 = s0[0] + s0[1] + s0[2] + bias[o] + res[0][o];
        float v01 = s0[1] - s0[2] - s0[3] + bias[o] + res[1][o];
        float v10 = s1[0] + s1[1] + s1[2] + bias[o] + res[2][o];
        float v11 = s1[1] - s1[2] - s1[3] + bias[o] + res[3][o];
        dst[0][o] = (relu && v00 < 0.0f) ? 0.0f : v00;
        dst[1][o] = (relu && v01 < 0.0f) ? 0.0f : v01;
        dst[2][o] = (relu && v10 < 0.0f) ? 0.0f : v10;
        dst[3][o] = (relu && v11 < 0.0f) ? 0.0f : v11;
      }
    }
  }
}
