/* Winograd convolution for 3x3, stride 1, padding 1 on every side (the TF SAME padding of
 * every 3x3 convolution in Mask R-CNN: backbone branch2b, FPN outputs, RPN, mask head),
 * NHWC float32, Keras kernel (3, 3, cin, cout). Two tile sizes:
 *
 *   F(2x2, 3x3): 4x4 input tiles, 16 GEMMs, 2.25x fewer multiplications than im2col;
 *       B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *       A^T = [1 1 1 0; 0 1 -1 -1].
 *   F(4x4, 3x3): 6x6 input tiles, 36 GEMMs, 4x fewer multiplications (interpolation points
 *       0, +-1, +-2; the form cuDNN's Winograd uses), rounding error a few times im2col's.
 *
 * V = B^T d B per channel, U = G g G^T per channel pair (packed once at load, in double,
 * then rounded), M[e] = V[e] * U[e] for every element e (GEMMs over channels),
 * Y = A^T M A, then + bias, + residual, ReLU. Tiles are processed in chunks so the
 * transformed data stays in cache; the GEMMs of a chunk run in parallel, one per thread.
 * Validated by tests/test_kernels against torch.nn.functional.conv2d (both tile sizes), and
 * the whole model by tests/model against the reference. */
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"

#define CHUNK_FLOATS (8u << 20) /* V + M of one chunk: 32 MB */
#define WINO_MAX_C 4096         /* channel limit of the branch-free loops (Mask R-CNN: <= 512) */

static const float zeros[WINO_MAX_C]; /* the image's zero padding, and "no bias/residual" */

/* ---- selection ----------------------------------------------------------------------- */

static int mode = 4; /* 0: im2col, 2: F(2x2,3x3), 4: F(4x4,3x3) */

int cx_conv_select(const char *name) {
  if (!strcmp(name, "winograd4") || !strcmp(name, "winograd")) { mode = 4; return 0; }
  if (!strcmp(name, "winograd2")) { mode = 2; return 0; }
  if (!strcmp(name, "im2col")) { mode = 0; return 0; }
  return -1;
}

const char *cx_conv_name(void) { return mode == 4 ? "winograd4" : mode == 2 ? "winograd2" : "im2col"; }
int cx_winograd_default_tile(void) { return mode; }

int cx_winograd_applies(const cx_conv2d_desc *d) {
  return mode && d->winograd && (d->winograd_tile == 2 || d->winograd_tile == 4) && d->cin <= WINO_MAX_C &&
         d->cout <= WINO_MAX_C && d->kh == 3 && d->kw == 3 && d->stride == 1 && d->pad_t == 1 && d->pad_l == 1 &&
         d->pad_b == 1 && d->pad_r == 1;
}

/* ---- kernel transform ------------------------------------------------------------------ */

size_t cx_winograd_packed_floats(int tile, int cin, int cout) {
  return (size_t)(tile + 2) * (tile + 2) * cin * cout;
}

/* Rows of G for each tile size (3 columns). */
static const double G2[4][3] = {{1, 0, 0}, {.5, .5, .5}, {.5, -.5, .5}, {0, 0, 1}};
static const double G4[6][3] = {{1. / 4, 0, 0},           {-1. / 6, -1. / 6, -1. / 6}, {-1. / 6, 1. / 6, -1. / 6},
                                {1. / 24, 1. / 12, 1. / 6}, {1. / 24, -1. / 12, 1. / 6}, {0, 0, 1}};

void cx_winograd_pack(int tile, const float *k, int cin, int cout, float *U) {
  const int a = tile + 2;
  const double(*G)[3] = tile == 4 ? G4 : G2;
  const size_t plane = (size_t)cin * cout;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < cin; c++)
    for (int o = 0; o < cout; o++) {
      double g[3][3], t[6][3];
      for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) g[i][j] = k[(((size_t)i * 3 + j) * cin + c) * cout + o];
      for (int i = 0; i < a; i++) /* G g */
        for (int j = 0; j < 3; j++) t[i][j] = G[i][0] * g[0][j] + G[i][1] * g[1][j] + G[i][2] * g[2][j];
      for (int i = 0; i < a; i++) /* (G g) G^T */
        for (int j = 0; j < a; j++)
          U[(size_t)(i * a + j) * plane + (size_t)c * cout + o] =
              (float)(t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2]);
    }
}

