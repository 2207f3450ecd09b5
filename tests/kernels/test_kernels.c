/* test_kernels.c — checks every CPU kernel of kernels/cpu/cpu_kernels.h against reference
 * data written by tests/reference/kernel_ref.py (PyTorch / NumPy / shared/reference/tf_ops.py).
 *
 * Usage: test_kernels DATA_DIR      (DATA_DIR/manifest.txt + DATA_DIR/<case>.<array>.npy)
 *
 * One line per case: op, case name and shape parameters, error, tolerance, PASS/FAIL.
 * Float outputs: error = max |got - ref| / max |ref| (normalised; non-finite reference
 * values must be matched exactly). Discrete outputs (top-k, NMS, levels, anchors, denorm,
 * shapes): error = number of mismatches, tolerance 0. uint8 resize: fraction of +-1
 * differences (rare last-bit cases, spec §3.3), any larger difference fails.
 * Every output buffer is poisoned (NaN / sentinel) before the kernel runs.
 * A few timings at production sizes are printed as information. Exit status non-zero on
 * any failure. */
#include "cpu_kernels.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------
 * minimal .npy reader (little-endian, C order; dtypes f4, f8, i4, u1) */
typedef struct {
  char kind; /* 'f' float32, 'd' float64, 'i' int32, 'u' uint8 */
  int ndim;
  long shape[8];
  size_t count;
  void *data;
} npy;

static const char *g_dir;
static int g_pass, g_fail;

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "test_kernels: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die("out of memory (%zu bytes)", n);
  return p;
}

static npy load(const char *cname, const char *arr) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.%s.npy", g_dir, cname, arr);
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot open %s", path);
  unsigned char pre[10];
  if (fread(pre, 1, 8, f) != 8 || memcmp(pre, "\x93NUMPY", 6) != 0) die("%s: not an .npy file", path);
  size_t hlen;
  if (pre[6] == 1) {
    if (fread(pre + 8, 1, 2, f) != 2) die("%s: short header", path);
    hlen = pre[8] | (size_t)pre[9] << 8;
  } else {
    unsigned char l4[4];
    if (fread(l4, 1, 4, f) != 4) die("%s: short header", path);
    hlen = l4[0] | (size_t)l4[1] << 8 | (size_t)l4[2] << 16 | (size_t)l4[3] << 24;
  }
  char *hdr = xmalloc(hlen + 1);
  if (fread(hdr, 1, hlen, f) != hlen) die("%s: short header", path);
  hdr[hlen] = 0;
  npy a;
  memset(&a, 0, sizeof a);
  size_t esz;
  if (strstr(hdr, "'<f4'")) a.kind = 'f', esz = 4;
  else if (strstr(hdr, "'<f8'")) a.kind = 'd', esz = 8;
  else if (strstr(hdr, "'<i4'")) a.kind = 'i', esz = 4;
  else if (strstr(hdr, "'|u1'")) a.kind = 'u', esz = 1;
  else die("%s: unsupported dtype in %s", path, hdr);
  if (strstr(hdr, "'fortran_order': True")) die("%s: fortran order", path);
  const char *s = strstr(hdr, "'shape': (");
  if (!s) die("%s: no shape", path);
  s += 10;
  a.count = 1;
  while (*s && *s != ')') {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s) break;
    if (a.ndim == 8) die("%s: too many dims", path);
    a.shape[a.ndim++] = v;
    a.count *= (size_t)v;
    s = end;
    while (*s == ',' || *s == ' ') s++;
  }
  free(hdr);
  a.data = xmalloc(a.count * esz);
  if (fread(a.data, esz, a.count, f) != a.count) die("%s: short data", path);
  fclose(f);
  return a;
}

static float *F(npy *a, char kind) {
  if (a->kind != kind) die("dtype mismatch");
  return (float *)a->data;
}

/* ---------------------------------------------------------------------------------------
 * manifest parameters */
typedef struct {
  char op[64], name[128];
  char keys[32][32], vals[32][64];
  int np;
  char desc[256];
} tcase;

static const char *par(const tcase *t, const char *k) {
  for (int i = 0; i < t->np; i++)
    if (!strcmp(t->keys[i], k)) return t->vals[i];
  die("%s: missing parameter %s", t->name, k);
  return NULL;
}
static int geti(const tcase *t, const char *k) { return atoi(par(t, k)); }
static double getd(const tcase *t, const char *k) { return atof(par(t, k)); }

