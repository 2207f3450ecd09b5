/* The matterport Mask R-CNN inference graph (spec §3-§13) on the CPU kernels:
 * mold -> ResNet -> FPN -> RPN -> ProposalLayer -> PyramidROIAlign -> classifier ->
 * DetectionLayer -> mask head -> unmold. Buffers come from a plan made once per
 * (batch, molded shape); the per-image path does not allocate except for the results. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model_internal.h"
#include "npy.h"

#define FEAT 256 /* TOP_DOWN_PYRAMID_SIZE: fixed by the weights */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- memory plan --------------------------------------------------------------------- */

void cx_plan_free(cx_plan *p) {
  float **fl[] = {&p->anchors, &p->molded, &p->act[0], &p->act[1], &p->act[2], &p->act[3], &p->act[4], &p->C[0], &p->C[1],
                  &p->C[2], &p->C[3], &p->Q[0], &p->Q[1], &p->Q[2], &p->Q[3], &p->P[0], &p->P[1], &p->P[2], &p->P[3],
                  &p->P[4], &p->rpn_shared, &p->rpn_logits, &p->rpn_probs, &p->rpn_bbox, &p->scores, &p->pre_boxes,
                  &p->pre_deltas, &p->pre_scores, &p->rois, &p->pool7, &p->fc1, &p->fc2, &p->logits, &p->probs,
                  &p->deltas, &p->det, &p->cls_boxes, &p->cls_scores, &p->refined, &p->det_scores, &p->pool14,
                  &p->mask_a, &p->mask_b, &p->deconv, &p->deconv_ws, &p->masks, &p->conv_ws};
  for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) { free(*fl[i]); *fl[i] = NULL; }
  free(p->topk); free(p->topk_ws); free(p->sel); free(p->nms_ws); free(p->det_count); free(p->cls_idx);
  free(p->det_class); free(p->mask_cls);
  /* The grow-only scratch survives a re-plan (it depends on the input, not the shape). */
  uint8_t *resized = p->resized;
  double *mask = p->mask_resized;
  void *mold = p->mold;
  size_t rc = p->resized_cap, mc = p->mask_cap, oc = p->mold_cap;
  memset(p, 0, sizeof *p);
  p->resized = resized; p->resized_cap = rc;
  p->mask_resized = mask; p->mask_cap = mc;
  p->mold = mold; p->mold_cap = oc;
}

static size_t conv_ws_need(const cx_layer *L, int n, int h, int w) {
  cx_conv2d_desc d = L->d;
  if (L->same) {
    cx_same_pads(h, d.kh, d.stride, &d.pad_t, &d.pad_b);
    cx_same_pads(w, d.kw, d.stride, &d.pad_l, &d.pad_r);
  }
  return cx_conv2d_workspace(&d, n, h, w);
}

#define MAXZ(a, b) ((a) > (b) ? (a) : (b))

/* Grows a scratch buffer to at least `need` bytes (never shrinks). */
static int grow(void **buf, size_t *cap, size_t need, cx_err *e, const char *what) {
  if (need <= *cap) return 0;
  void *p = realloc(*buf, need);
  if (!p) return cx_fail(e, "out of memory allocating %zu bytes for %s", need, what);
  *buf = p;
  *cap = need;
  return 0;
}

void cx_scratch_free(cx_plan *p) {
  free(p->resized);
  free(p->mask_resized);
  free(p->mold);
  p->resized = NULL;
  p->mask_resized = NULL;
  p->mold = NULL;
  p->resized_cap = p->mask_cap = p->mold_cap = 0;
}