/* ---- data transforms (channel loops are branch-free and vectorise) ------------------- */

/* 1-D B^T of F(2,3) on 4 values. */
#define BT2(x0, x1, x2, x3, r)  \
  do {                          \
    (r)[0] = (x0) - (x2);       \
    (r)[1] = (x1) + (x2);       \
    (r)[2] = (x2) - (x1);       \
    (r)[3] = (x1) - (x3);       \
  } while (0)

/* 1-D B^T of F(4,3) on 6 values. */
#define BT4(x0, x1, x2, x3, x4, x5, r)                   \
  do {                                                   \
    (r)[0] = 4.0f * (x0) - 5.0f * (x2) + (x4);           \
    (r)[1] = -4.0f * (x1) - 4.0f * (x2) + (x3) + (x4);   \
    (r)[2] = 4.0f * (x1) - 4.0f * (x2) - (x3) + (x4);    \
    (r)[3] = -2.0f * (x1) - (x2) + 2.0f * (x3) + (x4);   \
    (r)[4] = 2.0f * (x1) - (x2) - 2.0f * (x3) + (x4);    \
    (r)[5] = 4.0f * (x1) - 5.0f * (x3) + (x5);           \
  } while (0)

static void input_tf2(const float *const *src, int cin, float *v, size_t es) {
#pragma omp simd
  for (int c = 0; c < cin; c++) {
    float r[4][4], q[4];
    for (int j = 0; j < 4; j++) {
      BT2(src[j][c], src[4 + j][c], src[8 + j][c], src[12 + j][c], q);
      for (int i = 0; i < 4; i++) r[i][j] = q[i];
    }
    for (int i = 0; i < 4; i++) {
      BT2(r[i][0], r[i][1], r[i][2], r[i][3], q);
      for (int j = 0; j < 4; j++) v[(size_t)(i * 4 + j) * es + c] = q[j];
    }
  }
}

/* F(4,3) transforms run as two 1-D passes over a block of channels through a small
 * buffer: each pass is a plain 6-in/6-out loop that the compiler vectorises (the fused
 * 2-D form with 36 live values per lane does not). */
#define TF_BLOCK 128

static void bt4_pass(const float *const x[6], float *const r[6], int n) {
  const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3], *x4 = x[4], *x5 = x[5];
  float *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3], *r4 = r[4], *r5 = r[5];
#pragma omp simd
  for (int c = 0; c < n; c++) {
    float q[6];
    BT4(x0[c], x1[c], x2[c], x3[c], x4[c], x5[c], q);
    r0[c] = q[0]; r1[c] = q[1]; r2[c] = q[2]; r3[c] = q[3]; r4[c] = q[4]; r5[c] = q[5];
  }
}

static void input_tf4(const float *const *src, int cin, float *v, size_t es) {
  float tmp[36][TF_BLOCK];
  for (int c0 = 0; c0 < cin; c0 += TF_BLOCK) {
    const int n = cin - c0 < TF_BLOCK ? cin - c0 : TF_BLOCK;
    for (int j = 0; j < 6; j++) { /* columns: tmp[i*6 + j] = (B^T d)[i][j] */
      const float *x[6];
      float *r[6];
      for (int i = 0; i < 6; i++) { x[i] = src[i * 6 + j] + c0; r[i] = tmp[i * 6 + j]; }
      bt4_pass(x, r, n);
    }
    for (int i = 0; i < 6; i++) { /* rows: V[i*6 + j] = ((B^T d) B)[i][j] */
      const float *x[6];
      float *r[6];
      for (int j = 0; j < 6; j++) { x[j] = tmp[i * 6 + j]; r[j] = v + (size_t)(i * 6 + j) * es + c0; }
      bt4_pass(x, r, n);
    }
  }
}