/* ---------------------------------------------------------------------------------------
 * comparison and reporting */
static const char *g_gemm_label = ""; /* "[openblas]" / "[own]" while GEMM ops run */

static void report(const tcase *t, const char *what, double err, double tol, int ok) {
  char label[192];
  snprintf(label, sizeof label, "%s%s", what ? what : t->name, g_gemm_label);
  what = label;
  printf("%-13s %-32s %-44s err %-11.3g tol %-9.3g %s\n", t->op, what ? what : t->name, t->desc, err,
         tol, ok ? "PASS" : "FAIL");
  if (ok) g_pass++;
  else g_fail++;
}

/* normalised max error; a non-finite reference must be matched exactly (NaN by NaN). */
static double err_f32(const float *got, const float *ref, size_t n) {
  double maxref = 0.0, maxd = 0.0;
  for (size_t i = 0; i < n; i++)
    if (isfinite(ref[i]) && fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(ref[i])) {
      if (!(isnan(ref[i]) ? isnan(got[i]) : got[i] == ref[i])) return INFINITY;
      continue;
    }
    if (!isfinite(got[i])) return INFINITY;
    double d = fabs((double)got[i] - (double)ref[i]);
    if (d > maxd) maxd = d;
  }
  return maxref > 0 ? maxd / maxref : maxd;
}

static double err_f64(const double *got, const double *ref, size_t n) {
  double maxref = 0.0, maxd = 0.0;
  for (size_t i = 0; i < n; i++)
    if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(got[i])) return INFINITY;
    double d = fabs(got[i] - ref[i]);
    if (d > maxd) maxd = d;
  }
  return maxref > 0 ? maxd / maxref : maxd;
}

static double mismatches_i32(const int32_t *got, const int32_t *ref, size_t n) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += got[i] != ref[i];
  return (double)bad;
}

static void check_f32(const tcase *t, const char *what, const float *got, const float *ref, size_t n,
                      double tol) {
  double e = err_f32(got, ref, n);
  report(t, what, e, tol, e <= tol);
}

