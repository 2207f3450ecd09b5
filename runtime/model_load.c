/* Loading a Mask R-CNN: validate the weight set against the architecture, read backbone,
 * class count and class names, fold every inference batch norm into its convolution. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coco_classes.h"
#include "json.h"
#include "model_internal.h"
#include "weights_table.h"

static const cx_named_tensor *get(const cx_tensor_store *s, const char *layer, const char *w) {
  char name[96];
  snprintf(name, sizeof name, "%s/%s", layer, w);
  return cx_store_find(s, name);
}

/* Copies conv `layer` (and folds batch norm `bn` when given) into an owned cx_layer. */
static int make_layer(cx_model *m, cx_layer *L, const char *layer, const char *bn, int stride, int same, cx_err *e) {
  const cx_named_tensor *k = get(m->store, layer, "kernel"), *b = get(m->store, layer, "bias");
  int kh = 1, kw = 1, cin, cout;
  if (k->ndim == 4) { kh = (int)k->shape[0]; kw = (int)k->shape[1]; cin = (int)k->shape[2]; cout = (int)k->shape[3]; }
  else { cin = (int)k->shape[0]; cout = (int)k->shape[1]; } /* Dense (in, out) */
  size_t nk = cx_tensor_numel(k);
  L->kernel = cx_malloc(nk * sizeof(float), e, layer);
  L->bias = cx_malloc((size_t)cout * sizeof(float), e, layer);
  if (!L->kernel || !L->bias) return -1;
  memcpy(L->kernel, k->data, nk * sizeof(float));
  memcpy(L->bias, b->data, (size_t)cout * sizeof(float));
  if (bn) {
    const cx_named_tensor *g = get(m->store, bn, "gamma"), *be = get(m->store, bn, "beta"),
                          *mu = get(m->store, bn, "moving_mean"), *var = get(m->store, bn, "moving_variance");
    float *inv = cx_malloc((size_t)cout * 2 * sizeof(float), e, bn);
    if (!inv) return -1;
    float *shift = inv + cout;
    cx_bn_coeffs(g->data, be->data, mu->data, var->data, cout, (float)m->cfg.BN_EPSILON, inv, shift);
    /* conv + bias then BN == conv with kernel * inv, bias * inv + shift. */
    for (size_t i = 0; i < nk; i++) L->kernel[i] *= inv[i % (size_t)cout];
    for (int o = 0; o < cout; o++) L->bias[o] = L->bias[o] * inv[o] + shift[o];
    free(inv);
  }
  cx_conv2d_desc d = {kh, kw, cin, cout, stride, 0, 0, 0, 0, L->kernel, L->bias, NULL, 0, NULL, 0};
  int tile = cx_winograd_default_tile();
  if (tile && kh == 3 && kw == 3 && stride == 1 && same) { /* SAME 3x3/1 pads 1 everywhere */
    L->winograd = cx_malloc(cx_winograd_packed_floats(tile, cin, cout) * sizeof(float), e, layer);
    if (!L->winograd) return -1;
    cx_winograd_pack(tile, L->kernel, cin, cout, L->winograd);
    d.winograd = L->winograd;
    d.winograd_tile = tile;
  }
  L->d = d;
  L->same = same;
  return 0;
}

static void free_layer(cx_layer *L) {
  free(L->kernel);
  free(L->bias);
  free(L->winograd);
  L->kernel = L->bias = L->winograd = NULL;
}

