/* ctxdiff validate — runs every op of a backend on fresh random inputs at realistic Mask
 * R-CNN shapes and compares with the CPU backend (cx_backend_cpu(), itself validated against
 * PyTorch/NumPy/TF semantics by tests/kernels): ggml's test-backend-ops pattern.
 *
 *   ctxdiff validate [--device cuda|cuda:N|cpu] [--precision fp32|fp16|bf16] [--op NAME] [--seed N]
 *
 * Every output buffer is poisoned (all bytes 0xFF: NaN for floats/doubles, -1 for indices,
 * 255 for u8 outputs whose valid range stays below 255) before the op runs.
 * Metrics: "rel_rms" = sqrt(sum (got - ref)^2 / sum ref^2) with a tolerance per precision for
 * the GEMM ops (conv2d, dense, deconv2x2) and a rounding-level tolerance for ops that use
 * expf; "max_abs" = max |got - ref| with tolerance 0 (bit-exact ops); "mismatch" = number
 * of differing indices/levels/values, tolerance 0. Any NaN left in an output fails.
 * Then two layers as composed for the GPU graph (cuda only), each against model.c's own code
 * for the layer (cx_proposal_layer, cx_detection_layer), exact: "proposals" (top-k, decode,
 * clip, NMS, ROI gather of a batch) and "detection" (argmax, refine, clip to windows, per-class
 * NMS, top-k).
 * --device cpu runs the CPU backend against itself (a self-check of this harness; every
 * error must be 0). Exit status: 0 all pass, 1 any failure, 2 usage, 77 no CUDA device.
 * Last, the whole model (--op model selects it alone): synthetic weights (resnet101 and
 * resnet50) on the synthetic 1280x1280 image (seed 0), DETECTION_MIN_CONFIDENCE = 0, CPU graph
 * vs GPU graph, compared at detection level as /work/shared/reference/compare.py does (same
 * class, best box IoU then closest score, IoU >= 0.95, |score diff| <= 0.01, masks differing
 * in <= max(5% of union, 4) pixels). The reproduced fraction must be >= 0.99 for fp32; for
 * fp16/bf16 it is reported (REPORT), not judged. Not run with --device cpu. */
#ifdef CTXDIFF_HAVE_CUDA /* the command exists in CUDA builds only (pipeline/cli/main.c) */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "commands.h"
#include "cuda_backend.h"
#include "model_internal.h"
#include "mrcnn.h"
#include "synth.h"

#define VAL_SKIP 77
#define MAX_ALLOCS 32

/* ---- the device under test: memory functions + op table ----------------------------- */
typedef struct vdev {
  const char *name;
  int is_cuda;
  const cx_backend *be;
  void *allocs[MAX_ALLOCS];
  int nallocs;
  int alloc_failed;
} vdev;

static void *d_alloc(vdev *v, size_t bytes) {
  void *p = v->is_cuda ? cx_cuda_malloc(bytes) : malloc(bytes ? bytes : 1);
  if (!p || v->nallocs == MAX_ALLOCS) {
    v->alloc_failed = 1;
    if (p) v->is_cuda ? cx_cuda_free(p) : free(p);
    return NULL;
  }
  v->allocs[v->nallocs++] = p;
  return p;
}

static void d_free_all(vdev *v) {
  for (int i = 0; i < v->nallocs; i++) v->is_cuda ? cx_cuda_free(v->allocs[i]) : free(v->allocs[i]);
  v->nallocs = 0;
  v->alloc_failed = 0;
}

/* device copy of a host input */
static void *d_in(vdev *v, const void *host, size_t bytes) {
  void *p = d_alloc(v, bytes);
  if (!p) return NULL;
  if (v->is_cuda) {
    if (cx_cuda_upload(p, host, bytes)) v->alloc_failed = 1;
  } else {
    memcpy(p, host, bytes);
  }
  return p;
}

/* poisoned device output */
static void *d_out(vdev *v, size_t bytes) {
  void *p = d_alloc(v, bytes);
  if (!p) return NULL;
  if (v->is_cuda) {
    if (cx_cuda_memset(p, 0xFF, bytes)) v->alloc_failed = 1;
  } else {
    memset(p, 0xFF, bytes);
  }
  return p;
}

/* waits for the device and copies a result back; 0 or -1 */
static int d_fetch(vdev *v, void *host, const void *dev, size_t bytes) {
  if (!v->is_cuda) {
    memcpy(host, dev, bytes);
    return 0;
  }
  if (cx_cuda_sync()) return -1;
  return cx_cuda_download(host, dev, bytes);
}

static const char *d_error(vdev *v) {
  if (v->is_cuda && cx_cuda_last_error()) return cx_cuda_last_error();
  if (v->alloc_failed) return "device allocation or copy failed";
  return NULL;
}

/* ---- results ---------------------------------------------------------------------------- */
static int g_pass, g_fail;
static cx_precision g_prec = CX_PREC_FP32;
static const char *g_device = "cuda"; /* --device as given: cuda or cuda:N (the whole-model check) */

static void report(vdev *v, const char *op, const char *shape, const char *metric, double err, double tol) {
  const char *e = d_error(v);
  const int ok = !e && err == err && err <= tol;
  if (ok) g_pass++;
  else g_fail++;
  if (e)
    printf("%-16s %-46s %-9s %10s %10.2g  FAIL (%s)\n", op, shape, metric, "-", tol, e);
  else
    printf("%-16s %-46s %-9s %10.3g %10.2g  %s\n", op, shape, metric, err, tol, ok ? "PASS" : "FAIL");
  fflush(stdout);
  if (v->is_cuda) cx_cuda_clear_error();
  d_free_all(v);
}

static double rel_rms(const float *got, const float *ref, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    const double d = (double)got[i] - (double)ref[i];
    if (got[i] != got[i] && ref[i] == ref[i]) return NAN;
    num += d * d;
    den += (double)ref[i] * ref[i];
  }
  return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static double max_abs_f(const float *got, const float *ref, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) {
    if ((got[i] != got[i]) != (ref[i] != ref[i])) return NAN;
    const double d = fabs((double)got[i] - (double)ref[i]);
    if (d > m) m = d;
  }
  return m;
}

static double max_abs_d(const double *got, const double *ref, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) {
    if ((got[i] != got[i]) != (ref[i] != ref[i])) return NAN;
    const double d = fabs(got[i] - ref[i]);
    if (d > m) m = d;
  }
  return m;
}

static double mismatch_i(const int *got, const int *ref, size_t n) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += got[i] != ref[i];
  return (double)bad;
}

static double gemm_tol(void) {
  /* fp32: accumulation-order differences only (TF32 would show ~1e-3); 16-bit operands:
   * unit roundoff 2^-11 (fp16) / 2^-8 (bf16) per operand, random-sign sums */
  return g_prec == CX_PREC_FP16 ? 5e-3 : g_prec == CX_PREC_BF16 ? 3e-2 : 2e-5;
}
#define EXP_TOL 1e-5 /* ops whose only difference is CUDA expf vs glibc expf (<= 2 ulp) */

/* ---- random inputs ---------------------------------------------------------------------- */
static uint64_t g_rng = 0x5EEDCAFEF00DULL;
static uint64_t rnd64(void) {
  uint64_t z = (g_rng += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
static float uni(float lo, float hi) { return lo + (hi - lo) * (float)((rnd64() >> 40) * (1.0 / 16777216.0)); }
static int uint_below(int n) { return (int)(rnd64() % (uint64_t)n); }

static float *rand_f(size_t n, float lo, float hi) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  if (!p) return NULL;
  for (size_t i = 0; i < n; i++) {
    float v = uni(lo, hi);
    if (v == 0.0f) v = 0.5f * hi; /* nonzero inputs */
    p[i] = v;
  }
  return p;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "ctxdiff validate: out of host memory (%zu bytes)\n", n);
    exit(1); /* CLI code, not library code */
  }
  return p;
}
#define NEED(p) \
  do {          \
    if (!(p)) { fprintf(stderr, "ctxdiff validate: out of host memory\n"); exit(1); } \
  } while (0)

/* ---- ops ---------------------------------------------------------------------------------- */
static const cx_backend *CPU;

/* conv2d: x [n,h,w,cin], Keras kernel, bias, optional residual, SAME or explicit pads.
 * wino (2 or 4): a 3x3/1 SAME case in Winograd form on both sides — the CPU reference with
 * host-packed weights (its own Winograd path), the device with cx_cuda_winograd_upload's copy
 * and no direct kernel (kernel = NULL), so a silent fallback to the direct kernels cannot pass;
 * with Winograd switched off (CTXDIFF_CUDA_WINOGRAD=0, or the CPU's conv selection) the direct
 * kernel is given and the fallback is what gets checked. */
/* Live-row checks (cuda only; live >= 0): the first `live` images' outputs against the CPU's,
 * the inputs of the other images NaN (never read for live outputs), and every output row from
 * the first 128-row tile (v4: 256) past the live rows still poisoned (the kernels' early exit). */
/* widened: the output was 16-bit (poisoned with 0xFFFF), so untouched elements read as some NaN */
static double live_err(const float *got, const float *ref, size_t live_count, size_t untouched_from, size_t total,
                       int widened) {
  double err = live_count ? rel_rms(got, ref, live_count) : 0.0;
  for (size_t i = untouched_from; i < total; i++) {
    uint32_t b;
    memcpy(&b, got + i, 4);
    if (widened ? got[i] == got[i] : b != 0xFFFFFFFFu) {
      printf("    output element %zu (past the live rows) was written\n", i);
      return INFINITY;
    }
  }
  return err;
}

/* w16 (cuda, fp16/bf16): the device descriptor carries only the weights converted once to 16
 * bits (cx_cuda_weights16_upload, kernel NULL), the path of fp16/bf16 models. */
/* What a conv2d case exercises beyond the shape: wino (tile 4 or 2) — the descriptor carries a
 * packed Winograd kernel; live_on — cx_cuda_conv2d_live with `live` images; w16 — the 16-bit
 * weights; a16 / o16 (cuda, fp16/bf16) — 16-bit activations in (x) / out (y and residual)
 * through cx_cuda_conv2d_io, the device inputs rounded to 16 bits there (the CPU reference keeps
 * the fp32 values, so the error includes that rounding). */
typedef struct {
  int wino, live_on, live, w16, a16, o16;
  int both; /* wino: the device descriptor keeps its direct kernel too (the model's layers; what
               CTXDIFF_CUDA_CONV=tune chooses between) */
} conv_opt;