/* Output transform + epilogue for one tile: dst[i*m + j] / res[i*m + j] per output pixel. */
static void output_tf2(const float *m, size_t es, int cout, const float *bias, float *const *dst,
                       const float *const *res, int relu) {
#pragma omp simd
  for (int o = 0; o < cout; o++) {
    float s[2][4];
    for (int j = 0; j < 4; j++) { /* A^T m */
      float m0 = m[(size_t)(0 + j) * es + o], m1 = m[(size_t)(4 + j) * es + o], m2 = m[(size_t)(8 + j) * es + o],
            m3 = m[(size_t)(12 + j) * es + o];
      s[0][j] = m0 + m1 + m2;
      s[1][j] = m1 - m2 - m3;
    }
    for (int i = 0; i < 2; i++) {
      float y0 = s[i][0] + s[i][1] + s[i][2] + bias[o] + res[i * 2][o];
      float y1 = s[i][1] - s[i][2] - s[i][3] + bias[o] + res[i * 2 + 1][o];
      dst[i * 2][o] = (relu && y0 < 0.0f) ? 0.0f : y0;
      dst[i * 2 + 1][o] = (relu && y1 < 0.0f) ? 0.0f : y1;
    }
  }
}

static void at4_pass(const float *const m[6], float *const r[4], int n) {
  const float *m0 = m[0], *m1 = m[1], *m2 = m[2], *m3 = m[3], *m4 = m[4], *m5 = m[5];
  float *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
#pragma omp simd
  for (int c = 0; c < n; c++) {
    r0[c] = m0[c] + m1[c] + m2[c] + m3[c] + m4[c];
    r1[c] = m1[c] - m2[c] + 2.0f * m3[c] - 2.0f * m4[c];
    r2[c] = m1[c] + m2[c] + 4.0f * m3[c] + 4.0f * m4[c];
    r3[c] = m1[c] - m2[c] + 8.0f * m3[c] - 8.0f * m4[c] + m5[c];
  }
}

static void output_tf4(const float *m, size_t es, int cout, const float *bias, float *const *dst,
                       const float *const *res, int relu) {
  float tmp[24][TF_BLOCK], row[4][TF_BLOCK];
  for (int o0 = 0; o0 < cout; o0 += TF_BLOCK) {
    const int n = cout - o0 < TF_BLOCK ? cout - o0 : TF_BLOCK;
    for (int j = 0; j < 6; j++) { /* columns: tmp[k*6 + j] = (A^T M)[k][j] */
      const float *x[6];
      float *r[4];
      for (int i = 0; i < 6; i++) x[i] = m + (size_t)(i * 6 + j) * es + o0;
      for (int k = 0; k < 4; k++) r[k] = tmp[k * 6 + j];
      at4_pass(x, r, n);
    }
    for (int k = 0; k < 4; k++) { /* rows, then bias, residual, ReLU */
      const float *x[6];
      float *r[4] = {row[0], row[1], row[2], row[3]};
      for (int j = 0; j < 6; j++) x[j] = tmp[k * 6 + j];
      at4_pass(x, r, n);
      for (int j = 0; j < 4; j++) {
        float *d = dst[k * 4 + j] + o0;
        const float *rs = res[k * 4 + j] + o0, *b = bias + o0, *y = row[j];
#pragma omp simd
        for (int c = 0; c < n; c++) {
          float v = y[c] + b[c] + rs[c];
          d[c] = (relu && v < 0.0f) ? 0.0f : v;
        }
      }
    }
  }
}

/* ---- driver ------------------------------------------------------------------------------ */

