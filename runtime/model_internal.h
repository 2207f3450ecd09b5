/* Internal state of the Mask R-CNN model: folded layers and the per-shape memory plan. */
#ifndef CX_MODEL_INTERNAL_H
#define CX_MODEL_INTERNAL_H

#include "backend.h"
#include "cpu_kernels.h"
#include "mrcnn.h"

/* A convolution with its batch norm folded in (owned kernel and bias). */
typedef struct cx_layer {
  cx_conv2d_desc d;
  float *kernel, *bias;
  float *winograd; /* F(2x2, 3x3) form of 3x3 stride-1 kernels, or NULL */
  int same; /* TF SAME padding computed per input size */
} cx_layer;

typedef struct cx_block {
  cx_layer a, b, c, shortcut;
  int has_shortcut;
} cx_block;

/* Buffers for one (batch, molded H, molded W); allocated once, reused per call. */
typedef struct cx_plan {
  int n, H, W;
  int fh[5], fw[5];         /* P2..P6 sizes */
  size_t anchors_total, level_off[5];
  float *anchors;           /* [A, 4] normalized */
  float *molded;            /* [n, H, W, 3] */
  float *act[5];            /* backbone working buffers */
  size_t act_size;
  float *C[4], *Q[4], *P[5];
  float *rpn_shared;        /* [n, fh0, fw0, 512] */
  float *rpn_logits, *rpn_probs, *rpn_bbox; /* [n, A, 2], [n, A, 2], [n, A, 4] */
  float *scores;            /* [A] */
  int *topk, *topk_ws;      /* [K], [2A] */
  float *pre_boxes, *pre_deltas, *pre_scores; /* [K, 4], [K, 4], [K] */
  int *sel;                 /* [max(R, D)] */
  void *nms_ws;
  float *rois;              /* [n, R, 4] */
  float *pool7;             /* [n*R, 7, 7, 256] */
  float *fc1, *fc2;         /* [n*R, 1024] */
  float *logits, *probs, *deltas; /* [n*R, NC], [n*R, NC], [n*R, 4*NC] */
  float *det;               /* [n, D, 6] */
  int *det_count;           /* [n] */
  int *cls_idx;             /* [R] */
  float *cls_boxes, *cls_scores; /* [R, 4], [R] */
  float *refined, *det_scores; /* [R, 4], [R] */
  int *det_class;           /* [R] */
  float *pool14, *mask_a, *mask_b; /* [n*D, 14, 14, 256] x 3 */
  float *deconv, *deconv_ws; /* [n*D, 28, 28, 256], [n*D*14*14*1024] */
  /* [n*D, 28, 28, mask_ch]: mask_ch 1, each row's own class (what unmolding reads), or NC, every
   * class as matterport's mrcnn_mask tensor, when intermediates are dumped for the stage tests */
  float *masks;
  int mask_ch;
  int *mask_cls;            /* [n*D] class of each packed mask row */
  float *conv_ws;
  size_t conv_ws_size;
  /* Grow-only scratch whose size depends on the input image rather than the molded shape:
   * after the first image of a given size the hot path allocates nothing but its results. */
  uint8_t *resized;         /* resized image before padding */
  size_t resized_cap;
  double *mask_resized;     /* one mask resized to its box */
  size_t mask_cap;
  void *mold;               /* per-image molding geometry of the batch */
  size_t mold_cap;
} cx_plan;

/* Molding geometry of one image (spec §3). */
typedef struct cx_mold_info {
  int H, W;          /* molded size */
  int window[4];     /* y1, x1, y2, x2 in molded pixels */
  double scale;
  int rh, rw;        /* resized size */
} cx_mold_info;

/* Shared by the CPU graph (model.c) and the GPU graph (model_gpu.c), host code:
 * molding geometry and pixels (resized: scratch of rh*rw*3 bytes; out [H, W, 3] float), and
 * unmolding of one image's detections (see model.c). */
int cx_mold_geometry(const cx_config *c, int h, int w, cx_mold_info *mi, cx_err *e);
/* The checks and geometry of a batch (n already checked by the public entry points): every
 * image valid and molding to the same shape; *max_resized: the largest resize scratch. */
int cx_mold_batch(const cx_config *c, const cx_image *images, int n, cx_mold_info *mi, size_t *max_resized,
                  cx_err *e);
void cx_mold_image(const cx_backend *be, const cx_config *c, const cx_image *im, const cx_mold_info *mi,
                   uint8_t *resized, float *out);
int cx_unmold(cx_model *m, int H, int W, const float *det, int N, const float *masks, int mask_channels,
              const cx_image *im, const cx_mold_info *mi, cx_detections *out, cx_err *e);
/* The DetectionLayer's clip window: the molded window in pixels normalised to the H x W
 * canvas (matterport's norm_boxes, float arithmetic). */
void cx_norm_window(const int win_px[4], int H, int W, float win[4]);

/* ProposalLayer (spec §8) on one image's A anchors (anchors [A, 4] normalised, probs [A, 2],
 * bbox [A, 4]): the top PRE_NMS_LIMIT by foreground score, decoded, clipped to the unit square,
 * NMS to POST_NMS_ROIS_INFERENCE = R rows in rois [R, 4] (zero padded). Returns the count.
 * Scratch: K = min(PRE_NMS_LIMIT, A). */