static float *nan_buf(size_t n) {
  float *p = xmalloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = NAN;
  return p;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* GEMM-like float32 accumulation over K terms, normalised by max |ref|. */
static double gemm_tol(int k) { return 4.0 * FLT_EPSILON * sqrt((double)k) + 4.0 * FLT_EPSILON; }

/* ---------------------------------------------------------------------------------------
 * per-op runners */
static void run_conv(tcase *t) {
  const int n = geti(t, "n"), h = geti(t, "h"), w = geti(t, "w"), cin = geti(t, "cin"),
            cout = geti(t, "cout"), k = geti(t, "k"), s = geti(t, "s");
  int pt = geti(t, "pt"), pl = geti(t, "pl"), pb = geti(t, "pb"), pr = geti(t, "pr");
  const int has_res = geti(t, "residual"), relu = geti(t, "relu"), has_b = geti(t, "bias");
  snprintf(t->desc, sizeof t->desc, "n%d %dx%dx%d->%d k%d s%d pad %d,%d,%d,%d%s%s", n, h, w, cin, cout,
           k, s, pt, pl, pb, pr, has_res ? " +res" : "", relu ? " relu" : "");
  if (geti(t, "same")) {
    int a, b, c, d;
    cx_same_pads(h, k, s, &a, &b);
    cx_same_pads(w, k, s, &c, &d);
    const int bad = (a != pt) + (b != pb) + (c != pl) + (d != pr);
    report(t, "cx_same_pads", bad, 0, bad == 0);
  }
  npy x = load(t->name, "x"), kern = load(t->name, "k"), y = load(t->name, "y");
  npy b = {0}, res = {0};
  if (has_b) b = load(t->name, "b");
  if (has_res) res = load(t->name, "res");
  const int ho = cx_conv2d_out(h, k, s, pt, pb), wo = cx_conv2d_out(w, k, s, pl, pr);
  const int shape_bad = (y.shape[1] != ho) + (y.shape[2] != wo);
  report(t, "cx_conv2d_out", shape_bad, 0, shape_bad == 0);
  if (shape_bad) return;
  cx_conv2d_desc d = {k, k, cin, cout, s, pt, pl, pb, pr, F(&kern, 'f'), has_b ? F(&b, 'f') : NULL, NULL, 0, NULL, 0};
  /* im2col path, then (for 3x3 / stride 1 / pad 1) the Winograd path on the same case. */
  float *packed = NULL;
  for (int pass = 0; pass < 3; pass++) { /* im2col, Winograd F(2x2,3x3), Winograd F(4x4,3x3) */
    if (pass > 0) {
      if (!(k == 3 && s == 1 && pt == 1 && pl == 1 && pb == 1 && pr == 1)) break;
      const int tile = pass == 1 ? 2 : 4;
      free(packed);
      packed = nan_buf(cx_winograd_packed_floats(tile, cin, cout));
      cx_winograd_pack(tile, d.kernel, cin, cout, packed);
      d.winograd = packed;
      d.winograd_tile = tile;
      if (!cx_winograd_applies(&d)) { report(t, "winograd not applied", 1, 0, 0); break; }
    }
    size_t wsn = cx_conv2d_workspace(&d, n, h, w);
    float *ws = wsn ? nan_buf(wsn) : NULL;
    float *out = nan_buf(y.count);
    cx_conv2d(&d, F(&x, 'f'), n, h, w, out, has_res ? F(&res, 'f') : NULL, relu, ws);
    char what[160];
    snprintf(what, sizeof what, "%s%s", t->name, pass == 1 ? "[winograd2]" : pass == 2 ? "[winograd4]" : "");
    check_f32(t, what, out, F(&y, 'f'), y.count, gemm_tol(k * k * cin));
    free(out);
    free(ws);
  }
  free(packed);
  free(x.data), free(kern.data), free(y.data), free(b.data), free(res.data);
}

static void run_dense(tcase *t) {
  const int rows = geti(t, "rows"), nin = geti(t, "nin"), nout = geti(t, "nout"), relu = geti(t, "relu");
  const int has_b = geti(t, "bias");
  snprintf(t->desc, sizeof t->desc, "%dx%d * %dx%d%s", rows, nin, nin, nout, relu ? " relu" : "");
  npy x = load(t->name, "x"), k = load(t->name, "k"), y = load(t->name, "y"), b = {0};
  if (has_b) b = load(t->name, "b");
  float *out = nan_buf(y.count);
  cx_dense(F(&x, 'f'), rows, nin, F(&k, 'f'), has_b ? F(&b, 'f') : NULL, nout, relu, out);
  check_f32(t, NULL, out, F(&y, 'f'), y.count, gemm_tol(nin));
  free(out), free(x.data), free(k.data), free(y.data), free(b.data);
}

static void run_maxpool(tcase *t) {
  const int n = geti(t, "n"), h = geti(t, "h"), w = geti(t, "w"), c = geti(t, "c"), k = geti(t, "k"),
            s = geti(t, "s");
  snprintf(t->desc, sizeof t->desc, "n%d %dx%dx%d k%d s%d", n, h, w, c, k, s);
  npy x = load(t->name, "x"), y = load(t->name, "y");
  float *out = nan_buf(y.count);
  cx_maxpool_same(F(&x, 'f'), n, h, w, c, k, s, out);
  check_f32(t, NULL, out, F(&y, 'f'), y.count, 0.0);
  free(out), free(x.data), free(y.data);
}

static void run_subsample2(tcase *t) {
  const int n = geti(t, "n"), h = geti(t, "h"), w = geti(t, "w"), c = geti(t, "c");
  snprintf(t->desc, sizeof t->desc, "n%d %dx%dx%d", n, h, w, c);
  npy x = load(t->name, "x"), y = load(t->name, "y");
  float *out = nan_buf(y.count);
  cx_subsample2(F(&x, 'f'), n, h, w, c, out);
  check_f32(t, NULL, out, F(&y, 'f'), y.count, 0.0);
  free(out), free(x.data), free(y.data);
}

static void run_unary(tcase *t, int sig) {
  const size_t count = (size_t)geti(t, "count");
  snprintf(t->desc, sizeof t->desc, "%zu", count);
  npy x = load(t->name, "x"), y = load(t->name, "y");
  float *buf = xmalloc(count * sizeof(float));
  memcpy(buf, x.data, count * sizeof(float));
  if (sig) cx_sigmoid(buf, count);
  else cx_relu(buf, count);
  check_f32(t, NULL, buf, F(&y, 'f'), count, sig ? 4.0 * FLT_EPSILON : 0.0);
  free(buf), free(x.data), free(y.data);
}

static void run_upsample(tcase *t) {
  const int n = geti(t, "n"), h = geti(t, "h"), w = geti(t, "w"), c = geti(t, "c");
  snprintf(t->desc, sizeof t->desc, "n%d %dx%dx%d -> %dx%d", n, h, w, c, 2 * h, 2 * w);
  npy x = load(t->name, "x"), yin = load(t->name, "yin"), y = load(t->name, "y");
  float *buf = xmalloc(y.count * sizeof(float));
  memcpy(buf, yin.data, y.count * sizeof(float));
  cx_upsample2_add(F(&x, 'f'), n, h, w, c, buf);
  check_f32(t, NULL, buf, F(&y, 'f'), y.count, 0.0);
  free(buf), free(x.data), free(yin.data), free(y.data);
}

static void run_softmax(tcase *t) {
  const int rows = geti(t, "rows"), cols = geti(t, "cols");
  snprintf(t->desc, sizeof t->desc, "%dx%d", rows, cols);
  npy x = load(t->name, "x"), y = load(t->name, "y");
  float *out = nan_buf(y.count);
  cx_softmax_rows(F(&x, 'f'), (size_t)rows, cols, out);
  check_f32(t, NULL, out, F(&y, 'f'), y.count, 4.0 * FLT_EPSILON);
  memcpy(out, x.data, y.count * sizeof(float)); /* in place (y == x) */
  cx_softmax_rows(out, (size_t)rows, cols, out);
  check_f32(t, "(in place)", out, F(&y, 'f'), y.count, 4.0 * FLT_EPSILON);
  free(out), free(x.data), free(y.data);
}

static void run_bn(tcase *t) {
  const int c = geti(t, "c");
  const float eps = (float)getd(t, "eps");
  snprintf(t->desc, sizeof t->desc, "c%d eps %g", c, (double)eps);
  npy g = load(t->name, "gamma"), b = load(t->name, "beta"), m = load(t->name, "mean"),
      v = load(t->name, "var"), inv = load(t->name, "inv"), sh = load(t->name, "shift");
  float *oi = nan_buf(c), *os = nan_buf(c);
  cx_bn_coeffs(F(&g, 'f'), F(&b, 'f'), F(&m, 'f'), F(&v, 'f'), c, eps, oi, os);
  check_f32(t, "bn inv", oi, F(&inv, 'f'), c, 2.0 * FLT_EPSILON);
  check_f32(t, "bn shift", os, F(&sh, 'f'), c, 4.0 * FLT_EPSILON);
  free(oi), free(os), free(g.data), free(b.data), free(m.data), free(v.data), free(inv.data), free(sh.data);
}

static void run_deconv(tcase *t) {
  const int n = geti(t, "n"), h = geti(t, "h"), w = geti(t, "w"), cin = geti(t, "cin"),
            cout = geti(t, "cout"), relu = geti(t, "relu");
  snprintf(t->desc, sizeof t->desc, "n%d %dx%dx%d -> %dx%dx%d%s", n, h, w, cin, 2 * h, 2 * w, cout,
           relu ? " relu" : "");
  npy x = load(t->name, "x"), k = load(t->name, "k"), b = load(t->name, "b"), y = load(t->name, "y");
  float *packed = nan_buf((size_t)cin * 4 * cout);
  float *ws = nan_buf((size_t)n * h * w * 4 * cout);
  float *out = nan_buf(y.count);
  cx_deconv2x2_pack(F(&k, 'f'), cin, cout, packed);
  cx_deconv2x2(F(&x, 'f'), n, h, w, cin, packed, F(&b, 'f'), cout, relu, out, ws);
  check_f32(t, NULL, out, F(&y, 'f'), y.count, gemm_tol(cin));
  free(packed), free(ws), free(out), free(x.data), free(k.data), free(b.data), free(y.data);
}

static void run_mask_class(tcase *t) {
  const int rows = geti(t, "rows"), pix = geti(t, "pix"), cin = geti(t, "cin"), nc = geti(t, "nc");
  snprintf(t->desc, sizeof t->desc, "%dx%dx%d, %d classes", rows, pix, cin, nc);
  npy x = load(t->name, "x"), k = load(t->name, "k"), b = load(t->name, "b"), cls = load(t->name, "cls"),
      y = load(t->name, "y");
  float *out = nan_buf(y.count);
  cx_mask_class_sigmoid(F(&x, 'f'), rows, pix, cin, F(&k, 'f'), F(&b, 'f'), nc, (const int *)cls.data, out);
  check_f32(t, NULL, out, F(&y, 'f'), y.count, gemm_tol(cin));
  free(out), free(x.data), free(k.data), free(b.data), free(cls.data), free(y.data);
}

static void run_crop(tcase *t) {
  const int hf = geti(t, "hf"), wf = geti(t, "wf"), c = geti(t, "c"), nb = geti(t, "nb"),
            ph = geti(t, "ph"), pw = geti(t, "pw");
  snprintf(t->desc, sizeof t->desc, "%dx%dx%d, %d boxes -> %dx%d", hf, wf, c, nb, ph, pw);
  npy feat = load(t->name, "feat"), boxes = load(t->name, "boxes"), y = load(t->name, "y");
  float *out = nan_buf(y.count);
  cx_crop_and_resize(F(&feat, 'f'), hf, wf, c, F(&boxes, 'f'), nb, ph, pw, out);
  check_f32(t, NULL, out, F(&y, 'f'), y.count, 0.0); /* exact float32 arithmetic */
  free(out), free(feat.data), free(boxes.data), free(y.data);
}

static void run_levels(tcase *t) {
  const int nb = geti(t, "nb"), ih = geti(t, "ih"), iw = geti(t, "iw");
  snprintf(t->desc, sizeof t->desc, "%d boxes, image %dx%d", nb, ih, iw);
  npy boxes = load(t->name, "boxes"), lv = load(t->name, "levels");
  int *out = xmalloc((size_t)nb * sizeof(int));
  for (int i = 0; i < nb; i++) out[i] = -1;
  cx_roi_levels(F(&boxes, 'f'), nb, ih, iw, out);
  const double bad = mismatches_i32(out, (const int32_t *)lv.data, (size_t)nb);
  report(t, NULL, bad, 0, bad == 0);
  free(out), free(boxes.data), free(lv.data);
}

static void run_box_deltas(tcase *t) {
  const int nb = geti(t, "nb");
  snprintf(t->desc, sizeof t->desc, "%d boxes", nb);
  npy boxes = load(t->name, "boxes"), dl = load(t->name, "deltas"), y = load(t->name, "y");
  float *out = nan_buf(y.count);
  cx_apply_box_deltas(F(&boxes, 'f'), F(&dl, 'f'), nb, out);
  check_f32(t, NULL, out, F(&y, 'f'), y.count, 4.0 * FLT_EPSILON);
  memcpy(out, boxes.data, y.count * sizeof(float));
  cx_apply_box_deltas(out, F(&dl, 'f'), nb, out);
  check_f32(t, "(in place)", out, F(&y, 'f'), y.count, 4.0 * FLT_EPSILON);
  free(out), free(boxes.data), free(dl.data), free(y.data);
}

static void run_clip(tcase *t) {
  const int nb = geti(t, "nb");
  npy boxes = load(t->name, "boxes"), win = load(t->name, "window"), y = load(t->name, "y");
  const float *wv = F(&win, 'f');
  snprintf(t->desc, sizeof t->desc, "%d boxes, window %g,%g,%g,%g", nb, wv[0], wv[1], wv[2], wv[3]);
  cx_clip_boxes(F(&boxes, 'f'), nb, wv);
  check_f32(t, NULL, F(&boxes, 'f'), F(&y, 'f'), y.count, 0.0);
  free(boxes.data), free(win.data), free(y.data);
}

static void run_norm(tcase *t) {
  const int nb = geti(t, "nb"), h = geti(t, "h"), w = geti(t, "w");
  snprintf(t->desc, sizeof t->desc, "%d boxes, %dx%d", nb, h, w);
  npy boxes = load(t->name, "boxes"), y = load(t->name, "y");
  float *out = nan_buf(y.count);
  if (boxes.kind != 'd') die("norm_boxes: float64 input expected");
  cx_norm_boxes((const double *)boxes.data, nb, h, w, out);
  check_f32(t, NULL, out, F(&y, 'f'), y.count, 0.0);
  free(out), free(boxes.data), free(y.data);
}

static void run_denorm(tcase *t) {
  const int nb = geti(t, "nb"), h = geti(t, "h"), w = geti(t, "w");
  snprintf(t->desc, sizeof t->desc, "%d boxes, %dx%d", nb, h, w);
  npy boxes = load(t->name, "boxes"), y = load(t->name, "y");
  int32_t *out = xmalloc(y.count * sizeof(int32_t));
  for (size_t i = 0; i < y.count; i++) out[i] = -12345;
  cx_denorm_boxes(F(&boxes, 'f'), nb, h, w, out);
  const double bad = mismatches_i32(out, (const int32_t *)y.data, y.count);
  report(t, NULL, bad, 0, bad == 0);
  free(out), free(boxes.data), free(y.data);
}

static void run_anchors(tcase *t) {
  const int levels = geti(t, "levels"), nratios = geti(t, "nratios"), as = geti(t, "astride");
  const size_t count = (size_t)geti(t, "count");
  snprintf(t->desc, sizeof t->desc, "%d levels, %d ratios, stride %d", levels, nratios, as);
  npy a = load(t->name, "anchors"), sc = load(t->name, "scales"), ra = load(t->name, "ratios"),
      fh = load(t->name, "fh"), fw = load(t->name, "fw"), st = load(t->name, "strides");
  const size_t got_count = cx_anchor_count(fh.data, fw.data, levels, nratios, as);
  report(t, "cx_anchor_count", got_count == count ? 0 : 1, 0, got_count == count);
  if (got_count != count) return;
  double *out = xmalloc(count * 4 * sizeof(double));
  for (size_t i = 0; i < count * 4; i++) out[i] = NAN;
  cx_generate_anchors(sc.data, levels, ra.data, nratios, fh.data, fw.data, st.data, as, out);
  size_t bad = 0;
  const double *ref = a.data;
  for (size_t i = 0; i < count * 4; i++) bad += !(out[i] == ref[i]);
  report(t, NULL, (double)bad, 0, bad == 0);
  free(out), free(a.data), free(sc.data), free(ra.data), free(fh.data), free(fw.data), free(st.data);
}

static void run_topk(tcase *t) {
  const int n = geti(t, "n"), k = geti(t, "k"), kused = geti(t, "kused");
  snprintf(t->desc, sizeof t->desc, "n %d k %d", n, k);
  npy s = load(t->name, "scores"), idx = load(t->name, "idx");
  int *out = xmalloc((size_t)k * sizeof(int));
  int *ws = xmalloc((size_t)2 * n * sizeof(int));
  for (int i = 0; i < k; i++) out[i] = -1;
  const double t0 = now();
  const int got = cx_topk_stable(F(&s, 'f'), n, k, out, ws);
  const double dt = now() - t0;
  double bad = got == kused ? mismatches_i32(out, (const int32_t *)idx.data, (size_t)kused) : 1e9;
  report(t, NULL, bad, 0, bad == 0);
  if (n > 100000) printf("time          cx_topk_stable n=%d k=%d: %.2f ms\n", n, k, dt * 1e3);
  free(out), free(ws), free(s.data), free(idx.data);
}

static void run_nms(tcase *t) {
  const int n = geti(t, "n"), max_out = geti(t, "max_out"), nsel = geti(t, "nsel");
  const float thr = (float)getd(t, "thr");
  snprintf(t->desc, sizeof t->desc, "n %d max %d thr %.9g", n, max_out, (double)thr);
  npy b = load(t->name, "boxes"), s = load(t->name, "scores"), sel = load(t->name, "sel");
  int *out = xmalloc((size_t)max_out * sizeof(int));
  for (int i = 0; i < max_out; i++) out[i] = -1;
  void *ws = xmalloc(cx_nms_workspace(n));
  const double t0 = now();
  const int got = cx_nms(F(&b, 'f'), F(&s, 'f'), n, max_out, thr, out, ws);
  const double dt = now() - t0;
  double bad = got == nsel ? mismatches_i32(out, (const int32_t *)sel.data, (size_t)nsel) : 1e9;
  if (got != nsel) printf("              selected %d, expected %d\n", got, nsel);
  report(t, NULL, bad, 0, bad == 0);
  if (n >= 6000) printf("time          cx_nms n=%d max_out=%d: %.2f ms\n", n, max_out, dt * 1e3);
  free(out), free(ws), free(b.data), free(s.data), free(sel.data);
}

static void run_resize_u8(tcase *t) {
  const int ih = geti(t, "ih"), iw = geti(t, "iw"), c = geti(t, "c"), oh = geti(t, "oh"), ow = geti(t, "ow");
  snprintf(t->desc, sizeof t->desc, "%dx%dx%d -> %dx%d", ih, iw, c, oh, ow);
  npy x = load(t->name, "x"), y = load(t->name, "y");
  uint8_t *out = xmalloc(y.count);
  memset(out, 0xA5, y.count);
  cx_skimage_resize_u8(x.data, ih, iw, c, oh, ow, out);
  const uint8_t *ref = y.data;
  size_t one = 0, big = 0;
  for (size_t i = 0; i < y.count; i++) {
    const int d = abs((int)out[i] - (int)ref[i]);
    one += d == 1;
    big += d > 1;
  }
  const double frac = (double)one / (double)y.count, tol = 1e-3;
  if (big) printf("              %zu values differ by more than 1\n", big);
  report(t, NULL, big ? INFINITY : frac, tol, big == 0 && frac <= tol);
  free(out), free(x.data), free(y.data);
}

static void run_resize_f32(tcase *t) {
  const int ih = geti(t, "ih"), iw = geti(t, "iw"), oh = geti(t, "oh"), ow = geti(t, "ow");
  snprintf(t->desc, sizeof t->desc, "%dx%d -> %dx%d", ih, iw, oh, ow);
  npy x = load(t->name, "x"), y = load(t->name, "y");
  double *out = xmalloc(y.count * sizeof(double));
  for (size_t i = 0; i < y.count; i++) out[i] = NAN;
  cx_skimage_resize_f32(F(&x, 'f'), ih, iw, oh, ow, out);
  const double e = err_f64(out, y.data, y.count);
  report(t, NULL, e, 4.0 * DBL_EPSILON, e <= 4.0 * DBL_EPSILON);
  free(out), free(x.data), free(y.data);
}

/* ---------------------------------------------------------------------------------------
 * timings at production sizes (information only; random data) */
static float frand(unsigned *st) {
  *st = *st * 1664525u + 1013904223u;
  return (float)((*st >> 8) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

static void timings(void) {
  unsigned st = 7;
  const int n = 100, h = 14, w = 14, c = 256;
  const size_t nx = (size_t)n * h * w * c;
  float *x = xmalloc(nx * sizeof(float)), *k = xmalloc((size_t)4 * c * c * sizeof(float));
  float *p = xmalloc((size_t)4 * c * c * sizeof(float)), *b = xmalloc(c * sizeof(float));
  float *ws = xmalloc(nx * 4 * sizeof(float)), *y = xmalloc(nx * 4 * sizeof(float));
  for (size_t i = 0; i < nx; i++) x[i] = frand(&st);
  for (size_t i = 0; i < (size_t)4 * c * c; i++) k[i] = frand(&st) * 0.06f;
  for (int i = 0; i < c; i++) b[i] = frand(&st);
  cx_deconv2x2_pack(k, c, c, p);
  double best = 1e9;
  for (int r = 0; r < 3; r++) {
    const double t0 = now();
    cx_deconv2x2(x, n, h, w, c, p, b, c, 1, y, ws);
    const double dt = now() - t0;
    best = dt < best ? dt : best;
  }
  printf("time          cx_deconv2x2 100x14x14x256 -> 28x28x256: %.1f ms (%.1f GFLOP/s)\n", best * 1e3,
         2.0 * nx * 4 * c / best * 1e-9);
  free(ws), free(y), free(k), free(p), free(b);
  /* crop_and_resize: 1000 boxes, 7x7, from a 256x256x256 map */
  const int hf = 256, nb = 1000;
  float *feat = xmalloc((size_t)hf * hf * c * sizeof(float)), *bx = xmalloc((size_t)nb * 4 * sizeof(float));
  for (size_t i = 0; i < (size_t)hf * hf * c; i++) feat[i] = frand(&st);
  for (int i = 0; i < nb; i++) {
    float a = 0.5f * (frand(&st) + 1.0f), bb = 0.5f * (frand(&st) + 1.0f);
    float cc = 0.5f * (frand(&st) + 1.0f), d = 0.5f * (frand(&st) + 1.0f);
    bx[4 * i] = fminf(a, bb), bx[4 * i + 2] = fmaxf(a, bb), bx[4 * i + 1] = fminf(cc, d), bx[4 * i + 3] = fmaxf(cc, d);
  }
  float *o = xmalloc((size_t)nb * 49 * c * sizeof(float));
  const double t0 = now();
  cx_crop_and_resize(feat, hf, hf, c, bx, nb, 7, 7, o);
  printf("time          cx_crop_and_resize 1000 boxes 7x7x256: %.1f ms\n", (now() - t0) * 1e3);
  free(feat), free(bx), free(o), free(x);
}

/* ---------------------------------------------------------------------------------------*/
int main(int argc, char **argv) {
  if (argc < 2) die("usage: test_kernels DATA_DIR [--no-timings]");
  g_dir = argv[1];
  char path[1024];
  snprintf(path, sizeof path, "%s/manifest.txt", g_dir);
  FILE *mf = fopen(path, "r");
  if (!mf) die("cannot open %s (run tests/reference/kernel_ref.py first)", path);
  char line[4096];
  int cases = 0;
  while (fgets(line, sizeof line, mf)) {
    tcase t;
    memset(&t, 0, sizeof t);
    char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save);
    if (!tok) continue;
    snprintf(t.op, sizeof t.op, "%s", tok);
    tok = strtok_r(NULL, " \t\r\n", &save);
    if (!tok) die("manifest: case without a name");
    snprintf(t.name, sizeof t.name, "%s", tok);
    while ((tok = strtok_r(NULL, " \t\r\n", &save)) && t.np < 32) {
      char *eq = strchr(tok, '=');
      if (!eq) die("manifest: bad parameter %s", tok);
      *eq = 0;
      snprintf(t.keys[t.np], sizeof t.keys[0], "%s", tok);
      snprintf(t.vals[t.np], sizeof t.vals[0], "%s", eq + 1);
      t.np++;
    }
    cases++;
    /* GEMM-based ops run through both GEMMs: OpenBLAS (when built) and our own kernel. */
    if (!strcmp(t.op, "conv") || !strcmp(t.op, "dense") || !strcmp(t.op, "deconv")) {
      const char *gemms[2] = {"blas", "own"};
      for (int gi = 0; gi < 2; gi++) {
        if (cx_gemm_select(gemms[gi])) continue; /* no BLAS in this build */
        g_gemm_label = gi ? "[own]" : "[openblas]";
        if (!strcmp(t.op, "conv")) run_conv(&t);
        else if (!strcmp(t.op, "dense")) run_dense(&t);
        else run_deconv(&t);
      }
      cx_gemm_select("blas");
      g_gemm_label = "";
      continue;
    }
    if (0) {
    }
    else if (!strcmp(t.op, "maxpool")) run_maxpool(&t);
    else if (!strcmp(t.op, "subsample2")) run_subsample2(&t);
    else if (!strcmp(t.op, "relu")) run_unary(&t, 0);
    else if (!strcmp(t.op, "sigmoid")) run_unary(&t, 1);
    else if (!strcmp(t.op, "upsample2_add")) run_upsample(&t);
    else if (!strcmp(t.op, "softmax")) run_softmax(&t);
    else if (!strcmp(t.op, "bn_coeffs")) run_bn(&t);
    else if (!strcmp(t.op, "crop")) run_crop(&t);
    else if (!strcmp(t.op, "mask_class")) run_mask_class(&t);
    else if (!strcmp(t.op, "levels")) run_levels(&t);
    else if (!strcmp(t.op, "box_deltas")) run_box_deltas(&t);
    else if (!strcmp(t.op, "clip")) run_clip(&t);
    else if (!strcmp(t.op, "norm_boxes")) run_norm(&t);
    else if (!strcmp(t.op, "denorm_boxes")) run_denorm(&t);
    else if (!strcmp(t.op, "anchors")) run_anchors(&t);
    else if (!strcmp(t.op, "topk")) run_topk(&t);
    else if (!strcmp(t.op, "nms")) run_nms(&t);
    else if (!strcmp(t.op, "resize_u8")) run_resize_u8(&t);
    else if (!strcmp(t.op, "resize_f32")) run_resize_f32(&t);
    else {
      printf("%-13s %-32s unknown op FAIL\n", t.op, t.name);
      g_fail++;
    }
  }
  fclose(mf);
  if (cases == 0) die("manifest %s has no cases", path);
  if (!(argc > 2 && !strcmp(argv[2], "--no-timings"))) timings();
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