static void conv_case(vdev *v, const char *label, int n, int h, int w, int cin, int cout, int k, int s, int same,
                      int pad, int with_res, int relu, conv_opt o) {
  const int wino = o.wino, live = o.live_on ? o.live : -1, w16 = o.w16 || o.a16 || o.o16;
  cx_conv2d_desc d = {k, k, cin, cout, s, pad, pad, pad, pad, NULL, NULL, NULL, 0, NULL, 0};
  if (same) {
    cx_same_pads(h, k, s, &d.pad_t, &d.pad_b);
    cx_same_pads(w, k, s, &d.pad_l, &d.pad_r);
  }
  const int ho = cx_conv2d_out(h, k, s, d.pad_t, d.pad_b), wo = cx_conv2d_out(w, k, s, d.pad_l, d.pad_r);
  const size_t nx = (size_t)n * h * w * cin, nk = (size_t)k * k * cin * cout, ny = (size_t)n * ho * wo * cout;
  const float sc = 1.0f / sqrtf((float)(k * k * cin));
  float *x = rand_f(nx, -1.0f, 1.0f), *kk = rand_f(nk, -sc, sc), *b = rand_f((size_t)cout, -0.5f, 0.5f);
  float *res = with_res ? rand_f(ny, -1.0f, 1.0f) : NULL;
  const int nl = live < 0 ? n : (live < n ? live : n); /* images computed */
  float *ref = xmalloc(ny * sizeof(float)), *got = xmalloc(ny * sizeof(float));
  NEED(x && kk && b && (!with_res || res));
  float *packed = NULL;
  if (wino) {
    packed = xmalloc(cx_winograd_packed_floats(wino, cin, cout) * sizeof(float));
    cx_winograd_pack(wino, kk, cin, cout, packed);
    d.winograd = packed;
    d.winograd_tile = wino;
  }
  d.kernel = kk;
  d.bias = b;
  float *ws = xmalloc((cx_conv2d_workspace(&d, n, h, w) + 1) * sizeof(float));
  CPU->conv2d(&d, x, n, h, w, ref, res, relu, ws);
  free(ws);

  cx_conv2d_desc dd = d;
  if (nl < n) /* the CPU has its result: the device must not read these images for live rows */
    for (size_t i = (size_t)nl * h * w * cin; i < nx; i++) x[i] = NAN;
  float *dx = d_in(v, x, nx * 4);
  int *dlive = live >= 0 ? d_in(v, &live, sizeof live) : NULL;
  const int direct = !wino || !v->is_cuda || !cx_cuda_winograd_on() || !cx_winograd_applies(&d);
  dd.kernel = (direct || o.both) && !w16 ? d_in(v, kk, nk * 4) : NULL;
  if (w16) {
    void *k16 = cx_cuda_weights16_upload(g_prec, kk, nk);
    if (k16 && v->nallocs < MAX_ALLOCS) v->allocs[v->nallocs++] = k16; /* freed by report() */
    else if (k16) cx_cuda_free(k16), k16 = NULL;
    if (!k16) v->alloc_failed = 1;
    dd.kernel16 = k16;
    dd.kernel16_prec = (int)g_prec;
  }
  if (wino && v->is_cuda) {
    float *u = cx_cuda_winograd_upload(wino, kk, cin, cout);
    if (u && v->nallocs < MAX_ALLOCS) v->allocs[v->nallocs++] = u; /* freed by report() */
    else if (u) cx_cuda_free(u), u = NULL;
    if (!u) v->alloc_failed = 1;
    dd.winograd = u;
  } else if (wino) {
    dd.winograd = d_in(v, packed, cx_winograd_packed_floats(wino, cin, cout) * 4);
  }
  dd.bias = d_in(v, b, (size_t)cout * 4);
  float *dres = with_res ? d_in(v, res, ny * 4) : NULL;
  float *dy = d_out(v, ny * 4);
  float *dws = d_alloc(v, (cx_conv2d_workspace(&d, n, h, w) + 1) * sizeof(float));
  /* 16-bit activations: x and residual rounded on the device, y poisoned (0xFFFF: NaN in both
   * formats) and widened back to fp32 for the comparison */
  void *dx16 = o.a16 ? d_alloc(v, nx * 2) : NULL, *dres16 = o.o16 && with_res ? d_alloc(v, ny * 2) : NULL;
  void *dy16 = o.o16 ? d_out(v, ny * 2) : NULL;
  double err = NAN;
  if (!d_error(v) && (o.a16 || o.o16)) {
    /* a failing call records its error, which report() prints */
    if (!(o.a16 && cx_cuda_to16(dx, dx16, nx)) && !(dres16 && cx_cuda_to16(dres, dres16, ny)) &&
        !cx_cuda_conv2d_io_rows(&dd, o.a16 ? dx16 : (void *)dx, o.a16, n, h, w, o.o16 ? dy16 : (void *)dy, o.o16,
                                o.o16 ? dres16 : (void *)dres, relu, dlive, 1) &&
        o.o16)
      cx_cuda_from16(dy16, dy, ny);
  } else if (!d_error(v)) {
    if (live >= 0) cx_cuda_conv2d_live(&dd, dx, n, h, w, dy, dres, relu, dlive);
    else v->be->conv2d(&dd, dx, n, h, w, dy, dres, relu, dws);
  }
  if (!d_error(v)) {
    if (!d_fetch(v, got, dy, ny * 4)) {
      /* output rows from the first whole row tile (128; v4: 256) past the live ones stay poisoned */
      /* the row tile: 128, or v4's 256 (cx_cuda_set_conv_version(4), or 7: tuning runs v4 too) */
      const size_t tile = v->is_cuda && (cx_cuda_conv_version() == 4 || cx_cuda_conv_version() == 7) ? 256 : 128;
      const size_t rows = (size_t)nl * ho * wo, untouched = (rows + tile - 1) / tile * tile;
      err = live < 0 ? rel_rms(got, ref, ny)
                     : live_err(got, ref, rows * cout, untouched * cout < ny ? untouched * cout : ny, ny, o.o16);
    }
  }
  char shape[160], lv[48] = "";
  if (live >= 0) snprintf(lv, sizeof lv, " live %d", live);
  if (w16) snprintf(lv + strlen(lv), sizeof lv - strlen(lv), " w16");
  if (o.a16 || o.o16)
    snprintf(lv + strlen(lv), sizeof lv - strlen(lv), " %s%s", o.a16 ? "a16" : "", o.a16 && o.o16 ? "/o16" : o.o16 ? "o16" : "");
  snprintf(shape, sizeof shape, "%s%s %dx%dx%dx%d k%d/%d %d->%d%s%s", label, lv, n, h, w, cin, k, s, cin, cout,
           with_res ? " +res" : "", relu ? " relu" : "");
  report(v, "conv2d", shape, "rel_rms", err, gemm_tol());
  free(x), free(kk), free(b), free(res), free(ref), free(got), free(packed);
}

/* The opt-in conv versions 4, 5 and 6 on the 16-bit shapes where they replace v3: full tiles,
 * partial row and column tiles (M 286, cout 136), fp32 out, device-side rows; for v5 and v6
 * also K not a multiple of their 64-wide k-tile (cin 16 x 9 = 144), for v6 with cout 384 (a
 * second 256-wide tile whose upper half is past cout). On one assumed SM, so that every device
 * takes the wide unsplit tiles these versions run on. */
static void forced_rows(vdev *v, int version) {
  char lb[4][64];
  const char *shape[4] = {"3x3 SAME", "odd 3x3 SAME", "1x1", "mask"};
  for (int i = 0; i < 4; i++) snprintf(lb[i], sizeof lb[i], "v%d forced: %s", version, shape[i]);
  const int prev = cx_cuda_conv_version();
  cx_cuda_set_conv_version(version);
  cx_cuda_set_sm_count_hint(1);
  conv_case(v, lb[0], 1, 64, 64, 256, 256, 3, 1, 1, 0, 1, 1, (conv_opt){.a16 = 1, .o16 = 1});
  conv_case(v, lb[1], 2, 13, 11, 64, 136, 3, 1, 1, 0, 1, 1, (conv_opt){.a16 = 1, .o16 = 1});
  conv_case(v, lb[2], 1, 32, 32, 1024, 256, 1, 1, 0, 0, 1, 1, (conv_opt){.a16 = 1});
  if (version == 5)
    conv_case(v, "v5 forced: cin 16 3x3", 1, 24, 20, 16, 128, 3, 1, 1, 1, 0, 1, (conv_opt){.a16 = 1, .o16 = 1});
  if (version == 6)
    conv_case(v, "v6 forced: cin 16 3x3", 1, 24, 20, 16, 384, 3, 1, 1, 1, 0, 1, (conv_opt){.a16 = 1, .o16 = 1});
  conv_case(v, lb[3], 8, 14, 14, 256, 256, 3, 1, 1, 0, 0, 1, (conv_opt){.live_on = 1, .live = 3, .a16 = 1, .o16 = 1});
  cx_cuda_set_sm_count_hint(0);
  cx_cuda_set_conv_version(prev);
}

/* Split-K (cuda): `slices` forced (cx_cuda_set_splitk) for one case, then back to auto */
static void t_conv_split(vdev *v, int slices, const char *label, int n, int h, int w, int cin, int cout, int k,
                         int s, int same, int pad, int with_res, int relu, conv_opt o) {
  char lb[64];
  snprintf(lb, sizeof lb, "%s splitk %d", label, slices);
  cx_cuda_set_splitk(slices);
  conv_case(v, lb, n, h, w, cin, cout, k, s, same, pad, with_res, relu, o);
  cx_cuda_set_splitk(0);
}

static void t_conv(vdev *v, const char *label, int n, int h, int w, int cin, int cout, int k, int s, int same,
                   int pad, int with_res, int relu) {
  conv_case(v, label, n, h, w, cin, cout, k, s, same, pad, with_res, relu, (conv_opt){0});
}

/* 3x3 / stride 1 / SAME (pad 1 everywhere) in Winograd form, tile 4 or 2 */
static void t_conv_wino(vdev *v, const char *label, int tile, int n, int h, int w, int cin, int cout, int with_res,
                        int relu) {
  conv_case(v, label, n, h, w, cin, cout, 3, 1, 1, 0, with_res, relu, (conv_opt){.wino = tile});
}

