/* FLOP count of the Mask R-CNN graph from the layer shapes (for `ctxdiff bench`'s achieved
 * TFLOP/s): 2 x multiply-adds of every convolution, dense layer and the mask deconvolution,
 * walking the same shapes as the graph (model.c). Pooling, ROI align, NMS and the elementwise
 * ops are not counted (they are memory-bound and small next to the GEMMs). */
#include "model_internal.h"

static double layer_flops(const cx_layer *L, double n, int h, int w, int *ho, int *wo) {
  cx_conv2d_desc d = L->d;
  if (L->same) {
    cx_same_pads(h, d.kh, d.stride, &d.pad_t, &d.pad_b);
    cx_same_pads(w, d.kw, d.stride, &d.pad_l, &d.pad_r);
  }
  if (ho) *ho = cx_conv2d_out(h, d.kh, d.stride, d.pad_t, d.pad_b);
  if (wo) *wo = cx_conv2d_out(w, d.kw, d.stride, d.pad_l, d.pad_r);
  return cx_conv2d_flops(&d, n, h, w);
}

double cx_model_flops(const cx_model *m, int H, int W, int n, int mask_rows) {
  if (H < 64 || W < 64 || n < 1) return 0;
  const int R = m->cfg.POST_NMS_ROIS_INFERENCE, NC = m->num_classes;
  double f = 0;
  int h, w;
  f += layer_flops(&m->conv1, n, H, W, &h, &w);
  h = (h + 1) / 2; w = (w + 1) / 2; /* stem max pool 3x3/2 SAME */
  int fh[5], fw[5];
  for (int s = 0; s < 4; s++) {
    for (int b = 0; b < m->nblocks[s]; b++) {
      const cx_block *B = &m->blocks[s][b];
      int h2, w2;
      f += layer_flops(&B->a, n, h, w, &h2, &w2);
      f += layer_flops(&B->b, n, h2, w2, NULL, NULL);
      if (B->has_shortcut) f += layer_flops(&B->shortcut, n, h, w, NULL, NULL);
      f += layer_flops(&B->c, n, h2, w2, NULL, NULL);
      h = h2; w = w2;
    }
    fh[s] = h; fw[s] = w;
  }
  fh[4] = (fh[3] + 1) / 2; fw[4] = (fw[3] + 1) / 2;
  for (int l = 0; l < 4; l++) {
    f += layer_flops(&m->fpn_lat[l], n, fh[l], fw[l], NULL, NULL);
    f += layer_flops(&m->fpn_out[l], n, fh[l], fw[l], NULL, NULL);
  }
  for (int l = 0; l < 5; l++) {
    int hs, ws;
    f += layer_flops(&m->rpn_shared, n, fh[l], fw[l], &hs, &ws);
    f += layer_flops(&m->rpn_class, n, hs, ws, NULL, NULL);
    f += layer_flops(&m->rpn_bbox, n, hs, ws, NULL, NULL);
  }
  const double nR = (double)n * R;
  f += layer_flops(&m->cls_conv1, nR, 7, 7, NULL, NULL);
  f += layer_flops(&m->cls_conv2, nR, 1, 1, NULL, NULL);
  f += 2.0 * nR * 1024 * NC + 2.0 * nR * 1024 * 4 * NC; /* logits, box deltas */
  if (mask_rows > 0) {
    for (int k = 0; k < 4; k++) f += layer_flops(&m->mask_conv[k], mask_rows, 14, 14, NULL, NULL);
    f += 2.0 * mask_rows * 196 * 256 * 4 * 256; /* deconv 2x2/2 as a GEMM */
    f += cx_mask_class_flops(m, mask_rows);
  }
  return f;
}
