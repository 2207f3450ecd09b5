#include "weights_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const BN_W[4] = {"gamma", "beta", "moving_mean", "moving_variance"};

typedef struct {
  cx_weight_spec *t;
  int n, cap;
} table;

static void add(table *tb, const char *layer, const char *w, cx_weight_kind kind, int ndim, int64_t a, int64_t b,
                int64_t c, int64_t d) {
  cx_weight_spec *s = &tb->t[tb->n++];
  memset(s, 0, sizeof *s);
  snprintf(s->layer, sizeof s->layer, "%s", layer);
  snprintf(s->name, sizeof s->name, "%s/%s", layer, w);
  s->weight = w;
  s->kind = kind;
  s->ndim = ndim;
  int64_t sh[4] = {a, b, c, d};
  for (int i = 0; i < ndim; i++) s->shape[i] = sh[i];
}

static void conv(table *tb, const char *layer, int kh, int kw, int cin, int cout, cx_weight_kind kind) {
  add(tb, layer, "kernel", kind, 4, kh, kw, cin, cout);
  add(tb, layer, "bias", kind, 1, cout, 0, 0, 0);
}

static void bn(table *tb, const char *layer, int c) {
  for (int i = 0; i < 4; i++) add(tb, layer, BN_W[i], CX_W_BN, 1, c, 0, 0, 0);
}

const char *cx_backbone_name(cx_backbone bb) { return bb == CX_BACKBONE_RESNET50 ? "resnet50" : "resnet101"; }
int cx_stage4_blocks(cx_backbone bb) { return bb == CX_BACKBONE_RESNET50 ? 6 : 23; }

int cx_weight_table(cx_backbone bb, int nc, cx_weight_spec **out, int *count, cx_err *e) {
  table tb = {0};
  tb.cap = 1200;
  tb.t = cx_calloc((size_t)tb.cap, sizeof *tb.t, e, "weight table");
  if (!tb.t) return -1;
  char name[40];
  conv(&tb, "conv1", 7, 7, 3, 64, CX_W_CONV);
  bn(&tb, "bn_conv1", 64);
  const int blocks[4] = {3, 4, cx_stage4_blocks(bb), 3};
  const int f[4][3] = {{64, 64, 256}, {128, 128, 512}, {256, 256, 1024}, {512, 512, 2048}};
  int cin = 64;
  for (int s = 0; s < 4; s++)
    for (int b = 0; b < blocks[s]; b++) {
      char blk = (char)('a' + b);
      const char *br[3] = {"2a", "2b", "2c"};
      int ins[3] = {cin, f[s][0], f[s][1]};
      for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "res%d%c_branch%s", s + 2, blk, br[k]);
        conv(&tb, name, k == 1 ? 3 : 1, k == 1 ? 3 : 1, ins[k], f[s][k], CX_W_CONV);
        snprintf(name, sizeof name, "bn%d%c_branch%s", s + 2, blk, br[k]);
        bn(&tb, name, f[s][k]);
      }
      if (b == 0) {
        snprintf(name, sizeof name, "res%d%c_branch1", s + 2, blk);
        conv(&tb, name, 1, 1, cin, f[s][2], CX_W_CONV);
        snprintf(name, sizeof name, "bn%d%c_branch1", s + 2, blk);
        bn(&tb, name, f[s][2]);
      }
      cin = f[s][2];
    }
  conv(&tb, "fpn_c5p5", 1, 1, 2048, 256, CX_W_CONV);
  conv(&tb, "fpn_c4p4", 1, 1, 1024, 256, CX_W_CONV);
  conv(&tb, "fpn_c3p3", 1, 1, 512, 256, CX_W_CONV);
  conv(&tb, "fpn_c2p2", 1, 1, 256, 256, CX_W_CONV);
  for (int k = 2; k <= 5; k++) {
    snprintf(name, sizeof name, "fpn_p%d", k);
    conv(&tb, name, 3, 3, 256, 256, CX_W_CONV);
  }
  conv(&tb, "rpn_conv_shared", 3, 3, 256, 512, CX_W_CONV);
  conv(&tb, "rpn_class_raw", 1, 1, 512, 6, CX_W_CONV);
  conv(&tb, "rpn_bbox_pred", 1, 1, 512, 12, CX_W_CONV);
  conv(&tb, "mrcnn_class_conv1", 7, 7, 256, 1024, CX_W_CONV);
  bn(&tb, "mrcnn_class_bn1", 1024);
  conv(&tb, "mrcnn_class_conv2", 1, 1, 1024, 1024, CX_W_CONV);
  bn(&tb, "mrcnn_class_bn2", 1024);
  add(&tb, "mrcnn_class_logits", "kernel", CX_W_DENSE, 2, 1024, nc, 0, 0);
  add(&tb, "mrcnn_class_logits", "bias", CX_W_DENSE, 1, nc, 0, 0, 0);
  add(&tb, "mrcnn_bbox_fc", "kernel", CX_W_DENSE, 2, 1024, 4 * nc, 0, 0);
  add(&tb, "mrcnn_bbox_fc", "bias", CX_W_DENSE, 1, 4 * nc, 0, 0, 0);
  for (int k = 1; k <= 4; k++) {
    snprintf(name, sizeof name, "mrcnn_mask_conv%d", k);
    conv(&tb, name, 3, 3, 256, 256, CX_W_CONV);
    snprintf(name, sizeof name, "mrcnn_mask_bn%d", k);
    bn(&tb, name, 256);
  }
  conv(&tb, "mrcnn_mask_deconv", 2, 2, 256, 256, CX_W_DECONV); /* (kh, kw, out, in) */
  conv(&tb, "mrcnn_mask", 1, 1, 256, nc, CX_W_CONV);
  *out = tb.t;
  *count = tb.n;
  return 0;
}