static size_t chunk_tiles(const cx_conv2d_desc *d, size_t tiles) {
  const size_t planes = (size_t)(d->winograd_tile + 2) * (d->winograd_tile + 2);
  size_t t = CHUNK_FLOATS / (planes * (size_t)(d->cin + d->cout));
  if (t < 16) t = 16;
  return t < tiles ? t : tiles;
}

static size_t tile_count(const cx_conv2d_desc *d, int n, int h, int w) {
  const int m = d->winograd_tile;
  return (size_t)n * ((h + m - 1) / m) * ((w + m - 1) / m);
}

size_t cx_winograd_workspace(const cx_conv2d_desc *d, int n, int h, int w) {
  const size_t planes = (size_t)(d->winograd_tile + 2) * (d->winograd_tile + 2);
  return chunk_tiles(d, tile_count(d, n, h, w)) * planes * (size_t)(d->cin + d->cout);
}

void cx_conv3x3_winograd(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y,
                         const float *residual, int relu, float *ws) {
  const int cin = d->cin, cout = d->cout, mt = d->winograd_tile, a = mt + 2, planes = a * a;
  const int th = (h + mt - 1) / mt, tw = (w + mt - 1) / mt;
  const size_t tiles = tile_count(d, n, h, w);
  if (!tiles) return;
  const size_t T = chunk_tiles(d, tiles);
  float *V = ws, *M = ws + (size_t)planes * T * cin;
  const size_t uplane = (size_t)cin * cout;
  const float *bias = d->bias ? d->bias : zeros;
  for (size_t t0 = 0; t0 < tiles; t0 += T) {
    const size_t tc = tiles - t0 < T ? tiles - t0 : T;
    /* Input transform: V[e][t][c]; positions outside the image read a zero row. */
#pragma omp parallel for schedule(static)
    for (size_t t = 0; t < tc; t++) {
      size_t idx = t0 + t;
      int tx = (int)(idx % tw), ty = (int)((idx / tw) % th), b = (int)(idx / ((size_t)tw * th));
      int y0 = mt * ty - 1, x0 = mt * tx - 1;
      const float *src[36];
      for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++) {
          int iy = y0 + i, ix = x0 + j;
          src[i * a + j] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x + (((size_t)b * h + iy) * w + ix) * cin : zeros;
        }
      if (mt == 4) input_tf4(src, cin, V + t * cin, tc * (size_t)cin);
      else input_tf2(src, cin, V + t * cin, tc * (size_t)cin);
    }
    /* Independent GEMMs, one per thread at a time (BLAS runs single-threaded inside). */
#pragma omp parallel for schedule(dynamic, 1)
    for (int e = 0; e < planes; e++)
      cx_sgemm((int)tc, cout, cin, V + (size_t)e * tc * cin, cin, d->winograd + (size_t)e * uplane, cout, 0.0f,
               M + (size_t)e * tc * cout, cout);
    /* Output transform + epilogue; pixels past the image edge go to a scratch row. */
#pragma omp parallel for schedule(static)
    for (size_t t = 0; t < tc; t++) {
      size_t idx = t0 + t;
      int tx = (int)(idx % tw), ty = (int)((idx / tw) % th), b = (int)(idx / ((size_t)tw * th));
      float dump[WINO_MAX_C];
      float *dst[16];
      const float *res[16];
      for (int i = 0; i < mt; i++)
        for (int j = 0; j < mt; j++) {
          int oy = mt * ty + i, ox = mt * tx + j;
          int ok = oy < h && ox < w;
          size_t p = (((size_t)b * h + oy) * w + ox) * cout;
          dst[i * mt + j] = ok ? y + p : dump;
          res[i * mt + j] = (ok && residual) ? residual + p : zeros;
        }
      if (mt == 4) output_tf4(M + t * cout, tc * (size_t)cout, cout, bias, dst, res, relu);
      else output_tf2(M + t * cout, tc * (size_t)cout, cout, bias, dst, res, relu);
    }
  }
}