static void t_dense(vdev *v, int rows, int in, int out, int relu) {
  const float sc = 1.0f / sqrtf((float)in);
  float *x = rand_f((size_t)rows * in, -1.0f, 1.0f), *k = rand_f((size_t)in * out, -sc, sc),
        *b = rand_f((size_t)out, -0.5f, 0.5f);
  NEED(x && k && b);
  const size_t ny = (size_t)rows * out;
  float *ref = xmalloc(ny * 4), *got = xmalloc(ny * 4);
  CPU->dense(x, rows, in, k, b, out, relu, ref);
  float *dx = d_in(v, x, (size_t)rows * in * 4), *dk = d_in(v, k, (size_t)in * out * 4), *db = d_in(v, b, (size_t)out * 4);
  float *dy = d_out(v, ny * 4);
  double err = NAN;
  if (!d_error(v)) {
    v->be->dense(dx, rows, in, dk, db, out, relu, dy);
    if (!d_fetch(v, got, dy, ny * 4)) err = rel_rms(got, ref, ny);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%dx%d -> %d%s", rows, in, out, relu ? " relu" : "");
  report(v, "dense", shape, "rel_rms", err, gemm_tol());
  free(x), free(k), free(b), free(ref), free(got);
}

static void t_maxpool(vdev *v, int n, int h, int w, int c, int k, int s) {
  const int ho = (h + s - 1) / s, wo = (w + s - 1) / s;
  const size_t nx = (size_t)n * h * w * c, ny = (size_t)n * ho * wo * c;
  float *x = rand_f(nx, -2.0f, 2.0f);
  NEED(x);
  float *ref = xmalloc(ny * 4), *got = xmalloc(ny * 4);
  CPU->maxpool_same(x, n, h, w, c, k, s, ref);
  float *dx = d_in(v, x, nx * 4), *dy = d_out(v, ny * 4);
  double err = NAN;
  if (!d_error(v)) {
    v->be->maxpool_same(dx, n, h, w, c, k, s, dy);
    if (!d_fetch(v, got, dy, ny * 4)) err = max_abs_f(got, ref, ny);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%dx%dx%dx%d k%d/%d SAME", n, h, w, c, k, s);
  report(v, "maxpool_same", shape, "max_abs", err, 0.0);
  free(x), free(ref), free(got);
}

static void t_subsample2(vdev *v, int n, int h, int w, int c) {
  const int ho = (h + 1) / 2, wo = (w + 1) / 2;
  const size_t nx = (size_t)n * h * w * c, ny = (size_t)n * ho * wo * c;
  float *x = rand_f(nx, -2.0f, 2.0f);
  NEED(x);
  float *ref = xmalloc(ny * 4), *got = xmalloc(ny * 4);
  CPU->subsample2(x, n, h, w, c, ref);
  float *dx = d_in(v, x, nx * 4), *dy = d_out(v, ny * 4);
  double err = NAN;
  if (!d_error(v)) {
    v->be->subsample2(dx, n, h, w, c, dy);
    if (!d_fetch(v, got, dy, ny * 4)) err = max_abs_f(got, ref, ny);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%dx%dx%dx%d", n, h, w, c);
  report(v, "subsample2", shape, "max_abs", err, 0.0);
  free(x), free(ref), free(got);
}

static void t_upsample(vdev *v, int n, int h, int w, int c) {
  const size_t nx = (size_t)n * h * w * c, ny = nx * 4;
  float *x = rand_f(nx, -1.0f, 1.0f), *y0 = rand_f(ny, -1.0f, 1.0f);
  NEED(x && y0);
  float *ref = xmalloc(ny * 4), *got = xmalloc(ny * 4);
  memcpy(ref, y0, ny * 4);
  CPU->upsample2_add(x, n, h, w, c, ref);
  float *dx = d_in(v, x, nx * 4), *dy = d_in(v, y0, ny * 4); /* y is an input/output: not poisoned */
  double err = NAN;
  if (!d_error(v)) {
    v->be->upsample2_add(dx, n, h, w, c, dy);
    if (!d_fetch(v, got, dy, ny * 4)) err = max_abs_f(got, ref, ny);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%dx%dx%dx%d -> %dx%d", n, h, w, c, 2 * h, 2 * w);
  report(v, "upsample2_add", shape, "max_abs", err, 0.0);
  free(x), free(y0), free(ref), free(got);
}

static void t_softmax(vdev *v, size_t rows, int cols) {
  const size_t nx = rows * cols;
  float *x = rand_f(nx, -8.0f, 8.0f);
  NEED(x);
  float *ref = xmalloc(nx * 4), *got = xmalloc(nx * 4);
  CPU->softmax_rows(x, rows, cols, ref);
  float *dx = d_in(v, x, nx * 4), *dy = d_out(v, nx * 4);
  double err = NAN;
  if (!d_error(v)) {
    v->be->softmax_rows(dx, rows, cols, dy);
    if (!d_fetch(v, got, dy, nx * 4)) err = rel_rms(got, ref, nx);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%zu rows x %d", rows, cols);
  report(v, "softmax", shape, "rel_rms", err, EXP_TOL);
  free(x), free(ref), free(got);
}

static void t_sigmoid(vdev *v, size_t count) {
  float *x = rand_f(count, -10.0f, 10.0f);
  NEED(x);
  float *ref = xmalloc(count * 4), *got = xmalloc(count * 4);
  memcpy(ref, x, count * 4);
  CPU->sigmoid(ref, count);
  float *dx = d_in(v, x, count * 4); /* in place */
  double err = NAN;
  if (!d_error(v)) {
    v->be->sigmoid(dx, count);
    if (!d_fetch(v, got, dx, count * 4)) err = rel_rms(got, ref, count);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%zu values (in place)", count);
  report(v, "sigmoid", shape, "rel_rms", err, EXP_TOL);
  free(x), free(ref), free(got);
}

/* mrcnn_mask at each row's own class (fp32 on every precision: only the summation order and
 * expf differ); classes include -1 and nc (clamped by contract). live >= 0 (cuda only): the
 * graph's form, cx_cuda_mask_class on the first `live` rows, the other rows' inputs NaN and
 * their outputs left poisoned. */
static void t_mask_class(vdev *v, int rows, int cin, int nc, int live) {
  const int pix = 784;
  const size_t nx = (size_t)rows * pix * cin, nk = (size_t)cin * nc, ny = (size_t)rows * pix;
  const float sc = 1.0f / sqrtf((float)cin);
  float *x = rand_f(nx, -1.0f, 1.0f), *kk = rand_f(nk, -sc, sc), *b = rand_f((size_t)nc, -0.5f, 0.5f);
  NEED(x && kk && b);
  int *cls = xmalloc((size_t)rows * sizeof(int));
  for (int r = 0; r < rows; r++) cls[r] = r == 1 ? -1 : r == 2 ? nc : uint_below(nc);
  float *ref = xmalloc(ny * 4), *got = xmalloc(ny * 4);
  CPU->mask_class_sigmoid(x, rows, pix, cin, kk, b, nc, cls, ref);
  const int nl = live < 0 ? rows : (live < rows ? live : rows);
  for (size_t i = (size_t)nl * pix * cin; i < nx; i++) x[i] = NAN;
  float *dx = d_in(v, x, nx * 4), *dk = d_in(v, kk, nk * 4), *db = d_in(v, b, (size_t)nc * 4);
  int *dc = d_in(v, cls, (size_t)rows * sizeof(int));
  float *dy = d_out(v, ny * 4);
  int *dlive = live >= 0 ? d_in(v, &live, sizeof live) : NULL;
  double err = NAN;
  if (!d_error(v)) {
    if (live >= 0) cx_cuda_mask_class(dx, rows, pix, cin, dk, db, nc, dc, dy, dlive);
    else v->be->mask_class_sigmoid(dx, rows, pix, cin, dk, db, nc, dc, dy);
    const size_t nly = (size_t)nl * pix;
    if (!d_fetch(v, got, dy, ny * 4)) err = live < 0 ? rel_rms(got, ref, ny) : live_err(got, ref, nly, nly, ny, 0);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%s%d rows x 28x28x%d, %d classes", live >= 0 ? "live " : "", rows, cin, nc);
  if (live >= 0) snprintf(shape + strlen(shape), sizeof shape - strlen(shape), " (%d live)", live);
  report(v, "mask_class", shape, "rel_rms", err, EXP_TOL);
  free(x), free(kk), free(b), free(cls), free(ref), free(got);
}

/* live >= 0 (cuda only): cx_cuda_deconv2x2_live on the first `live` images, as conv_case */
/* x16 (cuda, fp16/bf16): the input as 16-bit activations (rounded on the device) and the packed
 * kernel as 16-bit weights, the mask head's form under 16-bit feature maps */
static void t_deconv(vdev *v, int n, int h, int w, int cin, int cout, int relu, int live, int x16) {
  const float sc = 1.0f / sqrtf((float)cin);
  const size_t nx = (size_t)n * h * w * cin, nk = (size_t)4 * cin * cout, ny = (size_t)n * 4 * h * w * cout;
  float *x = rand_f(nx, -1.0f, 1.0f), *kk = rand_f(nk, -sc, sc), *b = rand_f((size_t)cout, -0.5f, 0.5f);
  NEED(x && kk && b);
  float *packed = xmalloc(nk * 4), *ref = xmalloc(ny * 4), *got = xmalloc(ny * 4);
  cx_deconv2x2_pack(kk, cin, cout, packed);
  float *ws = xmalloc(ny * 4);
  CPU->deconv2x2(x, n, h, w, cin, packed, b, cout, relu, ref, ws);
  free(ws);
  const int nl = live < 0 ? n : (live < n ? live : n);
  for (size_t i = (size_t)nl * h * w * cin; i < nx; i++) x[i] = NAN;
  float *dx = d_in(v, x, nx * 4), *dp = d_in(v, packed, nk * 4), *db = d_in(v, b, (size_t)cout * 4);
  float *dy = d_out(v, ny * 4), *dws = d_alloc(v, ny * 4);
  int *dlive = live >= 0 ? d_in(v, &live, sizeof live) : NULL;
  double err = NAN;
  void *dx16 = x16 ? d_alloc(v, nx * 2) : NULL, *dp16 = NULL;
  if (x16) {
    dp16 = cx_cuda_weights16_upload(g_prec, packed, nk);
    if (dp16 && v->nallocs < MAX_ALLOCS) v->allocs[v->nallocs++] = dp16; /* freed by report() */
    else if (dp16) cx_cuda_free(dp16), dp16 = NULL;
    if (!dp16 || (dx16 && cx_cuda_to16(dx, dx16, nx))) v->alloc_failed = 1;
  }
  if (!d_error(v)) {
    if (x16) cx_cuda_deconv2x2_live(dx16, 1, n, h, w, cin, NULL, dp16, (int)g_prec, db, cout, relu, dy, dws, dlive);
    else if (live >= 0) cx_cuda_deconv2x2_live(dx, 0, n, h, w, cin, dp, NULL, 0, db, cout, relu, dy, dws, dlive);
    else v->be->deconv2x2(dx, n, h, w, cin, dp, db, cout, relu, dy, dws);
    const size_t nly = (size_t)nl * 4 * h * w * cout; /* the scatter writes live images only */
    if (!d_fetch(v, got, dy, ny * 4)) err = live < 0 ? rel_rms(got, ref, ny) : live_err(got, ref, nly, nly, ny, 0);
  }
  char shape[128], lv[32] = "";
  if (live >= 0) snprintf(lv, sizeof lv, "live %d ", live);
  if (x16) snprintf(lv + strlen(lv), sizeof lv - strlen(lv), "a16 ");
  snprintf(shape, sizeof shape, "%s%dx%dx%dx%d -> %dx%dx%d%s", lv, n, h, w, cin, 2 * h, 2 * w, cout, relu ? " relu" : "");
  report(v, "deconv2x2", shape, "rel_rms", err, gemm_tol());
  free(x), free(kk), free(b), free(packed), free(ref), free(got);
}

/* normalized boxes (y1, x1, y2, x2): mostly inside [0, 1], some on the edges, some zero,
 * some reaching outside (extrapolation rows/columns) */
static float *rand_boxes(int nb, float min_size, float max_size) {
  float *b = xmalloc((size_t)nb * 16);
  for (int i = 0; i < nb; i++) {
    float *o = b + (size_t)i * 4;
    const int kind = uint_below(20);
    if (kind == 0) {
      o[0] = o[1] = o[2] = o[3] = 0.0f; /* zero padding row */
    } else if (kind == 1) {
      o[0] = 0.0f, o[1] = 0.0f, o[2] = 1.0f, o[3] = 1.0f;
    } else {
      const float hh = uni(min_size, max_size), ww = uni(min_size, max_size);
      const float lo = kind == 2 ? -0.2f : 0.0f, hi = kind == 2 ? 1.2f : 1.0f;
      o[0] = uni(lo, hi - hh);
      o[1] = uni(lo, hi - ww);
      o[2] = o[0] + hh;
      o[3] = o[1] + ww;
    }
  }
  return b;
}

/* subsample2 of 16-bit values (cuda, fp16/bf16): must equal the CPU's result rounded the same
 * way (both rounded on the device), i.e. an exact copy of the rounded inputs */
static void t_subsample2_16(vdev *v, int n, int h, int w, int c) {
  const int ho = (h + 1) / 2, wo = (w + 1) / 2;
  const size_t nx = (size_t)n * h * w * c, ny = (size_t)n * ho * wo * c;
  float *x = rand_f(nx, -2.0f, 2.0f);
  NEED(x);
  float *ref = xmalloc(ny * 4), *got = xmalloc(ny * 4), *want = xmalloc(ny * 4);
  CPU->subsample2(x, n, h, w, c, ref);
  float *dx = d_in(v, x, nx * 4), *dref = d_in(v, ref, ny * 4), *dy = d_out(v, ny * 4), *dwant = d_out(v, ny * 4);
  void *dx16 = d_alloc(v, nx * 2), *dy16 = d_out(v, ny * 2), *dref16 = d_alloc(v, ny * 2);
  double err = NAN;
  if (!d_error(v) && !cx_cuda_to16(dx, dx16, nx) && !cx_cuda_subsample2_16(dx16, n, h, w, c, dy16) &&
      !cx_cuda_from16(dy16, dy, ny) && !cx_cuda_to16(dref, dref16, ny) && !cx_cuda_from16(dref16, dwant, ny) &&
      !d_fetch(v, got, dy, ny * 4) && !d_fetch(v, want, dwant, ny * 4))
    err = max_abs_f(got, want, ny);
  char shape[128];
  snprintf(shape, sizeof shape, "%dx%dx%dx%d (16-bit values)", n, h, w, c);
  report(v, "subsample2", shape, "max_abs", err, 0.0);
  free(x), free(ref), free(got), free(want);
}

/* PyramidROIAlign of the GPU graph (cx_cuda_pyramid_roi_align: boxes of several images on
 * four levels in one launch) against the CPU's crop_and_resize of each box on its own level
 * and image. fp32 levels: exact. p16 (fp16/bf16): the levels rounded to 16 bits on the device,
 * relative RMS against the CPU on the unrounded levels. */
static void t_pyramid(vdev *v, int p16, int o16, int n, int c, int nb, int pool) {
  const int fh[4] = {32, 16, 8, 4}, fw[4] = {40, 20, 10, 5};
  float *f[4];
  size_t nf[4];
  for (int l = 0; l < 4; l++) {
    nf[l] = (size_t)n * fh[l] * fw[l] * c;
    f[l] = rand_f(nf[l], -3.0f, 3.0f);
    NEED(f[l]);
  }
  float *boxes = rand_boxes(nb, 0.01f, 0.9f);
  int *lev = xmalloc((size_t)nb * sizeof(int)), *img = xmalloc((size_t)nb * sizeof(int));
  for (int i = 0; i < nb; i++) lev[i] = 2 + uint_below(4), img[i] = uint_below(n);
  const size_t per = (size_t)pool * pool * c, ny = (size_t)nb * per;
  float *ref = xmalloc(ny * 4), *got = xmalloc(ny * 4);
  for (int i = 0; i < nb; i++) {
    const int l = lev[i] - 2;
    CPU->crop_and_resize(f[l] + (size_t)img[i] * fh[l] * fw[l] * c, fh[l], fw[l], c, boxes + (size_t)i * 4, 1, pool,
                         pool, ref + (size_t)i * per);
  }
  const void *dp[4];
  for (int l = 0; l < 4; l++) {
    float *d = d_in(v, f[l], nf[l] * 4);
    dp[l] = d;
    if (p16) {
      void *d16 = d_alloc(v, nf[l] * 2);
      if (d && d16 && cx_cuda_to16(d, d16, nf[l])) v->alloc_failed = 1;
      dp[l] = d16;
    }
  }
  float *db = d_in(v, boxes, (size_t)nb * 16), *dy = d_out(v, ny * 4);
  void *dy16 = o16 ? d_out(v, ny * 2) : NULL; /* 16-bit output widened for the comparison */
  int *dlev = d_in(v, lev, (size_t)nb * sizeof(int)), *dimg = d_in(v, img, (size_t)nb * sizeof(int));
  double err = NAN;
  if (!d_error(v) && !cx_cuda_pyramid_roi_align(dp, p16, fh, fw, c, db, dlev, dimg, 0, nb, pool, o16 ? dy16 : (void *)dy,
                                                o16, NULL) &&
      !(o16 && cx_cuda_from16(dy16, dy, ny)) && !d_fetch(v, got, dy, ny * 4))
    err = p16 ? rel_rms(got, ref, ny) : max_abs_f(got, ref, ny);
  char shape[128];
  snprintf(shape, sizeof shape, "%d boxes %dx%d, %d images, 4 levels%s", nb, pool, pool, n,
           o16 ? " (16-bit in/out)" : p16 ? " (16-bit)" : "");
  report(v, "pyramid_roi_align", shape, p16 ? "rel_rms" : "max_abs", err, p16 ? gemm_tol() : 0.0);
  for (int l = 0; l < 4; l++) free(f[l]);
  free(boxes), free(lev), free(img), free(ref), free(got);
}

static void t_crop(vdev *v, int hf, int wf, int c, int nb, int ph) {
  const size_t nf = (size_t)hf * wf * c, ny = (size_t)nb * ph * ph * c;
  float *f = rand_f(nf, -3.0f, 3.0f), *boxes = rand_boxes(nb, 0.01f, 0.9f);
  NEED(f);
  float *ref = xmalloc(ny * 4), *got = xmalloc(ny * 4);
  CPU->crop_and_resize(f, hf, wf, c, boxes, nb, ph, ph, ref);
  float *df = d_in(v, f, nf * 4), *db = d_in(v, boxes, (size_t)nb * 16), *dy = d_out(v, ny * 4);
  double err = NAN;
  if (!d_error(v)) {
    v->be->crop_and_resize(df, hf, wf, c, db, nb, ph, ph, dy);
    if (!d_fetch(v, got, dy, ny * 4)) err = max_abs_f(got, ref, ny);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%d boxes %dx%d from %dx%dx%d", nb, ph, ph, hf, wf, c);
  report(v, "crop_and_resize", shape, "max_abs", err, 0.0);
  free(f), free(boxes), free(ref), free(got);
}

/* live >= 0 (cuda only): cx_cuda_roi_levels_live; levels past the live boxes stay poisoned */
static void t_roi_levels(vdev *v, int nb, int ih, int iw, int live) {
  float *boxes = rand_boxes(nb, 0.001f, 1.0f);
  int *ref = xmalloc((size_t)nb * 4), *got = xmalloc((size_t)nb * 4);
  CPU->roi_levels(boxes, nb, ih, iw, ref);
  const int nl = live < 0 ? nb : (live < nb ? live : nb);
  for (int i = nl; i < nb; i++) ref[i] = -1; /* 0xFF bytes: the poison */
  float *db = d_in(v, boxes, (size_t)nb * 16);
  int *dl = d_out(v, (size_t)nb * 4);
  int *dlive = live >= 0 ? d_in(v, &live, sizeof live) : NULL;
  double err = NAN;
  if (!d_error(v)) {
    if (live >= 0) cx_cuda_roi_levels_live(db, nb, ih, iw, dl, dlive);
    else v->be->roi_levels(db, nb, ih, iw, dl);
    if (!d_fetch(v, got, dl, (size_t)nb * 4)) err = mismatch_i(got, ref, (size_t)nb);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%d boxes%s, image %dx%d", nb, live >= 0 ? " (live part)" : "", ih, iw);
  report(v, "roi_levels", shape, "mismatch", err, 0.0);
  free(boxes), free(ref), free(got);
}

static void t_deltas(vdev *v, int nb) {
  float *boxes = rand_boxes(nb, 0.01f, 0.5f);
  float *deltas = xmalloc((size_t)nb * 16);
  for (int i = 0; i < nb * 4; i++) deltas[i] = uni(-1.0f, 1.0f) * ((i % 4) < 2 ? 0.1f : 0.2f) * 3.0f;
  float *ref = xmalloc((size_t)nb * 16), *got = xmalloc((size_t)nb * 16);
  CPU->apply_box_deltas(boxes, deltas, nb, ref);
  float *db = d_in(v, boxes, (size_t)nb * 16), *dd = d_in(v, deltas, (size_t)nb * 16), *dy = d_out(v, (size_t)nb * 16);
  double err = NAN;
  if (!d_error(v)) {
    v->be->apply_box_deltas(db, dd, nb, dy);
    if (!d_fetch(v, got, dy, (size_t)nb * 16)) err = rel_rms(got, ref, (size_t)nb * 4);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%d boxes", nb);
  report(v, "box_deltas", shape, "rel_rms", err, EXP_TOL);
  free(boxes), free(deltas), free(ref), free(got);
}

static void t_clip(vdev *v, int nb) {
  float *boxes = rand_f((size_t)nb * 4, -0.5f, 1.5f);
  NEED(boxes);
  const float window[4] = {0.0f, 0.0f, 1.0f, 1.0f};
  float *ref = xmalloc((size_t)nb * 16), *got = xmalloc((size_t)nb * 16);
  memcpy(ref, boxes, (size_t)nb * 16);
  CPU->clip_boxes(ref, nb, window);
  float *db = d_in(v, boxes, (size_t)nb * 16); /* in place */
  double err = NAN;
  if (!d_error(v)) {
    v->be->clip_boxes(db, nb, window);
    if (!d_fetch(v, got, db, (size_t)nb * 16)) err = max_abs_f(got, ref, (size_t)nb * 4);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%d boxes, window (0,0,1,1)", nb);
  report(v, "clip_boxes", shape, "max_abs", err, 0.0);
  free(boxes), free(ref), free(got);
}

/* scores with many exact ties (quantised) and a block of saturated 1.0f, as RPN
 * foreground probabilities have */
static float *tied_scores(int n, int levels) {
  float *s = xmalloc((size_t)n * 4);
  for (int i = 0; i < n; i++) s[i] = (float)uint_below(levels) / (float)levels;
  for (int i = 0; i < n / 128; i++) s[uint_below(n)] = 1.0f;
  return s;
}

static void t_topk(vdev *v, int n, int k) {
  float *s = tied_scores(n, 50000);
  int *ref = xmalloc((size_t)k * 4), *got = xmalloc((size_t)k * 4), *ws = xmalloc((size_t)n * 8);
  const int kr = CPU->topk_stable(s, n, k, ref, ws);
  free(ws);
  float *ds = d_in(v, s, (size_t)n * 4);
  int *di = d_out(v, (size_t)k * 4), *dws = d_alloc(v, (size_t)n * 8);
  double err = NAN;
  if (!d_error(v)) {
    const int kg = v->be->topk_stable(ds, n, k, di, dws);
    if (!d_fetch(v, got, di, (size_t)k * 4)) err = kg != kr ? (double)k : mismatch_i(got, ref, (size_t)kr);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%d -> %d (many ties)", n, k);
  report(v, "topk", shape, "mismatch", err, 0.0);
  free(s), free(ref), free(got);
}

/* clustered boxes so that many IoUs are near the threshold; some flipped, some zero-area */
static float *nms_boxes(int n) {
  float *b = xmalloc((size_t)n * 16);
  const int nc = n / 20 + 1;
  float *cl = xmalloc((size_t)nc * 16);
  for (int c = 0; c < nc; c++) {
    const float hh = uni(0.02f, 0.3f), ww = uni(0.02f, 0.3f);
    cl[c * 4 + 0] = uni(0.0f, 1.0f - hh);
    cl[c * 4 + 1] = uni(0.0f, 1.0f - ww);
    cl[c * 4 + 2] = cl[c * 4 + 0] + hh;
    cl[c * 4 + 3] = cl[c * 4 + 1] + ww;
  }
  for (int i = 0; i < n; i++) {
    const float *c = cl + (size_t)uint_below(nc) * 4;
    const float hh = c[2] - c[0], ww = c[3] - c[1];
    float *o = b + (size_t)i * 4;
    o[0] = c[0] + uni(-0.15f, 0.15f) * hh;
    o[1] = c[1] + uni(-0.15f, 0.15f) * ww;
    o[2] = c[2] + uni(-0.15f, 0.15f) * hh;
    o[3] = c[3] + uni(-0.15f, 0.15f) * ww;
    const int kind = uint_below(30);
    if (kind == 0) o[2] = o[0];                                           /* zero area */
    if (kind == 1) { const float t = o[0]; o[0] = o[2]; o[2] = t; }       /* flipped corners */
  }
  free(cl);
  return b;
}

static void t_nms(vdev *v, int n, int max_out, float thr) {
  float *boxes = nms_boxes(n), *s = tied_scores(n, 1000);
  int *ref = xmalloc((size_t)max_out * 4), *got = xmalloc((size_t)max_out * 4);
  void *ws = xmalloc(cx_nms_workspace(n));
  const int cr = CPU->nms(boxes, s, n, max_out, thr, ref, ws);
  free(ws);
  float *db = d_in(v, boxes, (size_t)n * 16), *ds = d_in(v, s, (size_t)n * 4);
  int *dsel = d_out(v, (size_t)max_out * 4);
  void *dws = d_alloc(v, cx_nms_workspace(n));
  double err = NAN;
  int cg = -2;
  if (!d_error(v)) {
    cg = v->be->nms(db, ds, n, max_out, thr, dsel, dws);
    if (!d_fetch(v, got, dsel, (size_t)max_out * 4))
      err = cg != cr ? (double)max_out : mismatch_i(got, ref, (size_t)cr);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%d -> %d thr %.1f (kept %d/%d)", n, max_out, (double)thr, cg, cr);
  report(v, "nms", shape, "mismatch", err, 0.0);
  free(boxes), free(s), free(ref), free(got);
}

/* The proposal layer's batched forms (cuda): nimg images in one segmented top-k / one NMS
 * launch sequence, each image against the CPU's own call on it (exact indices and counts). */
static void t_topk_seg(vdev *v, int nimg, int n, int k) {
  float *s = tied_scores(nimg * n, 50000);
  const int kk = k < n ? k : n;
  int *ref = xmalloc((size_t)nimg * kk * 4), *got = xmalloc((size_t)nimg * kk * 4), *ws = xmalloc((size_t)n * 8);
  for (int b = 0; b < nimg; b++) CPU->topk_stable(s + (size_t)b * n, n, k, ref + (size_t)b * kk, ws);
  free(ws);
  float *ds = d_in(v, s, (size_t)nimg * n * 4);
  int *di = d_out(v, (size_t)nimg * kk * 4);
  double err = NAN;
  if (!d_error(v)) {
    const int kg = cx_cuda_topk_stable_seg(ds, nimg, n, k, di);
    if (!d_fetch(v, got, di, (size_t)nimg * kk * 4)) err = kg != kk ? (double)k : mismatch_i(got, ref, (size_t)nimg * kk);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%d images x %d -> %d (one sort)", nimg, n, k);
  report(v, "topk batched", shape, "mismatch", err, 0.0);
  free(s), free(ref), free(got);
}

static void t_nms_batched(vdev *v, int nimg, int n, int max_out, float thr) {
  float *boxes = xmalloc((size_t)nimg * n * 16), *s = tied_scores(nimg * n, 1000);
  for (int b = 0; b < nimg; b++) { /* each image its own clusters */
    float *bb = nms_boxes(n);
    memcpy(boxes + (size_t)b * n * 4, bb, (size_t)n * 16);
    free(bb);
  }
  int *ref = xmalloc((size_t)nimg * max_out * 4), *got = xmalloc((size_t)nimg * max_out * 4);
  int *cr = xmalloc((size_t)nimg * 4), *cg = xmalloc((size_t)nimg * 4);
  void *ws = xmalloc(cx_nms_workspace(n));
  for (int b = 0; b < nimg; b++)
    cr[b] = CPU->nms(boxes + (size_t)b * n * 4, s + (size_t)b * n, n, max_out, thr, ref + (size_t)b * max_out, ws);
  free(ws);
  float *db = d_in(v, boxes, (size_t)nimg * n * 16), *ds = d_in(v, s, (size_t)nimg * n * 4);
  int *dsel = d_out(v, (size_t)nimg * max_out * 4), *dcount = d_out(v, (size_t)nimg * 4);
  double err = NAN;
  int kept = 0;
  if (!d_error(v) && !cx_cuda_nms_batched_dev(db, ds, nimg, n, max_out, thr, dsel, dcount) &&
      !d_fetch(v, got, dsel, (size_t)nimg * max_out * 4) && !d_fetch(v, cg, dcount, (size_t)nimg * 4)) {
    err = 0.0;
    for (int b = 0; b < nimg; b++) {
      kept += cg[b];
      err += cg[b] != cr[b] ? (double)max_out
                            : mismatch_i(got + (size_t)b * max_out, ref + (size_t)b * max_out, (size_t)cr[b]);
    }
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%d images x %d -> %d thr %.1f (kept %d)", nimg, n, max_out, (double)thr, kept);
  report(v, "nms batched", shape, "mismatch", err, 0.0);
  free(boxes), free(s), free(ref), free(got), free(cr), free(cg);
}

/* The ProposalLayer (cuda): n images of A anchors against model.c's cx_proposal_layer on each,
 * exact (rois bit for bit, zero rows included). Foreground scores with many ties (the stable
 * order of the segmented top-k), anchors in overlapping clusters (zero-area and flipped ones
 * among them), deltas that move boxes past the unit square (the clip). */
static void t_proposals(vdev *v, int n, int A, int pre_nms, int R, double thr) {
  cx_config c;
  cx_config_default(&c);
  c.PRE_NMS_LIMIT = pre_nms;
  c.POST_NMS_ROIS_INFERENCE = R;
  c.RPN_NMS_THRESHOLD = thr;
  const size_t nA = (size_t)n * A;
  float *anchors = nms_boxes(A), *fg = tied_scores((int)nA, 1000), *bbox = rand_f(nA * 4, -2.0f, 2.0f);
  float *probs = xmalloc(nA * 8);
  NEED(bbox);
  for (size_t i = 0; i < nA; i++) probs[i * 2] = 1.0f - fg[i], probs[i * 2 + 1] = fg[i];
  free(fg);
  const int K = pre_nms < A ? pre_nms : A;
  float *ref = xmalloc((size_t)n * R * 16), *got = xmalloc((size_t)n * R * 16);
  cx_prop_scratch sc = {.scores = xmalloc((size_t)A * 4), .topk = xmalloc((size_t)K * 4),
                        .topk_ws = xmalloc((size_t)A * 8), .pre_boxes = xmalloc((size_t)K * 16),
                        .pre_deltas = xmalloc((size_t)K * 16), .pre_scores = xmalloc((size_t)K * 4),
                        .sel = xmalloc((size_t)R * 4), .nms_ws = xmalloc(cx_nms_workspace(K))};
  int kept = 0;
  for (int b = 0; b < n; b++)
    kept += cx_proposal_layer(CPU, &c, A, anchors, probs + (size_t)b * A * 2, bbox + (size_t)b * A * 4, &sc,
                              ref + (size_t)b * R * 4);
  free(sc.scores), free(sc.topk), free(sc.topk_ws), free(sc.pre_boxes), free(sc.pre_deltas), free(sc.pre_scores);
  free(sc.sel), free(sc.nms_ws);
  cx_cuda_props a = {.n = n, .a = A, .pre_nms = pre_nms, .r = R, .nms_thr = (float)thr};
  for (int j = 0; j < 4; j++) a.sd[j] = (float)c.RPN_BBOX_STD_DEV[j];
  a.probs = d_in(v, probs, nA * 8);
  a.bbox = d_in(v, bbox, nA * 16);
  a.anchors = d_in(v, anchors, (size_t)A * 16);
  a.ws = d_alloc(v, cx_cuda_proposals_ws(n, A, pre_nms, R));
  a.rois = d_out(v, (size_t)n * R * 16);
  double err = NAN;
  if (!d_error(v) && !cx_cuda_proposals(&a, NULL, NULL) && !d_fetch(v, got, a.rois, (size_t)n * R * 16)) {
    err = 0.0;
    for (size_t i = 0; i < (size_t)n * R * 4; i++) err += memcmp(got + i, ref + i, 4) != 0;
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%dx%d anchors -> %d -> %d thr %g (kept %d)", n, A, K, R, thr, kept);
  report(v, "proposals", shape, "mismatch", err, 0.0);
  free(anchors), free(probs), free(bbox), free(ref), free(got);
}

/* The DetectionLayer (cuda): n images of R rois against model.c's cx_detection_layer on each,
 * exact (det rows bit for bit, counts). Inputs that exercise its rules: rois in overlapping
 * clusters (zero-area and flipped boxes among them), a few dominant classes so that classes
 * hold more than D members, scores on a coarse grid (ties: the stable order), argmax ties
 * between classes (the first wins), background rows, windows that clip, box pairs of IoU
 * exactly 0.5, scores exactly at the confidence threshold. R above 1694 runs
 * class_nms from global memory instead of shared memory, above 6144 det_finalize too. */
static void t_detection(vdev *v, int n, int R, int NC, int D, double min_conf, double thr) {
  cx_config c;
  cx_config_default(&c);
  c.POST_NMS_ROIS_INFERENCE = R;
  c.DETECTION_MAX_INSTANCES = D;
  c.DETECTION_MIN_CONFIDENCE = min_conf;
  c.DETECTION_NMS_THRESHOLD = thr;
  const size_t nR = (size_t)n * R;
  float *rois = xmalloc(nR * 16), *probs = xmalloc(nR * NC * 4), *deltas = rand_f(nR * NC * 4, -1.0f, 1.0f);
  float *win = xmalloc((size_t)n * 16);
  NEED(deltas);
  const int hot[3] = {1 + uint_below(NC - 1), 1 + uint_below(NC - 1), 1 + uint_below(NC - 1)};
  for (int b = 0; b < n; b++) {
    float *bb = nms_boxes(R);
    memcpy(rois + (size_t)b * R * 4, bb, (size_t)R * 16);
    free(bb);
    const float w[4] = {0.04f * (float)b, 0.1f, 1.0f - 0.05f * (float)b, 0.93f};
    memcpy(win + b * 4, w, 16);
  }
  for (size_t i = 0; i < nR; i++) {
    float *pr = probs + i * NC;
    for (int k = 0; k < NC; k++) pr[k] = (float)uint_below(16) / 512.0f;
    const int kind = uint_below(10);
    const int k = kind == 0 ? 0 : kind < 7 ? hot[uint_below(3)] : uint_below(NC);
    const float top = 0.25f + (float)uint_below(48) / 64.0f; /* [0.25, 0.98]: ties across rows */
    pr[k] = top;
    if (uint_below(20) == 0 && k > 1) pr[uint_below(k)] = top; /* an earlier class ties: it wins */
  }
  /* IoU exactly 0.5 (dyadic boxes, zero deltas: refined exactly): 5 pairs per image, the
   * best-scoring rows of a hot class; at DETECTION_NMS_THRESHOLD 0.5 the second box stays */
  for (int b = 0; b < n && R >= 10; b++)
    for (int q = 0; q < 10; q++) {
      const size_t i = (size_t)b * R + q;
      const float lo = 0.125f * (float)(1 + q / 2), hi = lo + 0.125f;
      const float box[4] = {lo, lo, hi, q % 2 ? lo + 0.0625f : hi};
      memcpy(rois + i * 4, box, 16);
      memset(deltas + i * NC * 4, 0, (size_t)NC * 16);
      for (int k = 0; k < NC; k++) probs[i * NC + k] = 0.0f;
      probs[i * NC + hot[0]] = 0.999f - 0.001f * (float)q;
    }
  float *ref = xmalloc((size_t)n * D * 24), *got = xmalloc((size_t)n * D * 24);
  int *cref = xmalloc((size_t)n * 4), *cgot = xmalloc((size_t)n * 4);
  cx_det_scratch sc = {.cls = xmalloc((size_t)R * 4), .scores = xmalloc((size_t)R * 4),
                       .refined = xmalloc((size_t)R * 16), .boxes = xmalloc((size_t)R * 16),
                       .idx = xmalloc((size_t)R * 4), .idx_scores = xmalloc((size_t)R * 4),
                       .keep = xmalloc((size_t)R * 16), .sel = xmalloc((size_t)R * 4),
                       .nms_ws = xmalloc(cx_nms_workspace(R))};
  int kept = 0;
  for (int b = 0; b < n; b++) {
    cref[b] = cx_detection_layer(CPU, &c, NC, rois + (size_t)b * R * 4, probs + (size_t)b * R * NC,
                                 deltas + (size_t)b * R * NC * 4, win + b * 4, &sc, ref + (size_t)b * D * 6);
    kept += cref[b];
  }
  free(sc.cls), free(sc.scores), free(sc.refined), free(sc.boxes), free(sc.idx), free(sc.idx_scores);
  free(sc.keep), free(sc.sel), free(sc.nms_ws);
  cx_cuda_det a = {.n = n, .r = R, .nc = NC, .max_out = D, .use_min = min_conf != 0, .min_conf = (float)min_conf,
                   .nms_thr = (float)thr};
  for (int j = 0; j < 4; j++) a.sd[j] = (float)c.BBOX_STD_DEV[j];
  a.rois = d_in(v, rois, nR * 16);
  a.probs = d_in(v, probs, nR * NC * 4);
  a.deltas = d_in(v, deltas, nR * NC * 16);
  a.windows = d_in(v, win, (size_t)n * 16);
  a.ws = d_alloc(v, cx_cuda_detection_ws(n, R, NC));
  a.det = d_out(v, (size_t)n * D * 24);
  a.det_count = d_out(v, (size_t)n * 4);
  double err = NAN;
  if (!d_error(v) && !cx_cuda_detection(&a, NULL, NULL) && !d_fetch(v, got, a.det, (size_t)n * D * 24) &&
      !d_fetch(v, cgot, a.det_count, (size_t)n * 4)) {
    err = mismatch_i(cgot, cref, (size_t)n) * D; /* a wrong count weighs a whole image */
    for (size_t i = 0; i < (size_t)n * D * 6; i++) err += memcmp(got + i, ref + i, 4) != 0;
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%dx%d rois %d cls -> %d min %g thr %g (kept %d)", n, R, NC, D, min_conf, thr,
           kept);
  report(v, "detection", shape, "mismatch", err, 0.0);
  free(rois), free(probs), free(deltas), free(win), free(ref), free(got), free(cref), free(cgot);
}

static void t_resize_u8(vdev *v, int ih, int iw, int c, int oh, int ow) {
  const size_t ni = (size_t)ih * iw * c, no = (size_t)oh * ow * c;
  uint8_t *in = xmalloc(ni), *ref = xmalloc(no), *got = xmalloc(no);
  for (size_t i = 0; i < ni; i++) in[i] = (uint8_t)(10 + uint_below(191)); /* [10, 200]: 255 = poison */
  CPU->resize_u8(in, ih, iw, c, oh, ow, ref);
  uint8_t *di = d_in(v, in, ni), *dout = d_out(v, no);
  double err = NAN;
  if (!d_error(v)) {
    v->be->resize_u8(di, ih, iw, c, oh, ow, dout);
    if (!d_fetch(v, got, dout, no)) {
      size_t bad = 0;
      for (size_t i = 0; i < no; i++) bad += got[i] != ref[i];
      err = (double)bad;
    }
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%dx%dx%d -> %dx%d", ih, iw, c, oh, ow);
  report(v, "resize_u8", shape, "mismatch", err, 0.0);
  free(in), free(ref), free(got);
}

/* The GPU graph's molding (cx_gpu_submit): the uint8 image resized on the device with its own
 * min/max buffer, then cx_cuda_mold's canvas, against model.c's cx_mold_image (exact) under the
 * settings `kv` (NULL: the defaults, square 800/1024) */
static void t_mold(vdev *v, int ih, int iw, const char *kv) {
  cx_config c;
  cx_err e;
  cx_config_default(&c);
  cx_mold_info mi;
  if ((kv && cx_config_set_kv(&c, kv, &e)) || cx_mold_geometry(&c, ih, iw, &mi, &e)) {
    printf("mold: %s\n", e.msg);
    report(v, "mold", "(bad settings)", "max_abs", NAN, 0.0);
    return;
  }
  const size_t ni = (size_t)ih * iw * 3, nr = (size_t)mi.rh * mi.rw * 3, no = (size_t)mi.H * mi.W * 3;
  uint8_t *img = xmalloc(ni), *rs = xmalloc(nr);
  for (size_t i = 0; i < ni; i++) img[i] = (uint8_t)(5 + uint_below(246));
  float *ref = xmalloc(no * 4), *got = xmalloc(no * 4);
  const cx_image im = {iw, ih, img};
  cx_mold_image(CPU, &c, &im, &mi, rs, ref);
  const int resize = mi.rh != ih || mi.rw != iw;
  uint8_t *di = d_in(v, img, ni), *drs = d_out(v, nr);
  double *drange = d_out(v, 2 * sizeof(double));
  float *dout = d_out(v, no * 4);
  double err = NAN;
  if (!d_error(v)) {
    const uint8_t *src = di;
    if (resize) {
      cx_cuda_resize_u8_ranged(di, ih, iw, 3, mi.rh, mi.rw, drs, drange);
      src = drs;
    }
    cx_cuda_mold(src, mi.rh, mi.rw, mi.H, mi.W, mi.window[0], mi.window[1], c.MEAN_PIXEL, dout);
    if (!d_fetch(v, got, dout, no * 4)) err = max_abs_f(got, ref, no);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%dx%d -> %dx%d in %dx%d%s%s", iw, ih, mi.rw, mi.rh, mi.W, mi.H, kv ? " " : "",
           kv ? kv : "");
  report(v, "mold", shape, "max_abs", err, 0.0);
  free(img), free(rs), free(ref), free(got);
}

static void t_resize_mask(vdev *v, int ih, int iw, int oh, int ow) {
  const size_t ni = (size_t)ih * iw, no = (size_t)oh * ow;
  float *in = rand_f(ni, 0.001f, 0.999f);
  NEED(in);
  double *ref = xmalloc(no * 8), *got = xmalloc(no * 8);
  CPU->resize_mask(in, ih, iw, oh, ow, ref);
  float *di = d_in(v, in, ni * 4);
  double *dout = d_out(v, no * 8);
  double err = NAN;
  if (!d_error(v)) {
    v->be->resize_mask(di, ih, iw, oh, ow, dout);
    if (!d_fetch(v, got, dout, no * 8)) err = max_abs_d(got, ref, no);
  }
  char shape[128];
  snprintf(shape, sizeof shape, "%dx%d -> %dx%d (double)", ih, iw, oh, ow);
  report(v, "resize_mask", shape, "max_abs", err, 0.0);
  free(in), free(ref), free(got);
}

/* ---- driver ---------------------------------------------------------------------------------- */
/* ---- whole model: CPU graph vs GPU graph at detection level ----------------------------- */

static double pix_iou(const int32_t *a, const int32_t *b) {
  const double iy = fmax(fmin(a[2], b[2]) - fmax(a[0], b[0]), 0), ix = fmax(fmin(a[3], b[3]) - fmax(a[1], b[1]), 0);
  const double inter = iy * ix;
  const double uni = (double)(a[2] - a[0]) * (a[3] - a[1]) + (double)(b[2] - b[0]) * (b[3] - b[1]) - inter;
  return uni > 0 ? inter / uni : 0.0;
}

/* compare.py's compare_detections: returns the reproduced fraction; prints up to 5 misses */
static double compare_dets(const cx_detections *ref, const cx_detections *run) {
  const int n = ref->count;
  if (n == 0) return 1.0;
  const size_t plane = (size_t)ref->height * ref->width;
  char *used = calloc((size_t)(run->count ? run->count : 1), 1);
  if (!used) return 0.0;
  int ok = 0, shown = 0;
  for (int i = 0; i < n; i++) {
    int best = -1;
    double biou = -1, bds = 0;
    for (int j = 0; j < run->count; j++) {
      if (used[j] || run->class_ids[j] != ref->class_ids[i]) continue;
      const double iou = pix_iou(ref->rois + i * 4, run->rois + j * 4);
      const double ds = fabs((double)run->scores[j] - (double)ref->scores[i]);
      if (best < 0 || iou > biou || (iou == biou && ds < bds)) { best = j; biou = iou; bds = ds; }
    }
    if (best < 0) {
      if (shown++ < 5) printf("    detection %d (class %d, score %.4f): no unmatched GPU detection of its class\n", i, ref->class_ids[i], ref->scores[i]);
      continue;
    }
    used[best] = 1;
    long uni = 0, differ = 0;
    if (run->height == ref->height && run->width == ref->width) {
      const uint8_t *a = ref->masks + (size_t)i * plane, *b = run->masks + (size_t)best * plane;
      for (size_t q = 0; q < plane; q++) {
        uni += a[q] || b[q];
        differ += (a[q] != 0) != (b[q] != 0);
      }
    } else {
      differ = 1 << 30;
    }
    const int agree = (double)differ <= fmax(0.05 * (double)uni, 4.0);
    const int good = biou >= 0.95 && bds <= 0.01 && agree;
    ok += good;
    if (!good && shown++ < 5)
      printf("    detection %d (class %d): box IoU %.3f, |dscore| %.3g, mask pixels differing %ld of %ld\n", i,
             ref->class_ids[i], biou, bds, differ, uni);
  }
  free(used);
  return (double)ok / n;
}

/* Whole-model settings: the synthetic image side (and, when not 1280, IMAGE_MIN_DIM/MAX_DIM
 * set to it so that the network really runs at that size), plus --config KEY=VALUE. Smaller
 * runs exist for the CPU emulator build (tests/cuda/emu), where 1280x1280 takes too long. */
static int g_model_size = 1280, g_model_batch = 2;
static const char *g_cfg_kv[16];
static int g_ncfg;

static void model_report(const char *shape, int judged, const char *err, double frac) {
  const int ok = !err && frac >= 0.99;
  if (judged) {
    if (ok) g_pass++;
    else g_fail++;
  }
  if (err)
    printf("%-16s %-46s %-9s %10s %10.2g  %s (%s)\n", "whole_model", shape, "reproduced", "-", 0.99,
           judged ? "FAIL" : "REPORT-ERROR", err);
  else
    printf("%-16s %-46s %-9s %10.4f %10.2g  %s\n", "whole_model", shape, "reproduced", frac, 0.99,
           judged ? (ok ? "PASS" : "FAIL") : (ok ? "REPORT (>= 0.99)" : "REPORT (< 0.99)"));
  fflush(stdout);
}

/* The worst reproduced fraction of a GPU batch whose image i is the CPU's image (i + rot) % B. */
static double worst_of_batch(const cx_detections *refb, const cx_detections *got, int B, int rot, const char *label) {
  double worst = 1.0;
  for (int i = 0; i < B; i++) {
    const double f = compare_dets(&refb[(i + rot) % B], &got[i]);
    if (f < 0.99) printf("    %s image %d: reproduced %.4f\n", label, i, f);
    worst = fmin(worst, f);
  }
  return worst;
}

/* CPU graph vs GPU graph on one image (run twice on the GPU: the second run reuses the plan,
 * so nothing stale may leak between calls), then on a batch of g_model_batch different
 * images (the batched paths of the GPU graph), each compared with the CPU's batch. */
static void t_model(cx_backbone bb) {
  enum { MAXB = 8 };
  char shape[96], bshape[96], pshape[96];
  const int S = g_model_size, B = g_model_batch;
  snprintf(shape, sizeof shape, "%s synth %dx%d seed 0%s", cx_backbone_name(bb), S, S,
           g_ncfg ? " +config" : ", min_conf 0");
  snprintf(bshape, sizeof bshape, "%s batch of %d (seeds 0..%d)", cx_backbone_name(bb), B, B - 1);
  snprintf(pshape, sizeof pshape, "%s pipelined: 3 batches of %d in flight by 2", cx_backbone_name(bb), B);
  const int judged = g_prec == CX_PREC_FP32;
  cx_err e = {{0}};
  cx_config cfg;
  cx_config_default(&cfg);
  cx_tensor_store *store = NULL;
  cx_model *m = NULL;
  uint8_t *img[MAXB] = {0};
  cx_image ims[MAXB];
  cx_detections ref, got, refb[MAXB], gotb[MAXB], gotp[3][MAXB];
  cx_image pims[3][MAXB];
  int have_ref = 0, have_got = 0, have_refb = 0, have_gotb = 0, have_gotp[3] = {0, 0, 0};
  double fracp = 1;
  double t_cpu = 0, t_gpu = 0;
  memset(&ref, 0, sizeof ref);
  memset(&got, 0, sizeof got);
  const char *err = NULL;
  double frac = 0, fracb = 1;
  char side[16];
  snprintf(side, sizeof side, "%d", S);
  if (cx_config_set(&cfg, "DETECTION_MIN_CONFIDENCE", "0", &e) ||
      (S != 1280 && (cx_config_set(&cfg, "IMAGE_MIN_DIM", side, &e) || cx_config_set(&cfg, "IMAGE_MAX_DIM", side, &e)))) {
    err = e.msg;
    goto done;
  }
  for (int i = 0; i < g_ncfg; i++)
    if (cx_config_set_kv(&cfg, g_cfg_kv[i], &e)) {
      err = e.msg;
      goto done;
    }
  if (cx_config_validate(&cfg, &e) || cx_synth_store(bb, cfg.NUM_CLASSES, &store, &e) ||
      cx_model_from_store(store, &cfg, &m, &e)) {
    err = e.msg;
    goto done;
  }
  for (int i = 0; i < B; i++) {
    if (!(img[i] = cx_synth_image(S, S, i, &e))) {
      err = e.msg;
      goto done;
    }
    ims[i] = (cx_image){S, S, img[i]};
  }
  if (cx_detect(m, &ims[0], 1, &ref, &e)) { err = e.msg; goto done; }
  have_ref = 1;
  t_cpu = cx_model_timings(m)->total;
  if (B > 1) {
    if (cx_detect(m, ims, B, refb, &e)) { err = e.msg; goto done; }
    have_refb = 1;
  }
  if (cx_model_set_device(m, g_device, cx_precision_name(g_prec), &e)) { err = e.msg; goto done; }
  for (int r = 0; r < 2; r++) {
    if (have_got) cx_detections_free(&got, 1);
    have_got = 0;
    if (cx_detect(m, &ims[0], 1, &got, &e)) { err = e.msg; goto done; }
    have_got = 1;
  }
  t_gpu = cx_model_timings(m)->total;
  if (B > 1) {
    if (cx_detect(m, ims, B, gotb, &e)) { err = e.msg; goto done; }
    have_gotb = 1;
    /* cx_detect_submit / _collect with two batches in flight: the batch rotated by k, so each
     * batch's images differ from its neighbours' (a batch reading another's slot shows) */
    for (int k = 0; k < 3; k++)
      for (int i = 0; i < B; i++) pims[k][i] = ims[(i + k) % B];
    if (cx_detect_submit(m, pims[0], B, &e) || cx_detect_submit(m, pims[1], B, &e)) { err = e.msg; goto done; }
    for (int k = 0; k < 3; k++) {
      if (cx_detect_collect(m, B, gotp[k], &e)) { err = e.msg; goto done; }
      have_gotp[k] = 1;
      if (k == 0 && cx_detect_submit(m, pims[2], B, &e)) { err = e.msg; goto done; }
    }
  }
done:
  if (!err) {
    printf("  %s: CPU %d detections (%.0f ms), GPU %d detections (%.1f ms)\n", cx_backbone_name(bb), ref.count, t_cpu,
           got.count, t_gpu);
    frac = compare_dets(&ref, &got);
    if (have_gotb) fracb = worst_of_batch(refb, gotb, B, 0, "batch");
    for (int k = 0; k < 3; k++) {
      char label[32];
      snprintf(label, sizeof label, "pipelined batch %d", k);
      if (have_gotp[k]) fracp = fmin(fracp, worst_of_batch(refb, gotp[k], B, k, label));
    }
  }
  model_report(shape, judged, err, frac);
  if (B > 1) model_report(bshape, judged, err, fracb);
  if (B > 1) model_report(pshape, judged, err, fracp);
  if (have_ref) cx_detections_free(&ref, 1);
  if (have_got) cx_detections_free(&got, 1);
  if (have_refb) cx_detections_free(refb, B);
  if (have_gotb) cx_detections_free(gotb, B);
  for (int k = 0; k < 3; k++)
    if (have_gotp[k]) cx_detections_free(gotp[k], B);
  cx_model_free(m); /* frees its GPU state too */
  for (int i = 0; i < B; i++) free(img[i]);
  cx_cuda_clear_error();
}

static const char *g_only;
static int want(const char *op) { return !g_only || strstr(op, g_only) != NULL; }

static void usage(FILE *f) {
  fprintf(f,
          "usage: ctxdiff validate [--device cuda|cuda:N|cpu] [--precision fp32|fp16|bf16] [--op NAME] [--seed N]\n"
          "                        [--model-size N] [--model-batch B] [--config KEY=VALUE]...\n"
          "  Runs every op of the backend at Mask R-CNN shapes on random inputs and compares with the\n"
          "  CPU backend; prints op, shape, metric, error, tolerance, PASS/FAIL.\n"
          "  --device cuda (default)  the CUDA kernels on GPU 0, cuda:N on GPU N (exit 77 when no CUDA device is present)\n"
          "  --device cpu             the CPU backend against itself (harness self-check)\n"
          "  --precision              arithmetic of the GEMM ops on CUDA (default fp32, strict, no TF32)\n"
          "  --op NAME                only ops whose name contains NAME ('model': the whole-model check only)\n"
          "  --model-size N           whole-model check on an NxN synthetic image with IMAGE_MIN_DIM =\n"
          "                           IMAGE_MAX_DIM = N (default 1280, the matterport defaults)\n"
          "  --model-batch B          also compare a batch of B different images (1..8, default 2; 1: off)\n"
          "  --config KEY=VALUE       matterport config override for the whole-model check (repeatable)\n"
          "exit status: 0 all pass, 1 a failure, 2 usage, 77 no CUDA device\n");
}

int cx_cmd_validate(int argc, char **argv) {
  const char *device = "cuda";
  int dev_index = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--device") && val) {
      device = val, i++;
    } else if (!strcmp(a, "--precision") && val) {
      if (!strcmp(val, "fp32")) g_prec = CX_PREC_FP32;
      else if (!strcmp(val, "fp16")) g_prec = CX_PREC_FP16;
      else if (!strcmp(val, "bf16")) g_prec = CX_PREC_BF16;
      else {
        fprintf(stderr, "ctxdiff validate: unknown precision '%s' (fp32, fp16, bf16)\n", val);
        return 2;
      }
      i++;
    } else if (!strcmp(a, "--op") && val) {
      g_only = val, i++;
    } else if (!strcmp(a, "--model-size") && val) {
      char *end;
      const long v = strtol(val, &end, 10);
      if (*end || v < 64 || v > 4096 || v % 64) {
        fprintf(stderr, "ctxdiff validate: --model-size must be a multiple of 64 in 64..4096, got '%s'\n", val);
        return 2;
      }
      g_model_size = (int)v, i++;
    } else if (!strcmp(a, "--model-batch") && val) {
      char *end;
      const long v = strtol(val, &end, 10);
      if (*end || v < 1 || v > 8) {
        fprintf(stderr, "ctxdiff validate: --model-batch must be 1..8, got '%s'\n", val);
        return 2;
      }
      g_model_batch = (int)v, i++;
    } else if (!strcmp(a, "--config") && val) {
      if (g_ncfg == (int)(sizeof g_cfg_kv / sizeof g_cfg_kv[0]) || !strchr(val, '=')) {
        fprintf(stderr, "ctxdiff validate: --config takes KEY=VALUE (at most 16), got '%s'\n", val);
        return 2;
      }
      g_cfg_kv[g_ncfg++] = val, i++;
    } else if (!strcmp(a, "--seed") && val) {
      g_rng = strtoull(val, NULL, 0), i++;
    } else {
      fprintf(stderr, "ctxdiff validate: unknown or incomplete option '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }

  CPU = cx_backend_cpu();
  vdev v;
  memset(&v, 0, sizeof v);
  cx_err de;
  const int kind = cx_device_parse(device, &dev_index, &de);
  if (kind < 0) {
    fprintf(stderr, "ctxdiff validate: %s\n", de.msg);
    return 2;
  }
  if (kind == 1) {
    const int ndev = cx_cuda_device_count();
    if (ndev <= 0) {
      fprintf(stderr, "ctxdiff validate: no CUDA device (no GPU or no driver on this machine) - skipped\n");
      return VAL_SKIP;
    }
    if (cx_cuda_init(dev_index)) {
      fprintf(stderr, "ctxdiff validate: cannot use CUDA device %d: %s\n", dev_index, cx_cuda_last_error());
      return 1;
    }
    g_device = device;
    cx_cuda_set_precision(g_prec);
    v.name = "cuda";
    v.is_cuda = 1;
    v.be = cx_backend_cuda();
    printf("ctxdiff validate: device cuda:%d %s, GEMM precision %s, reference cpu backend\n", dev_index,
           cx_cuda_device_name(), cx_precision_name(g_prec));
  } else {
    if (g_prec != CX_PREC_FP32) {
      fprintf(stderr, "ctxdiff validate: --precision applies to --device cuda only\n");
      return 2;
    }
    v.name = "cpu";
    v.be = cx_backend_cpu();
    printf("ctxdiff validate: device cpu (self-check of the harness: CPU backend vs itself)\n");
  }
  printf("%-16s %-46s %-9s %10s %10s  %s\n", "op", "shape", "metric", "error", "tol", "result");

  if (want("conv2d")) {
    t_conv(&v, "3x3 SAME", 1, 64, 64, 256, 256, 3, 1, 1, 0, 0, 1);
    t_conv(&v, "stem 7x7/2 pad3", 1, 512, 512, 3, 64, 7, 2, 0, 3, 0, 1);
    t_conv(&v, "1x1/2 VALID", 1, 64, 64, 256, 512, 1, 2, 0, 0, 0, 0);
    t_conv(&v, "1x1", 1, 32, 32, 1024, 256, 1, 1, 0, 0, 1, 1);
    t_conv(&v, "mask 3x3", 25, 14, 14, 256, 256, 3, 1, 1, 0, 0, 1);
    t_conv(&v, "cls 7x7 VALID", 200, 7, 7, 256, 1024, 7, 1, 0, 0, 0, 1);
    t_conv(&v, "odd 3x3/2 SAME", 2, 33, 35, 13, 37, 3, 2, 1, 0, 1, 1);
    t_conv(&v, "odd 1x1", 2, 5, 7, 70, 130, 1, 1, 0, 0, 1, 0);
    if (g_prec == CX_PREC_FP32) { /* 16-bit precisions keep the direct kernels */
      /* 256 tiles and more: the batched GEMM on v2; fewer: v1; odd channel counts: the scalar
       * gathers; sizes not a multiple of 4: partial edge tiles */
      t_conv_wino(&v, "winograd 3x3 SAME", 4, 1, 64, 64, 256, 256, 0, 1);
      t_conv_wino(&v, "winograd 3x3 SAME", 4, 1, 64, 64, 256, 256, 1, 1);
      t_conv_wino(&v, "winograd mask", 4, 25, 14, 14, 256, 256, 0, 1);
      t_conv_wino(&v, "winograd odd", 4, 2, 33, 35, 13, 37, 1, 1);
      t_conv_wino(&v, "winograd odd", 4, 1, 70, 66, 13, 37, 1, 0);
      t_conv_wino(&v, "winograd res5", 4, 1, 9, 7, 512, 512, 0, 1);
      t_conv_wino(&v, "winograd2 odd", 2, 2, 33, 35, 13, 37, 1, 1);
      /* as the model's layers: both forms (under CTXDIFF_CUDA_CONV=tune the faster is timed and kept) */
      conv_case(&v, "winograd+direct", 2, 24, 20, 64, 64, 3, 1, 1, 0, 1, 1, (conv_opt){.wino = 4, .both = 1});
      if (v.is_cuda)
        conv_case(&v, "winograd+direct mask", 8, 14, 14, 64, 64, 3, 1, 1, 0, 0, 1,
                  (conv_opt){.wino = 4, .both = 1, .live_on = 1, .live = 3});
    }
    if (v.is_cuda && g_prec != CX_PREC_FP32) {
      /* 16-bit models' weights (converted once at load): every kernel variant that reads them */
      conv_case(&v, "3x3 SAME", 1, 64, 64, 256, 256, 3, 1, 1, 0, 0, 1, (conv_opt){.w16 = 1});
      conv_case(&v, "1x1", 1, 32, 32, 1024, 256, 1, 1, 0, 0, 1, 1, (conv_opt){.w16 = 1});
      conv_case(&v, "odd 3x3/2 SAME", 2, 33, 35, 13, 37, 3, 2, 1, 0, 1, 1, (conv_opt){.w16 = 1});
      conv_case(&v, "small (v1)", 1, 9, 9, 32, 40, 3, 1, 1, 0, 0, 1, (conv_opt){.w16 = 1});
      conv_case(&v, "mask out", 2, 28, 28, 256, 81, 1, 1, 0, 0, 0, 0, (conv_opt){.w16 = 1}); /* scalar 16-bit B */
      conv_case(&v, "mask", 8, 14, 14, 256, 256, 3, 1, 1, 0, 0, 1, (conv_opt){.live_on = 1, .live = 3, .w16 = 1});
      /* 16-bit activations (the feature maps' layout since v2.3): in and out, residual, in only (the
       * FPN laterals), 64-wide tiles with a small M (v2 regardless), split-K with a 16-bit store */
      conv_case(&v, "3x3 SAME", 1, 64, 64, 256, 256, 3, 1, 1, 0, 0, 1, (conv_opt){.a16 = 1, .o16 = 1});
      conv_case(&v, "1x1", 1, 32, 32, 1024, 256, 1, 1, 0, 0, 1, 1, (conv_opt){.a16 = 1, .o16 = 1});
      conv_case(&v, "1x1/2 VALID", 1, 64, 64, 256, 512, 1, 2, 0, 0, 0, 0, (conv_opt){.a16 = 1});
      conv_case(&v, "small 3x3 SAME", 2, 7, 9, 16, 36, 3, 1, 1, 0, 1, 1, (conv_opt){.a16 = 1, .o16 = 1});
      t_conv_split(&v, 3, "1x1", 1, 32, 32, 1024, 256, 1, 1, 0, 0, 1, 1, (conv_opt){.a16 = 1, .o16 = 1});
      conv_case(&v, "fp32 in, 3x3 SAME", 1, 32, 32, 256, 512, 3, 1, 1, 0, 0, 1, (conv_opt){.o16 = 1}); /* FPN P */
      /* the rows above with 16-bit inputs and cout % 8 == 0 run v3 (cp.async); the v2 forms too */
      const int setting = cx_cuda_conv_version(); /* the default, or CTXDIFF_CUDA_CONV's */
      cx_cuda_set_conv_version(2);
      conv_case(&v, "v2 forced: 3x3 SAME", 1, 64, 64, 256, 256, 3, 1, 1, 0, 1, 1, (conv_opt){.a16 = 1, .o16 = 1});
      t_conv_split(&v, 3, "v2 forced: 1x1", 1, 32, 32, 1024, 256, 1, 1, 0, 0, 1, 1, (conv_opt){.a16 = 1});
      cx_cuda_set_conv_version(setting);
      /* v4 (opt-in): v3 with 256 x 128 tiles of 64 x 64 warp tiles; v5 (opt-in, sm_90a): wgmma
       * from 128-byte-swizzled shared memory; v6: v5 with 128 x 256 tiles; all where unsplit
       * 128-wide v3 runs */
      forced_rows(&v, 4);
      if (cx_cuda_conv_wgmma_available()) {
        forced_rows(&v, 5);
        forced_rows(&v, 6);
      } else {
        printf("  (v5/v6 forced rows skipped: the wgmma kernels need the sm_90a build on a compute capability 9.0 GPU"
               " and CTXDIFF_CUDA_WGMMA not 0)\n");
      }
      conv_case(&v, "rpn class 1x1", 2, 16, 16, 512, 6, 1, 1, 0, 0, 0, 0, (conv_opt){.a16 = 1}); /* scalar out */
      conv_case(&v, "mask", 8, 14, 14, 256, 256, 3, 1, 1, 0, 0, 1, (conv_opt){.live_on = 1, .live = 3, .a16 = 1, .o16 = 1});
    }
    if (v.is_cuda) {
      /* split-K: slices of K in separate blocks, then summed with the epilogue; uneven last
       * slice (3136 = 49 x 64 columns in 3 slices), residual, vector/scalar output, live rows */
      t_conv_split(&v, 3, "cls 7x7 VALID", 300, 7, 7, 64, 128, 7, 1, 0, 0, 0, 1, (conv_opt){0});
      t_conv_split(&v, 4, "1x1", 1, 32, 32, 1024, 256, 1, 1, 0, 0, 1, 1, (conv_opt){0});
      t_conv_split(&v, 2, "odd 3x3 SAME", 2, 15, 17, 32, 36, 3, 1, 1, 0, 1, 1, (conv_opt){0});
      t_conv_split(&v, 5, "mask", 8, 14, 14, 256, 256, 3, 1, 1, 0, 0, 1, (conv_opt){.live_on = 1, .live = 3});
      if (g_prec != CX_PREC_FP32) t_conv_split(&v, 3, "1x1", 1, 32, 32, 1024, 256, 1, 1, 0, 0, 1, 1, (conv_opt){.w16 = 1});
      /* the mask head's device-side row count (cx_cuda_conv2d_live): some, none, more than n */
      conv_case(&v, "mask", 8, 14, 14, 256, 256, 3, 1, 1, 0, 0, 1, (conv_opt){.live_on = 1, .live = 3});
      conv_case(&v, "mask out", 6, 28, 28, 256, 81, 1, 1, 0, 0, 0, 0, (conv_opt){.live_on = 1, .live = 2});
      conv_case(&v, "none", 4, 14, 14, 64, 64, 3, 1, 1, 0, 0, 1, (conv_opt){.live_on = 1, .live = 0});
      conv_case(&v, "all", 3, 14, 14, 64, 64, 3, 1, 1, 0, 0, 1, (conv_opt){.live_on = 1, .live = 7});
      if (g_prec == CX_PREC_FP32) {
        conv_case(&v, "winograd mask", 24, 14, 14, 256, 256, 3, 1, 1, 0, 0, 1, (conv_opt){.wino = 4, .live_on = 1, .live = 9}); /* 144 of 384 GEMM rows */
        conv_case(&v, "winograd none", 4, 14, 14, 64, 64, 3, 1, 1, 0, 0, 1, (conv_opt){.wino = 4, .live_on = 1, .live = 0});
      }
    }
  }
  if (want("dense")) {
    t_dense(&v, 1000, 1024, 1024, 1);
    t_dense(&v, 1000, 1024, 324, 0);
    t_dense(&v, 1000, 1024, 81, 0);
  }
  if (want("maxpool_same")) {
    t_maxpool(&v, 1, 512, 512, 64, 3, 2);
    t_maxpool(&v, 2, 33, 35, 5, 3, 2);
  }
  if (want("subsample2")) {
    t_subsample2(&v, 1, 16, 16, 256);
    t_subsample2(&v, 2, 17, 15, 3);
    if (v.is_cuda && g_prec != CX_PREC_FP32) t_subsample2_16(&v, 2, 17, 15, 256);
  }
  if (want("upsample2_add")) t_upsample(&v, 1, 64, 64, 256);
  if (want("softmax")) {
    t_softmax(&v, 261888, 2); /* one thread per row */
    t_softmax(&v, 1001, 7);
    t_softmax(&v, 1000, 81); /* one warp per row */
    t_softmax(&v, 77, 9);
  }
  if (want("sigmoid")) t_sigmoid(&v, (size_t)100 * 28 * 28 * 81);
  if (want("deconv2x2")) {
    t_deconv(&v, 50, 14, 14, 256, 256, 1, -1, 0);
    t_deconv(&v, 3, 5, 6, 20, 33, 0, -1, 0);
    if (v.is_cuda) t_deconv(&v, 8, 14, 14, 256, 256, 1, 3, 0);
    if (v.is_cuda && g_prec != CX_PREC_FP32) t_deconv(&v, 8, 14, 14, 256, 256, 1, 3, 1);
  }
  if (want("mask_class")) {
    t_mask_class(&v, 100, 256, 81, -1);
    t_mask_class(&v, 5, 300, 7, -1); /* cin past a multiple of 32, few classes */
    if (v.is_cuda) t_mask_class(&v, 24, 256, 81, 9);
  }
  if (want("crop_and_resize")) {
    t_crop(&v, 256, 256, 256, 1000, 7);
    t_crop(&v, 128, 128, 256, 100, 14);
  }
  if (want("pyramid_roi_align") && v.is_cuda) {
    t_pyramid(&v, 0, 0, 2, 64, 300, 7);
    if (g_prec != CX_PREC_FP32) {
      t_pyramid(&v, 1, 0, 2, 64, 300, 14);
      t_pyramid(&v, 1, 1, 2, 64, 300, 7);
    }
  }
  if (want("roi_levels")) {
    t_roi_levels(&v, 1000, 1024, 1024, -1);
    if (v.is_cuda) t_roi_levels(&v, 1000, 1024, 1024, 617);
  }
  if (want("box_deltas")) t_deltas(&v, 6000);
  if (want("clip_boxes")) t_clip(&v, 6000);
  if (want("topk")) {
    t_topk(&v, 261888, 6000);
    t_topk(&v, 1000, 100);
    if (v.is_cuda) {
      t_topk_seg(&v, 3, 65472, 6000); /* 3 segments: 34-bit keys */
      t_topk_seg(&v, 8, 1000, 1000);  /* k = n: whole segments */
    }
  }
  if (want("nms")) {
    t_nms(&v, 6000, 1000, 0.7f);
    t_nms(&v, 1000, 100, 0.3f);
    /* the scan's chunking (64 candidates per word): one partial chunk, exactly two chunks
     * with max_out never reached, heavy suppression, max_out inside the first chunk */
    t_nms(&v, 50, 40, 0.5f);
    t_nms(&v, 128, 128, 0.5f);
    t_nms(&v, 3000, 3000, 0.1f);
    t_nms(&v, 500, 10, 0.7f);
    if (v.is_cuda) {
      t_nms_batched(&v, 3, 6000, 1000, 0.7f);
      t_nms_batched(&v, 5, 130, 40, 0.5f);
    }
  }
  if (want("proposals") && v.is_cuda) {
    t_proposals(&v, 2, 65472, 6000, 1000, 0.7); /* 512x512 images' anchors */
    t_proposals(&v, 3, 5000, 6000, 2000, 0.5);  /* PRE_NMS_LIMIT above A; fewer than R kept */
    t_proposals(&v, 1, 261888, 6000, 1000, 0.7); /* one 1024x1024 image */
  }
  if (want("detection") && v.is_cuda) {
    t_detection(&v, 2, 1000, 81, 100, 0.7, 0.3); /* COCO inference settings */
    t_detection(&v, 3, 1000, 81, 100, 0.0, 0.3); /* no threshold: classes of > D members */
    t_detection(&v, 4, 1000, 81, 100, 0.953125, 0.3); /* fewer than D (zero padding); scores = min */
    t_detection(&v, 2, 2000, 5, 100, 0.5, 0.5);  /* class_nms from global memory */
    t_detection(&v, 1, 7000, 3, 300, 0.0, 0.7);  /* det_finalize from global memory too */
  }
  if (want("resize_u8")) {
    t_resize_u8(&v, 480, 640, 3, 768, 1024);
    t_resize_u8(&v, 1024, 768, 3, 300, 225);
  }
  if (want("mold") && v.is_cuda) {
    t_mold(&v, 480, 640, NULL);                        /* upscaled, padded top and bottom */
    t_mold(&v, 1024, 1024, NULL);                      /* as it is */
    t_mold(&v, 333, 517, "IMAGE_RESIZE_MODE=pad64");   /* upscaled, padded to multiples of 64 */
    t_mold(&v, 1500, 900, "IMAGE_RESIZE_MODE=square"); /* downscaled, padded left and right */
  }
  if (want("resize_mask")) t_resize_mask(&v, 28, 28, 317, 211);

  if (want("model") && v.is_cuda) {
    t_model(CX_BACKBONE_RESNET101);
    t_model(CX_BACKBONE_RESNET50);
  } else if (want("model")) {
    printf("%-16s %-46s %-9s %10s %10s  %s\n", "whole_model", "(GPU graph vs CPU graph)", "-", "-", "-",
           "not run with --device cpu");
  }
  if (g_pass + g_fail == 0 && !(want("model") && v.is_cuda)) {
    fprintf(stderr, "ctxdiff validate: no op matches '%s'\n", g_only ? g_only : "");
    return 2;
  }
  if (v.is_cuda && cx_cuda_conv_version() == 7) { /* CTXDIFF_CUDA_CONV=tune */
    char tac[192];
    cx_cuda_conv_tactics(tac, sizeof tac);
    printf("conv tactics: %s\n", tac);
  }
  printf("\nvalidate %s %s: %d passed, %d failed\n", v.name, cx_precision_name(g_prec), g_pass, g_fail);
  if (v.is_cuda) cx_cuda_release_scratch();
  return g_fail ? 1 : 0;
}

#else
typedef int cx_cmd_validate_needs_cuda; /* keeps the translation unit non-empty */
#endif