typedef struct cx_prop_scratch {
  float *scores;                         /* [A] */
  int *topk, *topk_ws;                   /* [K], [2A] */
  float *pre_boxes, *pre_deltas, *pre_scores; /* [K, 4], [K, 4], [K] */
  int *sel;                              /* [R] */
  void *nms_ws;                          /* cx_nms_workspace(K) bytes */
} cx_prop_scratch;
int cx_proposal_layer(const cx_backend *be, const cx_config *c, int A, const float *anchors, const float *probs,
                      const float *bbox, const cx_prop_scratch *s, float *rois);

/* DetectionLayer (spec §11) on one image's R = POST_NMS_ROIS_INFERENCE rows (rois [R, 4],
 * probs [R, nc], deltas [R, nc, 4]): argmax class, refined boxes clipped to win (normalised),
 * per-class NMS, the best DETECTION_MAX_INSTANCES by score into det [D, 6] (zero padded).
 * Returns the count. Scratch: the sizes below (model.c's plan buffers, or validate's own). */
typedef struct cx_det_scratch {
  int *cls;          /* [R] */
  float *scores;     /* [R] */
  float *refined;    /* [R, 4] */
  float *boxes;      /* [R, 4] */
  int *idx;          /* [R] */
  float *idx_scores; /* [R] */
  int *keep;         /* [4R]: keep list, alive flags, top-k workspace */
  int *sel;          /* [max(R, D)] */
  void *nms_ws;      /* cx_nms_workspace(R) bytes */
} cx_det_scratch;
int cx_detection_layer(const cx_backend *be, const cx_config *c, int nc, const float *rois, const float *probs,
                       const float *deltas, const float win[4], const cx_det_scratch *s, float *det);

/* GPU state of a model (model_gpu.c, CUDA builds): device weights, buffers, graph. */
typedef struct cx_gpu_model cx_gpu_model;
int cx_gpu_attach(cx_model *m, const char *precision, int device_index, cx_err *e);
void cx_gpu_detach(cx_model *m);
int cx_gpu_detect(cx_model *m, const cx_image *images, int n, cx_detections *out, cx_err *e);
/* cx_detect_submit / _collect / _pending on the GPU (model_gpu.c) */
int cx_gpu_submit(cx_model *m, const cx_image *images, int n, cx_err *e);
int cx_gpu_collect(cx_model *m, int n, cx_detections *out, cx_err *e);
int cx_gpu_pending(const cx_model *m);
int cx_gpu_profile(cx_model *m, const cx_image *images, int n, cx_op_time **ops, int *count, cx_err *e);
int cx_gpu_available(int device_index, cx_err *e); /* 0 when CUDA device N can be used, else why not */

/* The RPN heads as one 1x1 layer of ld >= 6 * apl columns (apl anchors per location): per
 * location rpn_class_raw's 2 * apl logits, then rpn_bbox_pred's 4 * apl deltas, then zero
 * columns; *out owns its kernel and bias. */
int cx_rpn_heads_layer(const cx_model *m, int ld, cx_layer *out, cx_err *e);

/* --profile on the CPU (model.c's cmark): the ops of one batch in run order, wall clock */
typedef struct cx_cpu_prof {
  int on;    /* 1 recording, -1 failed (out of memory), 0 off */
  int stage; /* cx_op_time's stage of the ops marked now */
  int n, cap, open;
  cx_op_time *op;
  double t; /* start of the open op */
} cx_cpu_prof;
/* matterport's names of block b (0 = 'a') of residual stage s (0 = res2): branch2a, branch2b,
 * branch1 (the shortcut), branch2c, e.g. "res4b_branch2a" */
void cx_block_names(int s, int b, char nm[4][32]);
/* Adds op o to the profile rows r[0..*k) (same name and stage: one row, calls and times summed) */
void cx_profile_add(cx_op_time *r, int *k, const cx_op_time *o);

/* A batch submitted on the CPU: computed in cx_detect_submit, kept until collected. */
typedef struct cx_cpu_batch {
  cx_detections *d;
  int n;
  cx_timings t;
} cx_cpu_batch;

struct cx_model {
  cx_config cfg;
  const cx_backend *be; /* ops of the graph */
  cx_tensor_store *store;
  int num_classes;
  char **class_names;
  cx_layer conv1;
  cx_block blocks[4][23];
  int nblocks[4];
  cx_layer fpn_lat[4]; /* c2p2..c5p5 */
  cx_layer fpn_out[4]; /* p2..p5 */
  cx_layer rpn_shared, rpn_class, rpn_bbox;
  cx_layer rpn_heads; /* rpn_class and rpn_bbox as one layer of 6 * anchors-per-location columns */
  cx_layer cls_conv1, cls_conv2, cls_logits, cls_bbox;
  cx_layer mask_conv[4], mask_out;
  float *deconv_packed, *deconv_bias;
  cx_plan plan;
  int planned;
  cx_timings timings;
  char *dump_dir;
  cx_gpu_model *gpu; /* non-NULL: cx_detect runs on the GPU */
  cx_cpu_batch cpu_q[CX_DETECT_DEPTH]; /* CPU batches submitted, not collected */
  int cpu_head, cpu_npending;
  cx_cpu_prof cprof;
};

/* FLOPs of mrcnn_mask at each row's own class (the one column unmolding reads), for the FLOP
 * count and both profiles */
static inline double cx_mask_class_flops(const cx_model *m, double rows) {
  return 2.0 * rows * 784 * m->mask_out.d.cin;
}

#endif
