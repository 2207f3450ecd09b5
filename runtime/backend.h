/* Backend interface: the Mask R-CNN op set, declared once. A backend fills a cx_backend
 * with its implementations (same signatures as the CPU kernels of kernels/cpu/, pointers
 * to the backend's own memory) and says which ops it supports. The graph (model.c) calls
 * ops only through this table; tests/kernels and `ctxdiff validate` run every supported op
 * of every backend and compare with the CPU backend (ggml's test-backend-ops pattern). */
#ifndef CX_BACKEND_H
#define CX_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "cpu_kernels.h"

typedef enum cx_op {
  CX_OP_CONV2D,          /* conv + bias (+ residual) (+ ReLU), TF padding */
  CX_OP_DENSE,
  CX_OP_MAXPOOL_SAME,
  CX_OP_SUBSAMPLE2,      /* P6 */
  CX_OP_UPSAMPLE2_ADD,   /* FPN top-down */
  CX_OP_SOFTMAX,
  CX_OP_SIGMOID,
  CX_OP_DECONV2X2,       /* mask head transposed conv */
  CX_OP_CROP_AND_RESIZE, /* PyramidROIAlign sampling */
  CX_OP_ROI_LEVELS,
  CX_OP_BOX_DELTAS,
  CX_OP_CLIP_BOXES,
  CX_OP_TOPK,
  CX_OP_NMS,
  CX_OP_RESIZE_U8,       /* image resampling (preprocess) */
  CX_OP_RESIZE_MASK,     /* mask resampling (unmold) */
  CX_OP_MASK_CLASS,      /* mrcnn_mask at each detection's own class, sigmoid */
  CX_OP_COUNT
} cx_op;

const char *cx_op_name(cx_op op);

typedef struct cx_backend {
  const char *name;
  int (*supports)(cx_op op);
  void (*conv2d)(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y, const float *residual,
                 int relu, float *ws);
  void (*dense)(const float *x, int rows, int in, const float *k, const float *bias, int out, int relu, float *y);
  void (*maxpool_same)(const float *x, int n, int h, int w, int c, int k, int s, float *y);
  void (*subsample2)(const float *x, int n, int h, int w, int c, float *y);
  void (*upsample2_add)(const float *x, int n, int h, int w, int c, float *y);
  void (*softmax_rows)(const float *x, size_t rows, int cols, float *y);
  void (*sigmoid)(float *x, size_t count);
  void (*deconv2x2)(const float *x, int n, int h, int w, int cin, const float *packed, const float *bias, int cout,
                    int relu, float *y, float *ws);
  void (*crop_and_resize)(const float *feat, int hf, int wf, int c, const float *boxes, int nb, int ph, int pw,
                          float *out);
  void (*roi_levels)(const float *boxes, int nb, int image_h, int image_w, int *levels);
  void (*apply_box_deltas)(const float *boxes, const float *deltas, int nb, float *out);
  void (*clip_boxes)(float *boxes, int nb, const float window[4]);
  int (*topk_stable)(const float *scores, int n, int k, int *idx_out, int *ws);
  int (*nms)(const float *boxes, const float *scores, int n, int max_out, float iou_threshold, int *sel_out, void *ws);
  void (*resize_u8)(const uint8_t *in, int ih, int iw, int c, int oh, int ow, uint8_t *out);
  void (*resize_mask)(const float *in, int ih, int iw, int oh, int ow, double *out);
  void (*mask_class_sigmoid)(const float *x, int rows, int pix, int cin, const float *kernel, const float *bias,
                             int nc, const int *cls, float *y);
} cx_backend;

/* The CPU backend (kernels/cpu): supports every op. */
const cx_backend *cx_backend_cpu(void);

#endif