static int plan_make(cx_model *m, int n, int H, int W, cx_err *e) {
  cx_plan *p = &m->plan;
  if (m->planned && p->n == n && p->H == H && p->W == W) return 0;
  cx_plan_free(p);
  m->planned = 0;
  const cx_config *c = &m->cfg;
  p->n = n; p->H = H; p->W = W;
  const int NC = m->num_classes, R = c->POST_NMS_ROIS_INFERENCE, D = c->DETECTION_MAX_INSTANCES;
  const int a = c->RPN_ANCHOR_STRIDE, nr = c->RPN_ANCHOR_RATIOS_COUNT;
  /* Backbone shapes. */
  int h1 = cx_conv2d_out(H, 7, 2, 3, 3), w1 = cx_conv2d_out(W, 7, 2, 3, 3);
  int hs[5], wsz[5]; /* after the stem pool and each stage */
  hs[0] = (h1 + 1) / 2; wsz[0] = (w1 + 1) / 2;
  size_t ws = conv_ws_need(&m->conv1, n, H, W);
  int h = hs[0], w = wsz[0];
  const int chans[4] = {256, 512, 1024, 2048};
  for (int s = 0; s < 4; s++) {
    for (int b = 0; b < m->nblocks[s]; b++) {
      cx_block *B = &m->blocks[s][b];
      ws = MAXZ(ws, conv_ws_need(&B->a, n, h, w));
      if (B->has_shortcut) ws = MAXZ(ws, conv_ws_need(&B->shortcut, n, h, w));
      int st = B->a.d.stride;
      h = (h - 1) / st + 1; w = (w - 1) / st + 1;
      ws = MAXZ(ws, conv_ws_need(&B->b, n, h, w));
    }
    hs[s + 1] = h; wsz[s + 1] = w;
  }
  for (int l = 0; l < 4; l++) { p->fh[l] = hs[l + 1]; p->fw[l] = wsz[l + 1]; }
  p->fh[4] = (p->fh[3] + 1) / 2; p->fw[4] = (p->fw[3] + 1) / 2;
  for (int l = 0; l < 5; l++) {
    int eh = (H + c->BACKBONE_STRIDES[l] - 1) / c->BACKBONE_STRIDES[l], ew = (W + c->BACKBONE_STRIDES[l] - 1) / c->BACKBONE_STRIDES[l];
    if (eh != p->fh[l] || ew != p->fw[l])
      return cx_fail(e, "molded image %dx%d gives feature map P%d of %dx%d, not the %dx%d the anchors assume: use sides that are multiples of 64", W, H, l + 2, p->fw[l], p->fh[l], ew, eh);
  }
  for (int l = 0; l < 4; l++) ws = MAXZ(ws, conv_ws_need(&m->fpn_out[l], n, p->fh[l], p->fw[l]));
  for (int l = 0; l < 5; l++) ws = MAXZ(ws, conv_ws_need(&m->rpn_shared, n, p->fh[l], p->fw[l]));
  for (int k = 0; k < 4; k++) ws = MAXZ(ws, conv_ws_need(&m->mask_conv[k], n * D, 14, 14));
  p->conv_ws_size = ws;

  /* Anchors (spec §6), once per shape. */
  int ah[5], aw[5];
  for (int l = 0; l < 5; l++) { ah[l] = p->fh[l]; aw[l] = p->fw[l]; }
  size_t A = cx_anchor_count(ah, aw, 5, nr, a);
  p->anchors_total = A;
  size_t off = 0;
  for (int l = 0; l < 5; l++) {
    p->level_off[l] = off;
    off += (size_t)((ah[l] + a - 1) / a) * ((aw[l] + a - 1) / a) * nr;
  }
  int K = c->PRE_NMS_LIMIT < (int)A ? c->PRE_NMS_LIMIT : (int)A;
  int rh = (p->fh[0] + a - 1) / a, rw = (p->fw[0] + a - 1) / a;
  /* act[0] also takes the merged RPN heads' output of the largest level (rpn()) */
  size_t act = MAXZ(MAXZ((size_t)n * h1 * w1 * 64, (size_t)n * hs[0] * wsz[0] * 256),
                    (size_t)n * rh * rw * (size_t)m->rpn_heads.d.cout);
  const size_t nR = (size_t)n * R, nD = (size_t)n * D;
  size_t mask_rows = nD ? nD : 1;
#define ALLOC(ptr, count)                                                         \
  do {                                                                            \
    (ptr) = cx_malloc((size_t)(count) * sizeof(*(ptr)), e, "inference buffer " #ptr); \
    if (!(ptr)) goto fail;                                                        \
  } while (0)
  double *anchors_px = NULL;
  ALLOC(anchors_px, A * 4);
  ALLOC(p->anchors, A * 4);
  {
    const int strides[5] = {c->BACKBONE_STRIDES[0], c->BACKBONE_STRIDES[1], c->BACKBONE_STRIDES[2], c->BACKBONE_STRIDES[3], c->BACKBONE_STRIDES[4]};
    cx_generate_anchors(c->RPN_ANCHOR_SCALES, 5, c->RPN_ANCHOR_RATIOS, nr, ah, aw, strides, a, anchors_px);
    cx_norm_boxes(anchors_px, (int)A, H, W, p->anchors);
    free(anchors_px);
    anchors_px = NULL;
  }
  ALLOC(p->molded, (size_t)n * H * W * 3);
  p->act_size = act;
  for (int i = 0; i < 5; i++) ALLOC(p->act[i], act);
  for (int l = 0; l < 4; l++) {
    ALLOC(p->C[l], (size_t)n * hs[l + 1] * wsz[l + 1] * chans[l]);
    ALLOC(p->Q[l], (size_t)n * p->fh[l] * p->fw[l] * FEAT);
  }
  for (int l = 0; l < 5; l++) ALLOC(p->P[l], (size_t)n * p->fh[l] * p->fw[l] * FEAT);
  ALLOC(p->rpn_shared, (size_t)n * rh * rw * 512);
  ALLOC(p->rpn_logits, (size_t)n * A * 2);
  ALLOC(p->rpn_probs, (size_t)n * A * 2);
  ALLOC(p->rpn_bbox, (size_t)n * A * 4);
  ALLOC(p->scores, A);
  ALLOC(p->topk, K);
  ALLOC(p->topk_ws, MAXZ(2 * A, (size_t)4 * R)); /* also DetectionLayer scratch */
  ALLOC(p->pre_boxes, (size_t)K * 4);
  ALLOC(p->pre_deltas, (size_t)K * 4);
  ALLOC(p->pre_scores, K);
  ALLOC(p->sel, MAXZ(R, D) + 1);
  p->nms_ws = cx_malloc(MAXZ(cx_nms_workspace(K), cx_nms_workspace(R)), e, "NMS workspace");
  if (!p->nms_ws) goto fail;
  ALLOC(p->rois, nR * 4);
  ALLOC(p->pool7, nR * 7 * 7 * FEAT);
  ALLOC(p->fc1, nR * 1024);
  ALLOC(p->fc2, nR * 1024);
  ALLOC(p->logits, nR * NC);
  ALLOC(p->probs, nR * NC);
  ALLOC(p->deltas, nR * 4 * NC);
  ALLOC(p->det, nD * 6 + 1);
  ALLOC(p->det_count, n);
  ALLOC(p->cls_idx, R);
  ALLOC(p->cls_boxes, (size_t)R * 4);
  ALLOC(p->cls_scores, R);
  ALLOC(p->refined, (size_t)R * 4);
  ALLOC(p->det_scores, R);
  ALLOC(p->det_class, R);
  ALLOC(p->pool14, mask_rows * 14 * 14 * FEAT);
  ALLOC(p->mask_a, mask_rows * 14 * 14 * FEAT);
  ALLOC(p->mask_b, mask_rows * 14 * 14 * FEAT);
  ALLOC(p->deconv, mask_rows * 28 * 28 * FEAT);
  ALLOC(p->deconv_ws, mask_rows * 14 * 14 * 4 * FEAT);
  p->mask_ch = m->dump_dir ? NC : 1;
  ALLOC(p->masks, mask_rows * 28 * 28 * p->mask_ch);
  ALLOC(p->mask_cls, mask_rows);
  ALLOC(p->conv_ws, ws ? ws : 1);
#undef ALLOC
  m->planned = 1;
  return 0;
fail:
  free(anchors_px);
  cx_plan_free(p);
  return cx_failctx(e, "planning memory for a batch of %d at %dx%d", n, W, H);
}

/* ---- preprocessing (spec §3) ------------------------------------------------------------ */

typedef cx_mold_info mold_info; /* model_internal.h: shared with the GPU graph */

int cx_mold_geometry(const cx_config *c, int h, int w, mold_info *mi, cx_err *e) {
  double scale = 1;
  mi->rh = h; mi->rw = w;
  if (c->IMAGE_RESIZE_MODE == CX_RESIZE_NONE) {
    if (h % 64 || w % 64)
      return cx_fail(e, "IMAGE_RESIZE_MODE none needs image sides that are multiples of 64 (image is %dx%d); use square or pad64", w, h);
    mi->H = h; mi->W = w;
    mi->window[0] = 0; mi->window[1] = 0; mi->window[2] = h; mi->window[3] = w;
    mi->scale = 1;
    return 0;
  }
  if (c->IMAGE_MIN_DIM) scale = fmax(1.0, (double)c->IMAGE_MIN_DIM / (double)(h < w ? h : w));
  if (c->IMAGE_MIN_SCALE && scale < c->IMAGE_MIN_SCALE) scale = c->IMAGE_MIN_SCALE;
  if (c->IMAGE_RESIZE_MODE == CX_RESIZE_SQUARE && c->IMAGE_MAX_DIM) {
    int mx = h > w ? h : w;
    if (nearbyint(mx * scale) > c->IMAGE_MAX_DIM) scale = (double)c->IMAGE_MAX_DIM / mx;
  }
  if (scale != 1) {
    mi->rh = (int)nearbyint(h * scale); /* Python round: half to even */
    mi->rw = (int)nearbyint(w * scale);
  }
  if (mi->rh < 1 || mi->rw < 1)
    return cx_fail(e, "image of %dx%d is too elongated: it would be resized to %dx%d pixels", w, h, mi->rw, mi->rh);
  mi->scale = scale;
  int top, left;
  if (c->IMAGE_RESIZE_MODE == CX_RESIZE_SQUARE) {
    mi->H = mi->W = c->IMAGE_MAX_DIM;
    top = (c->IMAGE_MAX_DIM - mi->rh) / 2;
    left = (c->IMAGE_MAX_DIM - mi->rw) / 2;
  } else { /* pad64 */
    mi->H = mi->rh % 64 ? mi->rh - mi->rh % 64 + 64 : mi->rh;
    mi->W = mi->rw % 64 ? mi->rw - mi->rw % 64 + 64 : mi->rw;
    top = (mi->H - mi->rh) / 2;
    left = (mi->W - mi->rw) / 2;
  }
  mi->window[0] = top; mi->window[1] = left; mi->window[2] = top + mi->rh; mi->window[3] = left + mi->rw;
  return 0;
}

int cx_mold_batch(const cx_config *c, const cx_image *images, int n, mold_info *mi, size_t *max_resized, cx_err *e) {
  *max_resized = 0;
  for (int i = 0; i < n; i++) {
    const cx_image *im = &images[i];
    if (!im->rgb) return cx_fail(e, "image %d has no pixel data", i);
    if (im->width < 2 || im->height < 2)
      return cx_fail(e, "image %d is %dx%d pixels: Mask R-CNN needs an RGB image of at least 2x2", i, im->width, im->height);
    if (im->width > c->MAX_INPUT_DIM || im->height > c->MAX_INPUT_DIM)
      return cx_fail(e, "image %d is %dx%d pixels, larger than MAX_INPUT_DIM = %d (raise it with --set MAX_INPUT_DIM=N)", i,
                     im->width, im->height, c->MAX_INPUT_DIM);
    if (cx_mold_geometry(c, im->height, im->width, &mi[i], e)) return cx_failctx(e, "image %d", i);
    if (mi[i].H != mi[0].H || mi[i].W != mi[0].W)
      return cx_fail(e, "images of one batch must mold to the same shape: image 0 molds to %dx%d, image %d to %dx%d (use IMAGE_RESIZE_MODE square, or batch 1)",
                     mi[0].W, mi[0].H, i, mi[i].W, mi[i].H);
    const size_t rs = (size_t)mi[i].rh * mi[i].rw * 3;
    if (rs > *max_resized) *max_resized = rs;
  }
  return 0;
}

/* Resize (uint8, truncated), pad with 0, subtract the mean in double, store float32.
 * resized: scratch of rh*rw*3 bytes (NULL when no resize is needed). */
void cx_mold_image(const cx_backend *be, const cx_config *c, const cx_image *im, const mold_info *mi, uint8_t *resized, float *out) {
  const uint8_t *src = im->rgb;
  if (mi->rh != im->height || mi->rw != im->width) {
    be->resize_u8(im->rgb, im->height, im->width, 3, mi->rh, mi->rw, resized);
    src = resized;
  }
  float pad[3];
  for (int ch = 0; ch < 3; ch++) pad[ch] = (float)(0.0 - c->MEAN_PIXEL[ch]);
#pragma omp parallel for schedule(static)
  for (int y = 0; y < mi->H; y++) {
    float *row = out + (size_t)y * mi->W * 3;
    int iy = y - mi->window[0];
    for (int x = 0; x < mi->W; x++) {
      int ix = x - mi->window[1];
      if (iy < 0 || iy >= mi->rh || ix < 0 || ix >= mi->rw) {
        for (int ch = 0; ch < 3; ch++) row[x * 3 + ch] = pad[ch];
      } else {
        const uint8_t *px = src + ((size_t)iy * mi->rw + ix) * 3;
        for (int ch = 0; ch < 3; ch++) row[x * 3 + ch] = (float)((double)px[ch] - c->MEAN_PIXEL[ch]);
      }
    }
  }
}

/* ---- network stages ---------------------------------------------------------------------- */

/* ---- --profile on the CPU (cx_model_profile): a wall-clock mark before every op; op i ran
 * from mark i to mark i + 1. fmt NULL only closes the open op (a stage's end); kernel: the
 * GEMM-based path, named with the GEMM in use. ---- */
static void cmark(cx_model *m, double flops, const char *kernel, const char *fmt, ...) {
  cx_cpu_prof *P = &m->cprof;
  if (P->on <= 0) return;
  const double t = now_ms();
  if (P->open) P->op[P->n - 1].ms = t - P->t;
  P->open = 0;
  if (!fmt) return;
  if (P->n == P->cap) {
    const int cap = P->cap ? 2 * P->cap : 256;
    cx_op_time *op = realloc(P->op, (size_t)cap * sizeof *op);
    if (!op) {
      P->on = -1;
      return;
    }
    P->op = op;
    P->cap = cap;
  }
  cx_op_time *o = &P->op[P->n++];
  memset(o, 0, sizeof *o);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(o->name, sizeof o->name, fmt, ap);
  va_end(ap);
  if (kernel) snprintf(o->kernel, sizeof o->kernel, "%s, %s", kernel, cx_gemm_name()); /* every CPU kernel is a GEMM */
  o->stage = P->stage;
  o->flops = flops;
  o->calls = 1;
  P->open = 1;
  P->t = now_ms();
}

/* The kernel name of the op just marked, for ops that are not GEMMs (cmark appends the GEMM's) */
static void cmark_kernel(cx_model *m, const char *kernel) {
  cx_cpu_prof *P = &m->cprof;
  if (P->on > 0 && P->n > 0) snprintf(P->op[P->n - 1].kernel, sizeof P->op[0].kernel, "%s", kernel);
}

/* name: matterport's layer name, for the profile */
static void conv(cx_model *m, const char *name, const cx_layer *L, const float *x, int n, int h, int w, float *y,
                 const float *res, int relu, int *ho, int *wo) {
  cx_conv2d_desc d = L->d;
  if (L->same) {
    cx_same_pads(h, d.kh, d.stride, &d.pad_t, &d.pad_b);
    cx_same_pads(w, d.kw, d.stride, &d.pad_l, &d.pad_r);
  }
  if (m->cprof.on > 0) cmark(m, cx_conv2d_flops(&d, n, h, w), cx_conv2d_path(&d, h, w), "%s", name);
  m->be->conv2d(&d, x, n, h, w, y, res, relu, m->plan.conv_ws);
  if (ho) *ho = cx_conv2d_out(h, d.kh, d.stride, d.pad_t, d.pad_b);
  if (wo) *wo = cx_conv2d_out(w, d.kw, d.stride, d.pad_l, d.pad_r);
}

static void backbone(cx_model *m) {
  cx_plan *p = &m->plan;
  int n = p->n, h, w;
  conv(m, "conv1", &m->conv1, p->molded, n, p->H, p->W, p->act[0], NULL, 1, &h, &w);
  cmark(m, 0, NULL, "pool1 (max 3x3/2)");
  m->be->maxpool_same(p->act[0], n, h, w, 64, 3, 2, p->act[1]);
  h = (h + 1) / 2; w = (w + 1) / 2;
  float *x = p->act[1];
  for (int s = 0; s < 4; s++)
    for (int b = 0; b < m->nblocks[s]; b++) {
      const cx_block *B = &m->blocks[s][b];
      float *out = (b == m->nblocks[s] - 1) ? p->C[s] : (x == p->act[0] ? p->act[1] : p->act[0]);
      int h2, w2;
      char nm[4][32];
      cx_block_names(s, b, nm);
      conv(m, nm[0], &B->a, x, n, h, w, p->act[2], NULL, 1, &h2, &w2);
      conv(m, nm[1], &B->b, p->act[2], n, h2, w2, p->act[3], NULL, 1, NULL, NULL);
      const float *sc = x;
      if (B->has_shortcut) {
        conv(m, nm[2], &B->shortcut, x, n, h, w, p->act[4], NULL, 0, NULL, NULL);
        sc = p->act[4];
      }
      conv(m, nm[3], &B->c, p->act[3], n, h2, w2, out, sc, 1, NULL, NULL);
      x = out;
      h = h2; w = w2;
    }
}

void cx_block_names(int s, int b, char nm[4][32]) {
  const char *br[4] = {"branch2a", "branch2b", "branch1", "branch2c"};
  for (int k = 0; k < 4; k++) snprintf(nm[k], 32, "res%d%c_%s", s + 2, 'a' + b, br[k]);
}

static void fpn(cx_model *m) {
  cx_plan *p = &m->plan;
  int n = p->n;
  char nm[32];
  for (int l = 3; l >= 0; l--) {
    snprintf(nm, sizeof nm, "fpn_c%dp%d", l + 2, l + 2);
    conv(m, nm, &m->fpn_lat[l], p->C[l], n, p->fh[l], p->fw[l], p->Q[l], NULL, 0, NULL, NULL);
    if (l < 3) {
      cmark(m, 0, NULL, "fpn_p%dupsampled + add", l + 3);
      m->be->upsample2_add(p->Q[l + 1], n, p->fh[l + 1], p->fw[l + 1], FEAT, p->Q[l]);
    }
  }
  for (int l = 0; l < 4; l++) {
    snprintf(nm, sizeof nm, "fpn_p%d", l + 2);
    conv(m, nm, &m->fpn_out[l], p->Q[l], n, p->fh[l], p->fw[l], p->P[l], NULL, 0, NULL, NULL);
  }
  cmark(m, 0, NULL, "fpn_p6 (subsample)");
  m->be->subsample2(p->P[3], n, p->fh[3], p->fw[3], FEAT, p->P[4]);
}

static void rpn(cx_model *m) {
  cx_plan *p = &m->plan;
  const size_t A = p->anchors_total;
  const int n = p->n, ld = m->rpn_heads.d.cout, apl = ld / 6;
  for (int l = 0; l < 5; l++) {
    int hs, ws;
    char nm[40];
    snprintf(nm, sizeof nm, "rpn_conv_shared P%d", l + 2);
    conv(m, nm, &m->rpn_shared, p->P[l], n, p->fh[l], p->fw[l], p->rpn_shared, NULL, 1, &hs, &ws);
    /* both heads of every image in one GEMM (N = 6 * apl; apart, OpenBLAS packs the shared
     * features twice for N = 2 * apl and 4 * apl) into act[0], free after the backbone */
    snprintf(nm, sizeof nm, "rpn_class_raw + rpn_bbox_pred P%d", l + 2);
    conv(m, nm, &m->rpn_heads, p->rpn_shared, n, hs, ws, p->act[0], NULL, 0, NULL, NULL);
    /* Location q's anchor a is anchor (q * apl + a) of the level: its 2 logits and 4 deltas go to
     * the image's concatenated [anchors, 2] / [anchors, 4] rows. */
    cmark(m, 0, NULL, "rpn heads to anchor order P%d", l + 2);
    const size_t hw = (size_t)hs * ws;
#pragma omp parallel for schedule(static)
    for (size_t bq = 0; bq < (size_t)n * hw; bq++) {
      const float *h = p->act[0] + bq * ld;
      const size_t b = bq / hw, q = bq % hw;
      for (int a = 0; a < apl; a++) {
        const size_t r = b * A + p->level_off[l] + q * apl + a;
        memcpy(p->rpn_logits + r * 2, h + 2 * a, 2 * sizeof(float));
        memcpy(p->rpn_bbox + r * 4, h + 2 * apl + 4 * a, 4 * sizeof(float));
      }
    }
  }
  cmark(m, 0, NULL, "rpn_class (softmax)");
  m->be->softmax_rows(p->rpn_logits, (size_t)n * A, 2, p->rpn_probs);
}

/* ProposalLayer (spec §8) on one image's anchors (model_internal.h); validate runs it alone. */
int cx_proposal_layer(const cx_backend *be, const cx_config *c, int A, const float *anchors, const float *probs,
                      const float *bbox, const cx_prop_scratch *s, float *rois) {
  const int R = c->POST_NMS_ROIS_INFERENCE;
  for (int i = 0; i < A; i++) s->scores[i] = probs[2 * i + 1];
  int K = c->PRE_NMS_LIMIT < A ? c->PRE_NMS_LIMIT : A;
  K = be->topk_stable(s->scores, A, K, s->topk, s->topk_ws);
  float sd[4];
  for (int j = 0; j < 4; j++) sd[j] = (float)c->RPN_BBOX_STD_DEV[j];
  for (int i = 0; i < K; i++) {
    int ix = s->topk[i];
    s->pre_scores[i] = s->scores[ix];
    for (int j = 0; j < 4; j++) {
      s->pre_deltas[i * 4 + j] = bbox[(size_t)ix * 4 + j] * sd[j];
      s->pre_boxes[i * 4 + j] = anchors[(size_t)ix * 4 + j];
    }
  }
  be->apply_box_deltas(s->pre_boxes, s->pre_deltas, K, s->pre_boxes);
  const float unit[4] = {0, 0, 1, 1};
  be->clip_boxes(s->pre_boxes, K, unit);
  int kept = be->nms(s->pre_boxes, s->pre_scores, K, R, (float)c->RPN_NMS_THRESHOLD, s->sel, s->nms_ws);
  memset(rois, 0, (size_t)R * 4 * sizeof(float));
  for (int i = 0; i < kept; i++) memcpy(rois + i * 4, s->pre_boxes + (size_t)s->sel[i] * 4, 4 * sizeof(float));
  return kept;
}

/* ProposalLayer for image b, on the plan's buffers. */
static void proposals(cx_model *m, int b) {
  cx_plan *p = &m->plan;
  cmark(m, 0, NULL, "proposals (top-k, decode, clip, NMS)");
  const int A = (int)p->anchors_total, R = m->cfg.POST_NMS_ROIS_INFERENCE;
  const cx_prop_scratch s = {.scores = p->scores, .topk = p->topk, .topk_ws = p->topk_ws, .pre_boxes = p->pre_boxes,
                             .pre_deltas = p->pre_deltas, .pre_scores = p->pre_scores, .sel = p->sel,
                             .nms_ws = p->nms_ws};
  cx_proposal_layer(m->be, &m->cfg, A, p->anchors, p->rpn_probs + (size_t)b * A * 2, p->rpn_bbox + (size_t)b * A * 4,
                    &s, p->rois + (size_t)b * R * 4);
}

/* PyramidROIAlign: each box cropped from its own level of image b's pyramid. */
static void roi_align(cx_model *m, int b, const float *boxes, int nb, int pool, float *out) {
  cx_plan *p = &m->plan;
  int *lv = p->cls_idx; /* scratch, nb <= R */
  m->be->roi_levels(boxes, nb, p->H, p->W, lv);
#pragma omp parallel for schedule(dynamic, 16)
  for (int i = 0; i < nb; i++) {
    int l = lv[i] - 2;
    const float *f = p->P[l] + (size_t)b * p->fh[l] * p->fw[l] * FEAT;
    m->be->crop_and_resize(f, p->fh[l], p->fw[l], FEAT, boxes + (size_t)i * 4, 1, pool, pool, out + (size_t)i * pool * pool * FEAT);
  }
}

static void classifier(cx_model *m) {
  cx_plan *p = &m->plan;
  const int R = m->cfg.POST_NMS_ROIS_INFERENCE, NC = m->num_classes, nR = p->n * R;
  cmark(m, 0, NULL, "roi_align_classifier (levels + 7x7 crop_and_resize)");
  for (int b = 0; b < p->n; b++) roi_align(m, b, p->rois + (size_t)b * R * 4, R, 7, p->pool7 + (size_t)b * R * 49 * FEAT);
  conv(m, "mrcnn_class_conv1", &m->cls_conv1, p->pool7, nR, 7, 7, p->fc1, NULL, 1, NULL, NULL);
  conv(m, "mrcnn_class_conv2", &m->cls_conv2, p->fc1, nR, 1, 1, p->fc2, NULL, 1, NULL, NULL);
  cmark(m, 2.0 * nR * 1024 * NC, "dense", "mrcnn_class_logits");
  m->be->dense(p->fc2, nR, 1024, m->cls_logits.kernel, m->cls_logits.bias, NC, 0, p->logits);
  cmark(m, 0, NULL, "mrcnn_class (softmax)");
  m->be->softmax_rows(p->logits, (size_t)nR, NC, p->probs);
  cmark(m, 2.0 * nR * 1024 * 4 * NC, "dense", "mrcnn_bbox_fc");
  m->be->dense(p->fc2, nR, 1024, m->cls_bbox.kernel, m->cls_bbox.bias, 4 * NC, 0, p->deltas);
}

void cx_norm_window(const int win_px[4], int H, int W, float win[4]) {
  const float Hf = (float)H, Wf = (float)W;
  win[0] = ((float)win_px[0] - 0.0f) / (Hf - 1.0f);
  win[1] = ((float)win_px[1] - 0.0f) / (Wf - 1.0f);
  win[2] = ((float)win_px[2] - 1.0f) / (Hf - 1.0f);
  win[3] = ((float)win_px[3] - 1.0f) / (Wf - 1.0f);
}

/* DetectionLayer (spec §11) on one image's rows (model_internal.h); validate runs it alone. */
int cx_detection_layer(const cx_backend *be, const cx_config *c, int NC, const float *rois, const float *probs,
                       const float *deltas, const float win[4], const cx_det_scratch *s, float *det) {
  const int R = c->POST_NMS_ROIS_INFERENCE, D = c->DETECTION_MAX_INSTANCES;
  float sd[4];
  for (int j = 0; j < 4; j++) sd[j] = (float)c->BBOX_STD_DEV[j];
  float *d = s->boxes; /* scratch for the chosen deltas */
  for (int i = 0; i < R; i++) {
    const float *pr = probs + (size_t)i * NC;
    int best = 0;
    for (int k = 1; k < NC; k++)
      if (pr[k] > pr[best]) best = k; /* first index among equal maxima, as tf.argmax */
    s->cls[i] = best;
    s->scores[i] = pr[best];
    for (int j = 0; j < 4; j++) d[i * 4 + j] = deltas[((size_t)i * NC + best) * 4 + j] * sd[j];
  }
  be->apply_box_deltas(rois, d, R, s->refined);
  be->clip_boxes(s->refined, R, win);
  /* keep: ascending ROI indices of non-background classes above the confidence. */
  int *keep = s->keep;
  int nk = 0;
  const float minc = (float)c->DETECTION_MIN_CONFIDENCE;
  for (int i = 0; i < R; i++)
    if (s->cls[i] > 0 && (c->DETECTION_MIN_CONFIDENCE == 0 || s->scores[i] >= minc)) keep[nk++] = i;
  /* Per-class NMS; survivors marked in `alive`, then collected in ascending order. */
  char *alive = (char *)(keep + R);
  memset(alive, 0, (size_t)(unsigned)R);
  for (int cls = 1; cls < NC; cls++) {
    int nc = 0;
    for (int t = 0; t < nk; t++)
      if (s->cls[keep[t]] == cls) s->idx[nc++] = keep[t];
    if (!nc) continue;
    for (int t = 0; t < nc; t++) {
      memcpy(s->boxes + t * 4, s->refined + (size_t)s->idx[t] * 4, 4 * sizeof(float));
      s->idx_scores[t] = s->scores[s->idx[t]];
    }
    int ns = be->nms(s->boxes, s->idx_scores, nc, D, (float)c->DETECTION_NMS_THRESHOLD, s->sel, s->nms_ws);
    for (int t = 0; t < ns; t++) alive[s->idx[s->sel[t]]] = 1;
  }
  int ns = 0;
  for (int i = 0; i < R; i++)
    if (alive[i]) s->idx[ns++] = i;
  for (int t = 0; t < ns; t++) s->idx_scores[t] = s->scores[s->idx[t]];
  int num = ns < D ? ns : D;
  int *order = s->sel;
  num = be->topk_stable(s->idx_scores, ns, num, order, keep); /* alive is no longer needed */
  memset(det, 0, (size_t)D * 6 * sizeof(float));
  for (int t = 0; t < num; t++) {
    int i = s->idx[order[t]];
    memcpy(det + t * 6, s->refined + (size_t)i * 4, 4 * sizeof(float));
    det[t * 6 + 4] = (float)s->cls[i];
    det[t * 6 + 5] = s->scores[i];
  }
  return num;
}

/* DetectionLayer for image b with molded window `win_px`, on the plan's buffers. */
static void detection(cx_model *m, int b, const int win_px[4]) {
  cx_plan *p = &m->plan;
  cmark(m, 0, NULL, "detection layer (refine, clip, per-class NMS, top-k)");
  const cx_config *c = &m->cfg;
  const int R = c->POST_NMS_ROIS_INFERENCE, NC = m->num_classes, D = c->DETECTION_MAX_INSTANCES;
  float win[4];
  cx_norm_window(win_px, p->H, p->W, win);
  const cx_det_scratch s = {.cls = p->det_class, .scores = p->det_scores, .refined = p->refined,
                            .boxes = p->cls_boxes, .idx = p->cls_idx, .idx_scores = p->cls_scores,
                            .keep = p->topk_ws, .sel = p->sel, .nms_ws = p->nms_ws};
  p->det_count[b] = cx_detection_layer(m->be, c, NC, p->rois + (size_t)b * R * 4, p->probs + (size_t)b * R * NC,
                                       p->deltas + (size_t)b * R * 4 * NC, win, &s, p->det + (size_t)b * D * 6);
}

/* Mask head on the valid detections of every image, packed contiguously. */
static int mask_head(cx_model *m) {
  cx_plan *p = &m->plan;
  const int D = m->cfg.DETECTION_MAX_INSTANCES;
  int total = 0;
  cmark(m, 0, NULL, "roi_align_mask (levels + 14x14 crop_and_resize)");
  for (int b = 0; b < p->n; b++) {
    int cnt = p->det_count[b];
    for (int t = 0; t < cnt; t++) {
      const float *dr = p->det + ((size_t)b * D + t) * 6;
      memcpy(p->cls_boxes + t * 4, dr, 4 * sizeof(float));
      p->mask_cls[total + t] = (int)dr[4];
    }
    if (cnt) roi_align(m, b, p->cls_boxes, cnt, 14, p->pool14 + (size_t)total * 196 * FEAT);
    total += cnt;
  }
  if (!total) return 0;
  const float *x = p->pool14;
  float *bufs[2] = {p->mask_a, p->mask_b};
  for (int k = 0; k < 4; k++) {
    char nm[24];
    snprintf(nm, sizeof nm, "mrcnn_mask_conv%d", k + 1);
    conv(m, nm, &m->mask_conv[k], x, total, 14, 14, bufs[k & 1], NULL, 1, NULL, NULL);
    x = bufs[k & 1];
  }
  cmark(m, 2.0 * total * 196 * FEAT * 4 * FEAT, "deconv 2x2/2", "mrcnn_mask_deconv");
  m->be->deconv2x2(x, total, 14, 14, FEAT, m->deconv_packed, m->deconv_bias, FEAT, 1, p->deconv, p->deconv_ws);
  if (p->mask_ch == 1) {
    /* unmolding reads one class per detection: that column only (matterport computes all) */
    const cx_conv2d_desc *d = &m->mask_out.d;
    cmark(m, cx_mask_class_flops(m, total), NULL, "mrcnn_mask (own class) + sigmoid");
    cmark_kernel(m, "1x1 conv, own class column");
    m->be->mask_class_sigmoid(p->deconv, total, 784, d->cin, d->kernel, d->bias, d->cout, p->mask_cls, p->masks);
    return total;
  }
  conv(m, "mrcnn_mask", &m->mask_out, p->deconv, total, 28, 28, p->masks, NULL, 0, NULL, NULL);
  cmark(m, 0, NULL, "mrcnn_mask (sigmoid)");
  m->be->sigmoid(p->masks, (size_t)total * 784 * m->num_classes);
  return total;
}

/* unmold_detections (spec §13) for one image of molded size H x W: det [N, 6] its detections,
 * masks its first mask row; mask_channels = NC (28x28xNC rows, the detection's class is
 * picked) or 1 (28x28x1 rows already holding the detection's own class, the GPU path). */
int cx_unmold(cx_model *m, int H, int W, const float *det, int N, const float *masks, int mask_channels,
              const cx_image *im, const mold_info *mi, cx_detections *out, cx_err *e) {
  cx_plan *p = &m->plan;
  memset(out, 0, sizeof *out);
  out->height = im->height;
  out->width = im->width;
  double wpx[4] = {mi->window[0], mi->window[1], mi->window[2], mi->window[3]};
  float nw[4];
  cx_norm_boxes(wpx, 1, H, W, nw);
  const float wh = nw[2] - nw[0], ww = nw[3] - nw[1];
  int32_t *boxes = cx_malloc((size_t)(N ? N : 1) * 4 * sizeof(int32_t), e, "detections");
  float *rel = cx_malloc((size_t)(N ? N : 1) * 4 * sizeof(float), e, "detections");
  if (!boxes || !rel) { free(boxes); free(rel); return -1; }
  for (int i = 0; i < N; i++) {
    rel[i * 4 + 0] = (det[i * 6 + 0] - nw[0]) / wh;
    rel[i * 4 + 1] = (det[i * 6 + 1] - nw[1]) / ww;
    rel[i * 4 + 2] = (det[i * 6 + 2] - nw[0]) / wh;
    rel[i * 4 + 3] = (det[i * 6 + 3] - nw[1]) / ww;
  }
  cx_denorm_boxes(rel, N, im->height, im->width, boxes);
  free(rel);
  int keep = 0;
  for (int i = 0; i < N; i++)
    if ((int64_t)(boxes[i * 4 + 2] - boxes[i * 4 + 0]) * (boxes[i * 4 + 3] - boxes[i * 4 + 1]) > 0) keep++;
  const size_t plane = (size_t)im->height * im->width;
  out->rois = cx_malloc((size_t)(keep ? keep : 1) * 4 * sizeof(int32_t), e, "detections");
  out->class_ids = cx_malloc((size_t)(keep ? keep : 1) * sizeof(int32_t), e, "detections");
  out->scores = cx_malloc((size_t)(keep ? keep : 1) * sizeof(float), e, "detections");
  out->masks = cx_calloc(keep ? (size_t)keep * plane : 1, 1, e, "detection masks");
  if (!out->rois || !out->class_ids || !out->scores || !out->masks) { free(boxes); cx_detections_free(out, 1); return -1; }
  int k = 0;
  for (int i = 0; i < N; i++) {
    const int32_t *bx = boxes + i * 4;
    int bh = bx[2] - bx[0], bw = bx[3] - bx[1];
    if ((int64_t)bh * bw <= 0) continue;
    int cls = (int)det[i * 6 + 4];
    memcpy(out->rois + k * 4, bx, 4 * sizeof(int32_t));
    out->class_ids[k] = cls;
    out->scores[k] = det[i * 6 + 5];
    /* The 28x28 mask of its own class, resized to the box with the scikit-image
     * resampler and thresholded at 0.5, pasted into the full-size image. */
    float m28[784];
    const float *src = masks + (size_t)i * 784 * mask_channels;
    const int ch = mask_channels > 1 ? cls : 0;
    for (int q = 0; q < 784; q++) m28[q] = src[(size_t)q * mask_channels + ch];
    if (grow((void **)&p->mask_resized, &p->mask_cap, (size_t)bh * bw * sizeof(double), e, "a resized mask")) {
      free(boxes);
      cx_detections_free(out, 1);
      return -1;
    }
    double *res = p->mask_resized;
    m->be->resize_mask(m28, 28, 28, bh, bw, res);
    uint8_t *dst = out->masks + (size_t)k * plane;
    for (int y = 0; y < bh; y++) {
      int iy = bx[0] + y;
      if (iy < 0 || iy >= im->height) continue;
      for (int x = 0; x < bw; x++) {
        int ix = bx[1] + x;
        if (ix < 0 || ix >= im->width) continue;
        dst[(size_t)iy * im->width + ix] = res[(size_t)y * bw + x] >= 0.5;
      }
    }
    k++;
  }
  out->count = keep;
  free(boxes);
  return 0;
}

void cx_detections_free(cx_detections *d, int n) {
  for (int i = 0; d && i < n; i++) {
    free(d[i].rois);
    free(d[i].class_ids);
    free(d[i].scores);
    free(d[i].masks);
    memset(&d[i], 0, sizeof d[i]);
  }
}

/* ---- intermediates for tests ------------------------------------------------------------ */

static void dump(cx_model *m, const char *name, const float *data, int ndim, const long *shape) {
  char path[4096];
  cx_err e;
  snprintf(path, sizeof path, "%s/%s.npy", m->dump_dir, name);
  if (cx_npy_write(path, "<f4", data, sizeof(float), ndim, shape, &e)) fprintf(stderr, "ctxdiff: dump: %s\n", e.msg);
}

static void dump_all(cx_model *m, int masks_rows) {
  cx_plan *p = &m->plan;
  const long A = (long)p->anchors_total, R = m->cfg.POST_NMS_ROIS_INFERENCE, NC = m->num_classes, D = m->cfg.DETECTION_MAX_INSTANCES;
  long s4[5] = {1, p->H, p->W, 3, 0};
  dump(m, "molded_image", p->molded, 4, s4);
  long sa[3] = {1, A, 4};
  dump(m, "anchors", p->anchors, 3, sa);
  const long ch[4] = {256, 512, 1024, 2048};
  char name[8];
  for (int l = 0; l < 4; l++) {
    long s[4] = {1, p->fh[l], p->fw[l], ch[l]};
    snprintf(name, sizeof name, "C%d", l + 2);
    dump(m, name, p->C[l], 4, s);
  }
  for (int l = 0; l < 5; l++) {
    long s[4] = {1, p->fh[l], p->fw[l], FEAT};
    snprintf(name, sizeof name, "P%d", l + 2);
    dump(m, name, p->P[l], 4, s);
  }
  long s2[3] = {1, A, 2}, s4b[3] = {1, A, 4};
  dump(m, "rpn_class_logits", p->rpn_logits, 3, s2);
  dump(m, "rpn_class", p->rpn_probs, 3, s2);
  dump(m, "rpn_bbox", p->rpn_bbox, 3, s4b);
  long sr[3] = {1, R, 4};
  dump(m, "proposals", p->rois, 3, sr);
  long sc[3] = {1, R, NC};
  dump(m, "mrcnn_class_logits", p->logits, 3, sc);
  dump(m, "mrcnn_class", p->probs, 3, sc);
  long sb[4] = {1, R, NC, 4};
  dump(m, "mrcnn_bbox", p->deltas, 4, sb);
  long sd[3] = {1, D, 6};
  dump(m, "detections", p->det, 3, sd);
  long sm[5] = {1, masks_rows, 28, 28, NC};
  dump(m, "mrcnn_mask", p->masks, 5, sm);
}

/* ---- driver ----------------------------------------------------------------------------- */

static int cpu_detect(cx_model *m, const cx_image *images, int n, cx_detections *out, cx_err *e);

/* The batch size, checked once at the public entry points. */
static int batch_size_ok(int n, cx_err *e) {
  if (n < 1) return cx_fail(e, "cx_detect needs at least one image");
  if (n > 4096) return cx_fail(e, "batch of %d images is too large", n);
  return 0;
}

int cx_detect(cx_model *m, const cx_image *images, int n, cx_detections *out, cx_err *e) {
  if (cx_detect_pending(m))
    return cx_fail(e, "%d batch(es) submitted and not collected: collect them before a synchronous detect", cx_detect_pending(m));
  if (batch_size_ok(n, e)) return -1;
  if (m->gpu) return cx_gpu_detect(m, images, n, out, e);
  return cpu_detect(m, images, n, out, e);
}

void cx_profile_add(cx_op_time *r, int *k, const cx_op_time *o) {
  int j = 0;
  while (j < *k && (strcmp(r[j].name, o->name) || r[j].stage != o->stage)) j++;
  if (j < *k) {
    r[j].calls++;
    r[j].ms += o->ms;
    r[j].flops += o->flops;
  } else {
    r[(*k)++] = *o;
  }
}

/* One batch with cmark's wall-clock marks (the RPN heads, proposals and detection layer of
 * each image summed by name); preprocessing and unmolding from the call's stage timings. */
static int cpu_profile(cx_model *m, const cx_image *images, int n, cx_op_time **ops, int *count, cx_err *e) {
  if (m->cpu_npending) return cx_fail(e, "profile: %d batch(es) pending (collect them first)", m->cpu_npending);
  cx_detections *out = calloc((size_t)n, sizeof *out);
  if (!out) return cx_fail(e, "out of memory");
  cx_cpu_prof *P = &m->cprof;
  P->on = 1;
  P->n = 0;
  P->open = 0;
  const int rc = cpu_detect(m, images, n, out, e);
  const int ok = P->on > 0;
  P->on = 0;
  P->stage = 0;
  cx_detections_free(out, n);
  free(out);
  if (rc) return rc;
  if (!ok) return cx_fail(e, "profile: out of memory for the op table");
  cx_op_time *r = calloc((size_t)P->n + 2, sizeof *r);
  if (!r) return cx_fail(e, "out of memory");
  int k = 0;
  const cx_timings *t = &m->timings;
  r[k++] = (cx_op_time){"preprocess (resize + mold)", "", 0, 1, t->preprocess, 0};
  for (int i = 0; i < P->n; i++) cx_profile_add(r, &k, &P->op[i]);
  r[k++] = (cx_op_time){"unmold (mask resize + paste)", "", 5, 1, t->unmold, 0};
  *ops = r;
  *count = k;
  return 0;
}

int cx_model_profile(cx_model *m, const cx_image *images, int n, cx_op_time **ops, int *count, cx_err *e) {
  *ops = NULL;
  *count = 0;
  if (batch_size_ok(n, e)) return -1;
  if (!m->gpu) return cpu_profile(m, images, n, ops, count, e);
  return cx_gpu_profile(m, images, n, ops, count, e);
}

int cx_detect_pending(const cx_model *m) { return m->gpu ? cx_gpu_pending(m) : m->cpu_npending; }

int cx_detect_submit(cx_model *m, const cx_image *images, int n, cx_err *e) {
  if (batch_size_ok(n, e)) return -1;
  if (m->gpu) return cx_gpu_submit(m, images, n, e);
  if (m->cpu_npending == CX_DETECT_DEPTH)
    return cx_fail(e, "%d batches are already in flight: collect one before submitting another", CX_DETECT_DEPTH);
  cx_detections *d = calloc((size_t)n, sizeof *d);
  if (!d) return cx_fail(e, "out of memory for a batch of %d images", n);
  if (cpu_detect(m, images, n, d, e)) {
    free(d);
    return -1;
  }
  cx_cpu_batch *q = &m->cpu_q[(m->cpu_head + m->cpu_npending) % CX_DETECT_DEPTH];
  q->d = d;
  q->n = n;
  q->t = m->timings;
  m->cpu_npending++;
  return 0;
}

int cx_detect_collect(cx_model *m, int n, cx_detections *out, cx_err *e) {
  if (m->gpu) return cx_gpu_collect(m, n, out, e);
  if (!m->cpu_npending) return cx_fail(e, "no batch is pending (submit one first)");
  cx_cpu_batch *q = &m->cpu_q[m->cpu_head];
  if (n != q->n) return cx_fail(e, "the oldest pending batch has %d image(s), not %d", q->n, n);
  memcpy(out, q->d, (size_t)n * sizeof *out);
  free(q->d);
  q->d = NULL;
  m->timings = q->t;
  m->cpu_head = (m->cpu_head + 1) % CX_DETECT_DEPTH;
  m->cpu_npending--;
  return 0;
}

static int cpu_detect(cx_model *m, const cx_image *images, int n, cx_detections *out, cx_err *e) {
  const cx_config *c = &m->cfg;
  memset(out, 0, (size_t)n * sizeof *out);
  cx_timings t = {0};
  double t0 = now_ms(), t_all = t0;
  if (grow(&m->plan.mold, &m->plan.mold_cap, (size_t)n * sizeof(mold_info), e, "the batch")) return -1;
  mold_info *mi = m->plan.mold;
  size_t max_resized;
  if (cx_mold_batch(c, images, n, mi, &max_resized, e)) return -1;
  if (plan_make(m, n, mi[0].H, mi[0].W, e)) { return -1; }
  cx_plan *p = &m->plan;
  if (grow((void **)&p->resized, &p->resized_cap, max_resized, e, "the resized image")) { return -1; }
  for (int i = 0; i < n; i++) cx_mold_image(m->be, c, &images[i], &mi[i], p->resized, p->molded + (size_t)i * p->H * p->W * 3);
  double t1 = now_ms();
  t.preprocess = t1 - t0;
  m->cprof.stage = 1;
  backbone(m);
  fpn(m);
  cmark(m, 0, NULL, NULL);
  double t2 = now_ms();
  t.backbone_fpn = t2 - t1;
  m->cprof.stage = 2;
  rpn(m);
  for (int b = 0; b < n; b++) proposals(m, b);
  cmark(m, 0, NULL, NULL);
  double t3 = now_ms();
  t.rpn_proposals = t3 - t2;
  m->cprof.stage = 3;
  classifier(m);
  for (int b = 0; b < n; b++) detection(m, b, mi[b].window);
  cmark(m, 0, NULL, NULL);
  double t4 = now_ms();
  t.classifier_detection = t4 - t3;
  m->cprof.stage = 4;
  mask_head(m);
  cmark(m, 0, NULL, NULL);
  double t5 = now_ms();
  t.mask_head = t5 - t4;
  if (m->dump_dir) dump_all(m, p->det_count[0]);
  int row = 0;
  for (int b = 0; b < n; b++) {
    const int D = c->DETECTION_MAX_INSTANCES, ch = p->mask_ch;
    if (cx_unmold(m, p->H, p->W, p->det + (size_t)b * D * 6, p->det_count[b], p->masks + (size_t)row * 784 * ch, ch,
                  &images[b], &mi[b], &out[b], e)) {
      cx_detections_free(out, n);
      return cx_failctx(e, "image %d", b);
    }
    row += p->det_count[b];
  }
  double t6 = now_ms();
  t.unmold = t6 - t5;
  t.total = t6 - t_all;
  m->timings = t;
  return 0;
}
