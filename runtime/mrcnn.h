/* Public API of the Mask R-CNN runtime: load weights, detect objects in RGB images.
 *
 *   cx_model *m; cx_err e;
 *   cx_config cfg; cx_config_default(&cfg); cx_config_set(&cfg, "DETECTION_MIN_CONFIDENCE", "0.5", &e);
 *   if (cx_model_open("coco.safetensors", &cfg, &m, &e)) { puts(e.msg); ... }
 *   cx_image img = { width, height, rgb };            // uint8 HxWx3, row-major
 *   cx_detections d;
 *   if (cx_detect(m, &img, 1, &d, &e)) ...            // d[i] for image i
 *   cx_detections_free(&d, 1); cx_model_free(m);
 *
 * Backbone and class count are read from the weights (the config's BACKBONE and
 * NUM_CLASSES are overwritten by the file's). Memory is planned once per molded
 * shape and batch; repeated calls with the same shapes do not allocate on the hot path. */
#ifndef CX_MRCNN_H
#define CX_MRCNN_H

#include <stdint.h>

#include "config.h"
#include "cx_error.h"
#include "tensor_store.h"

typedef struct cx_model cx_model;

typedef struct cx_image {
  int width, height;
  const uint8_t *rgb; /* height * width * 3, RGB */
} cx_image;

typedef struct cx_detections {
  int count;
  int height, width;   /* original image size */
  int32_t *rois;       /* [count][4] y1, x1, y2, x2 in original pixels (y2/x2 exclusive) */
  int32_t *class_ids;  /* [count] */
  float *scores;       /* [count] */
  uint8_t *masks;      /* [count][height][width], 0 or 1; 0 outside the detection's roi */
} cx_detections;

/* Per-stage wall time of the last cx_detect call, milliseconds. */
typedef struct cx_timings {
  double preprocess, backbone_fpn, rpn_proposals, classifier_detection, mask_head, unmold, total;
} cx_timings;

int cx_model_open(const char *weights_path, const cx_config *cfg, cx_model **out, cx_err *e);
/* Takes ownership of `store` (freed with the model, also on failure). */
int cx_model_from_store(cx_tensor_store *store, const cx_config *cfg, cx_model **out, cx_err *e);
void cx_model_free(cx_model *m);

const cx_config *cx_model_config(const cx_model *m);
const char *cx_model_class_name(const cx_model *m, int class_id); /* NULL when unknown */
const cx_timings *cx_model_timings(const cx_model *m);

/* Where cx_detect runs: "cpu" (default), "cuda" (GPU 0) or "cuda:N" (GPU N, as numbered by
 * CUDA_VISIBLE_DEVICES) in builds with the CUDA backend; precision "fp32" (strict, the reference
 * path), "fp16" or "bf16". One GPU per process: a second model may not attach to another one.
 * Errors name what is missing ("no CUDA device", "this build has no CUDA backend"). */
int cx_model_set_device(cx_model *m, const char *device, const char *precision, cx_err *e);
const char *cx_model_device(const cx_model *m);
/* Whether `device` ("cpu", "cuda" or "cuda:N") can be used on this machine and build, without a
 * model: 0, or -1 with the reason (for failing early, before hours of other work). */
int cx_device_check(const char *device, cx_err *e);
/* Parses a device name: 0 for "cpu" (*cuda_index -1), 1 for "cuda" (0) or "cuda:N" (N), -1 with
 * the reason in e otherwise. Checks the syntax only. */
int cx_device_parse(const char *device, int *cuda_index, cx_err *e);

/* FLOPs (2 x multiply-adds of the convolutions, dense layers and the mask deconvolution) of one
 * cx_detect call on n images molded to H x W with mask_rows detections through the mask head
 * in total; 0 for invalid shapes. Used by `ctxdiff bench` for achieved TFLOP/s. */
double cx_model_flops(const cx_model *m, int H, int W, int n, int mask_rows);

/* Per-op profile of one batch on the GPU (`ctxdiff bench --profile`): the batch runs once
 * without the stage graphs, with a CUDA event before every op, so each op's time is its span on
 * the compute stream (small ops include the launch gap when the GPU waits for the host).
 * *ops (free() it) holds *count rows in execution order, same-named ops summed (the RPN heads
 * run once per image and level): first the preprocessing, last the unmolding (host clock), both
 * from the call's stage timings. Needs the GPU backend and no pending batches. */
typedef struct cx_op_time {
  char name[56];   /* matterport's layer name ("res4b_branch2b", "fpn_p2") or the op */
  char kernel[40]; /* convolutions: the kernel that ran ("v3 128x128 a16", "winograd F(4x4,3x3)") */
  int stage;       /* 0 preprocess, 1 backbone/FPN, 2 RPN/proposals, 3 classifier/detection, 4 mask head, 5 unmold */
  int calls;
  double ms, flops; /* flops: cx_model_flops' count for the op (0 for ops it does not count) */
} cx_op_time;
int cx_model_profile(cx_model *m, const cx_image *images, int n, cx_op_time **ops, int *count, cx_err *e);

/* Runs n images as one batch (all must mold to the same shape). out[n] is filled. Refused
 * while submitted batches are pending (below). */
int cx_detect(cx_model *m, const cx_image *images, int n, cx_detections *out, cx_err *e);
void cx_detections_free(cx_detections *d, int n);

/* Pipelined detection, for throughput. cx_detect_submit starts a batch and returns: on the GPU
 * once the images are molded and the upload and the network are queued (the images may be
 * freed then); on the CPU after computing it. cx_detect_collect waits for the oldest submitted
 * batch and fills out[n] (n: that batch's image count) with exactly what cx_detect returns;
 * cx_model_timings then describes that batch (total: from its submit to its collect). Up to
 * CX_DETECT_DEPTH batches may be in flight: while one runs on the GPU the caller decodes,
 * submits and collects the others, so host work, copies and GPU compute overlap.
 *   submit(b0); submit(b1); collect(b0); submit(b2); collect(b1); ... collect(last)
 * A batch that needs another memory plan (other batch size or molded shape) is refused while
 * batches are pending. Errors: a failing submit queues nothing; after a device error every
 * pending batch is dropped and the message says so; otherwise pending batches stay. */
#define CX_DETECT_DEPTH 2
int cx_detect_submit(cx_model *m, const cx_image *images, int n, cx_err *e);
int cx_detect_collect(cx_model *m, int n, cx_detections *out, cx_err *e);
int cx_detect_pending(const cx_model *m); /* batches submitted and not collected */

/* Testing aid: when set, cx_detect writes the named intermediates of image 0
 * (molded_image, anchors, C2..C5, P2..P6, rpn_class, rpn_bbox, proposals, mrcnn_class,
 * mrcnn_bbox, detections, mrcnn_mask) as .npy files into this directory. */
void cx_model_set_dump_dir(cx_model *m, const char *dir);

#endif