int cx_rpn_heads_layer(const cx_model *m, int ld, cx_layer *out, cx_err *e) {
  const cx_layer *c = &m->rpn_class, *b = &m->rpn_bbox;
  const int apl = c->d.cout / 2, cin = c->d.cin;
  memset(out, 0, sizeof *out);
  if (c->d.kh != 1 || c->d.kw != 1 || b->d.kh != 1 || b->d.kw != 1 || b->d.cin != cin || c->d.cout != 2 * apl ||
      b->d.cout != 4 * apl || apl < 1 || ld < 6 * apl || !c->kernel || !b->kernel)
    return cx_fail(e, "internal: RPN heads of unexpected shapes (%dx%d %d->%d, %dx%d %d->%d)", c->d.kh, c->d.kw, cin,
                   c->d.cout, b->d.kh, b->d.kw, b->d.cin, b->d.cout);
  float *k = calloc((size_t)cin * ld, sizeof *k), *bias = calloc((size_t)ld, sizeof *bias);
  if (!k || !bias) {
    free(k);
    free(bias);
    return cx_fail(e, "out of memory for the RPN heads");
  }
  for (int i = 0; i < cin; i++) {
    memcpy(k + (size_t)i * ld, c->kernel + (size_t)i * 2 * apl, (size_t)2 * apl * sizeof *k);
    memcpy(k + (size_t)i * ld + 2 * apl, b->kernel + (size_t)i * 4 * apl, (size_t)4 * apl * sizeof *k);
  }
  for (int j = 0; j < 2 * apl; j++) bias[j] = c->bias ? c->bias[j] : 0.0f;
  for (int j = 0; j < 4 * apl; j++) bias[2 * apl + j] = b->bias ? b->bias[j] : 0.0f;
  *out = *c;
  out->d.cout = ld;
  out->d.winograd = NULL;
  out->d.winograd_tile = 0;
  out->kernel = k;
  out->bias = bias;
  out->d.kernel = k;
  out->d.bias = bias;
  out->winograd = NULL;
  return 0;
}

void cx_plan_free(cx_plan *p);
void cx_scratch_free(cx_plan *p);

void cx_model_free(cx_model *m) {
  if (!m) return;
  if (m->gpu) cx_gpu_detach(m);
  for (int i = 0; i < m->cpu_npending; i++) {
    cx_cpu_batch *q = &m->cpu_q[(m->cpu_head + i) % CX_DETECT_DEPTH];
    cx_detections_free(q->d, q->n);
    free(q->d);
  }
  free(m->cprof.op);
  free_layer(&m->conv1);
  for (int s = 0; s < 4; s++)
    for (int b = 0; b < m->nblocks[s]; b++) {
      free_layer(&m->blocks[s][b].a);
      free_layer(&m->blocks[s][b].b);
      free_layer(&m->blocks[s][b].c);
      free_layer(&m->blocks[s][b].shortcut);
    }
  for (int i = 0; i < 4; i++) {
    free_layer(&m->fpn_lat[i]);
    free_layer(&m->fpn_out[i]);
    free_layer(&m->mask_conv[i]);
  }
  free_layer(&m->rpn_shared);
  free_layer(&m->rpn_class);
  free_layer(&m->rpn_bbox);
  free_layer(&m->rpn_heads);
  free_layer(&m->cls_conv1);
  free_layer(&m->cls_conv2);
  free_layer(&m->cls_logits);
  free_layer(&m->cls_bbox);
  free_layer(&m->mask_out);
  free(m->deconv_packed);
  free(m->deconv_bias);
  if (m->class_names)
    for (int i = 0; i < m->num_classes; i++) free(m->class_names[i]);
  free(m->class_names);
  cx_plan_free(&m->plan);
  cx_scratch_free(&m->plan);
  cx_store_free(m->store);
  free(m->dump_dir);
  free(m);
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t len) {
  size_t u = 0;
  u += (size_t)snprintf(buf + u, len - u, "(");
  for (int i = 0; i < ndim && u < len; i++) u += (size_t)snprintf(buf + u, len - u, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (u < len) snprintf(buf + u, len - u, ")");
}

static int load_class_names(cx_model *m, const char *src, cx_err *e) {
  int nc = m->num_classes;
  m->class_names = cx_calloc((size_t)nc, sizeof(char *), e, "class names");
  if (!m->class_names) return -1;
  const char *meta = cx_store_meta(m->store, "class_names");
  if (meta) {
    cx_json *j = cx_json_parse(meta, strlen(meta), "class_names metadata", e);
    if (!j) return cx_failctx(e, "%s", src);
    int n = cx_json_count(j);
    if (j->type != CX_JSON_ARRAY || n != nc) {
      cx_json_free(j);
      return cx_fail(e, "%s: weights file has 'mrcnn_class_logits' of shape (1024, %d) but the class list has %d names", src, nc, n);
    }
    int i = 0;
    for (const cx_json *c = j->child; c; c = c->next, i++) {
      if (c->type != CX_JSON_STRING) { cx_json_free(j); return cx_fail(e, "%s: class name %d is not a string", src, i); }
      m->class_names[i] = strdup(c->string);
    }
    cx_json_free(j);
  } else {
    for (int i = 0; i < nc; i++) {
      char buf[32];
      if (nc == CX_COCO_NUM_CLASSES) snprintf(buf, sizeof buf, "%s", cx_coco_class_names[i]);
      else if (i == 0) snprintf(buf, sizeof buf, "BG");
      else snprintf(buf, sizeof buf, "class_%d", i);
      m->class_names[i] = strdup(buf);
    }
  }
  for (int i = 0; i < nc; i++)
    if (!m->class_names[i]) return cx_fail(e, "out of memory");
  return 0;
}

int cx_model_from_store(cx_tensor_store *store, const cx_config *cfg, cx_model **out, cx_err *e) {
  *out = NULL;
  cx_model *m = cx_calloc(1, sizeof *m, e, "model");
  if (!m) { cx_store_free(store); return -1; }
  m->store = store;
  m->cfg = *cfg;
  m->be = cx_backend_cpu();
  const char *src = cx_store_meta(store, "path");
  if (!src) src = cx_store_meta(store, "source");
  if (!src) src = "weights";
  /* Architecture from the weights (spec §14.3). */
  const cx_named_tensor *logits = cx_store_find(store, "mrcnn_class_logits/kernel");
  if (!logits || logits->ndim != 2) {
    cx_fail(e, "%s: no 'mrcnn_class_logits/kernel' tensor of rank 2: this is not a matterport Mask R-CNN weight set", src);
    goto fail;
  }
  m->num_classes = (int)logits->shape[1];
  if (m->num_classes < 2) { cx_fail(e, "%s: 'mrcnn_class_logits/kernel' has %d classes; at least 2 (background + 1) are needed", src, m->num_classes); goto fail; }
  cx_backbone bb = cx_store_find(store, "res4g_branch2a/kernel") ? CX_BACKBONE_RESNET101 : CX_BACKBONE_RESNET50;
  const char *mb = cx_store_meta(store, "backbone");
  if (mb && strcmp(mb, cx_backbone_name(bb))) {
    cx_fail(e, "%s: metadata says backbone %s but the tensors are a %s", src, mb, cx_backbone_name(bb));
    goto fail;
  }
  const char *mnc = cx_store_meta(store, "num_classes");
  if (mnc && atoi(mnc) != m->num_classes) {
    cx_fail(e, "%s: metadata says %s classes but 'mrcnn_class_logits/kernel' has shape (1024, %d)", src, mnc, m->num_classes);
    goto fail;
  }
  m->cfg.BACKBONE = bb;
  m->cfg.NUM_CLASSES = m->num_classes;
  if (cx_config_validate(&m->cfg, e)) goto fail;
  /* Every tensor of the architecture, with its exact shape. */
  cx_weight_spec *tab;
  int ntab;
  if (cx_weight_table(bb, m->num_classes, &tab, &ntab, e)) goto fail;
  for (int i = 0; i < ntab; i++) {
    const cx_named_tensor *t = cx_store_find(store, tab[i].name);
    char want[64], got[64];
    shape_str(tab[i].shape, tab[i].ndim, want, sizeof want);
    if (!t) {
      cx_fail(e, "%s: missing tensor '%s' %s (a %s with %d classes needs it)", src, tab[i].name, want, cx_backbone_name(bb), m->num_classes);
      free(tab);
      goto fail;
    }
    int same = t->ndim == tab[i].ndim;
    for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == tab[i].shape[d];
    if (!same) {
      shape_str(t->shape, t->ndim, got, sizeof got);
      cx_fail(e, "%s: tensor '%s' has shape %s but a %s with %d classes needs %s", src, tab[i].name, got, cx_backbone_name(bb), m->num_classes, want);
      free(tab);
      goto fail;
    }
    if (!t->data) { cx_fail(e, "%s: tensor '%s' has no data", src, tab[i].name); free(tab); goto fail; }
  }
  free(tab);
  if (load_class_names(m, src, e)) goto fail;

  /* Fold and copy every layer. */
  if (make_layer(m, &m->conv1, "conv1", "bn_conv1", 2, 0, e)) goto fail;
  /* ZeroPadding2D((3, 3)) then a VALID 7x7/2 conv == explicit symmetric padding of 3. */
  m->conv1.d.pad_t = m->conv1.d.pad_l = m->conv1.d.pad_b = m->conv1.d.pad_r = 3;
  const int nb[4] = {3, 4, cx_stage4_blocks(bb), 3};
  for (int s = 0; s < 4; s++) {
    m->nblocks[s] = nb[s];
    for (int b = 0; b < nb[s]; b++) {
      cx_block *B = &m->blocks[s][b];
      char conv[32], bn[32];
      int stride = (b == 0 && s > 0) ? 2 : 1;
      char blk = (char)('a' + b);
      snprintf(conv, sizeof conv, "res%d%c_branch2a", s + 2, blk);
      snprintf(bn, sizeof bn, "bn%d%c_branch2a", s + 2, blk);
      if (make_layer(m, &B->a, conv, bn, stride, 0, e)) goto fail;
      snprintf(conv, sizeof conv, "res%d%c_branch2b", s + 2, blk);
      snprintf(bn, sizeof bn, "bn%d%c_branch2b", s + 2, blk);
      if (make_layer(m, &B->b, conv, bn, 1, 1, e)) goto fail;
      snprintf(conv, sizeof conv, "res%d%c_branch2c", s + 2, blk);
      snprintf(bn, sizeof bn, "bn%d%c_branch2c", s + 2, blk);
      if (make_layer(m, &B->c, conv, bn, 1, 0, e)) goto fail;
      if (b == 0) {
        B->has_shortcut = 1;
        snprintf(conv, sizeof conv, "res%d%c_branch1", s + 2, blk);
        snprintf(bn, sizeof bn, "bn%d%c_branch1", s + 2, blk);
        if (make_layer(m, &B->shortcut, conv, bn, stride, 0, e)) goto fail;
      }
    }
  }
  const char *lat[4] = {"fpn_c2p2", "fpn_c3p3", "fpn_c4p4", "fpn_c5p5"};
  const char *outs[4] = {"fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5"};
  for (int i = 0; i < 4; i++)
    if (make_layer(m, &m->fpn_lat[i], lat[i], NULL, 1, 0, e) || make_layer(m, &m->fpn_out[i], outs[i], NULL, 1, 1, e)) goto fail;
  if (make_layer(m, &m->rpn_shared, "rpn_conv_shared", NULL, m->cfg.RPN_ANCHOR_STRIDE, 1, e) ||
      make_layer(m, &m->rpn_class, "rpn_class_raw", NULL, 1, 0, e) || make_layer(m, &m->rpn_bbox, "rpn_bbox_pred", NULL, 1, 0, e) ||
      make_layer(m, &m->cls_conv1, "mrcnn_class_conv1", "mrcnn_class_bn1", 1, 0, e) ||
      make_layer(m, &m->cls_conv2, "mrcnn_class_conv2", "mrcnn_class_bn2", 1, 0, e) ||
      make_layer(m, &m->cls_logits, "mrcnn_class_logits", NULL, 1, 0, e) ||
      make_layer(m, &m->cls_bbox, "mrcnn_bbox_fc", NULL, 1, 0, e) || make_layer(m, &m->mask_out, "mrcnn_mask", NULL, 1, 0, e))
    goto fail;
  /* the CPU graph runs both RPN heads as one 1x1 conv (one pass over the shared features) */
  if (cx_rpn_heads_layer(m, 3 * m->rpn_class.d.cout, &m->rpn_heads, e)) goto fail;
  for (int k = 0; k < 4; k++) {
    char conv[32], bn[32];
    snprintf(conv, sizeof conv, "mrcnn_mask_conv%d", k + 1);
    snprintf(bn, sizeof bn, "mrcnn_mask_bn%d", k + 1);
    if (make_layer(m, &m->mask_conv[k], conv, bn, 1, 1, e)) goto fail;
  }
  const cx_named_tensor *dk = cx_store_find(store, "mrcnn_mask_deconv/kernel"), *db = cx_store_find(store, "mrcnn_mask_deconv/bias");
  m->deconv_packed = cx_malloc(256 * 4 * 256 * sizeof(float), e, "mrcnn_mask_deconv");
  m->deconv_bias = cx_malloc(256 * sizeof(float), e, "mrcnn_mask_deconv");
  if (!m->deconv_packed || !m->deconv_bias) goto fail;
  cx_deconv2x2_pack(dk->data, 256, 256, m->deconv_packed);
  memcpy(m->deconv_bias, db->data, 256 * sizeof(float));
  *out = m;
  return 0;
fail:
  cx_model_free(m);
  return -1;
}

int cx_model_open(const char *weights_path, const cx_config *cfg, cx_model **out, cx_err *e) {
  cx_tensor_store *s;
  *out = NULL;
  if (cx_safetensors_load(weights_path, &s, e)) return -1;
  /* Error messages name the file the user passed. */
  if (cx_store_set_meta(s, "path", weights_path, e)) { cx_store_free(s); return -1; }
  return cx_model_from_store(s, cfg, out, e);
}

const cx_config *cx_model_config(const cx_model *m) { return &m->cfg; }
const cx_timings *cx_model_timings(const cx_model *m) { return &m->timings; }
const char *cx_model_class_name(const cx_model *m, int id) {
  return (id >= 0 && id < m->num_classes) ? m->class_names[id] : NULL;
}

void cx_model_set_dump_dir(cx_model *m, const char *dir) {
  free(m->dump_dir);
  m->dump_dir = dir ? strdup(dir) : NULL;
  m->planned = 0; /* the plan's mask buffer depends on it (model.c plan_make) */
}

int cx_model_set_device(cx_model *m, const char *device, const char *precision, cx_err *e) {
  if (cx_detect_pending(m))
    return cx_fail(e, "%d submitted batch(es) not collected: collect them before changing the device", cx_detect_pending(m));
  int idx;
  const int kind = cx_device_parse(device, &idx, e);
  if (kind < 0) return -1;
  if (kind == 0) {
    if (precision && strcmp(precision, "fp32"))
      return cx_fail(e, "the CPU path computes in float32 only (precision '%s' needs --device cuda)", precision);
    if (m->gpu) cx_gpu_detach(m);
    return 0;
  }
  if (m->gpu) cx_gpu_detach(m);
  return cx_gpu_attach(m, precision ? precision : "fp32", idx, e);
}

int cx_device_parse(const char *device, int *cuda_index, cx_err *e) {
  *cuda_index = -1;
  if (device && !strcmp(device, "cpu")) return 0;
  if (device && !strcmp(device, "cuda")) {
    *cuda_index = 0;
    return 1;
  }
  if (device && !strncmp(device, "cuda:", 5) && device[5] >= '0' && device[5] <= '9') {
    char *end;
    const long v = strtol(device + 5, &end, 10);
    if (!*end && v >= 0 && v < 1024) {
      *cuda_index = (int)v;
      return 1;
    }
  }
  return cx_fail(e, "unknown device '%s' (cpu, cuda or cuda:N for GPU N)", device ? device : "(null)");
}

const char *cx_model_device(const cx_model *m) { return m->gpu ? "cuda" : "cpu"; }

int cx_device_check(const char *device, cx_err *e) {
  int idx;
  const int kind = cx_device_parse(device, &idx, e);
  if (kind <= 0) return kind;
  return cx_gpu_available(idx, e);
}

#ifndef CTXDIFF_HAVE_CUDA
/* Builds without the CUDA backend: the GPU path reports that it is absent. */
int cx_gpu_attach(cx_model *m, const char *precision, int device_index, cx_err *e) {
  (void)m;
  (void)precision;
  (void)device_index;
  return cx_fail(e, "this build has no CUDA backend (rebuild with nvcc on the PATH, -DCTXDIFF_CUDA=ON)");
}
void cx_gpu_detach(cx_model *m) { m->gpu = NULL; }
int cx_gpu_detect(cx_model *m, const cx_image *images, int n, cx_detections *out, cx_err *e) {
  (void)m; (void)images; (void)n; (void)out;
  return cx_fail(e, "this build has no CUDA backend");
}
int cx_gpu_submit(cx_model *m, const cx_image *images, int n, cx_err *e) {
  (void)m; (void)images; (void)n;
  return cx_fail(e, "this build has no CUDA backend");
}
int cx_gpu_collect(cx_model *m, int n, cx_detections *out, cx_err *e) {
  (void)m; (void)n; (void)out;
  return cx_fail(e, "this build has no CUDA backend");
}
int cx_gpu_pending(const cx_model *m) {
  (void)m;
  return 0;
}
int cx_gpu_profile(cx_model *m, const cx_image *images, int n, cx_op_time **ops, int *count, cx_err *e) {
  (void)m; (void)images; (void)n;
  *ops = NULL;
  *count = 0;
  return cx_fail(e, "this build has no CUDA backend");
}
int cx_gpu_available(int device_index, cx_err *e) {
  (void)device_index;
  return cx_fail(e, "this build has no CUDA backend (rebuild with nvcc on the PATH, -DCTXDIFF_CUDA=ON)");
}
#endif
