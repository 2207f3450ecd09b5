/* The weight-bearing tensors of matterport's Mask R-CNN (spec §14.4): names
 * "<layer>/<weight>" and Keras shapes, for a backbone and class count. Used to validate
 * loaded weights, to generate synthetic weights, and by the .h5 converter. */
#ifndef CX_WEIGHTS_TABLE_H
#define CX_WEIGHTS_TABLE_H

#include <stdint.h>

#include "config.h"
#include "cx_error.h"

typedef enum { CX_W_CONV, CX_W_DECONV, CX_W_DENSE, CX_W_BN } cx_weight_kind;

typedef struct cx_weight_spec {
  char name[48];   /* "<layer>/<weight>" */
  char layer[40];  /* "<layer>" */
  const char *weight; /* "kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance" */
  cx_weight_kind kind;
  int ndim;
  int64_t shape[4];
} cx_weight_spec;

/* Fills a malloc'd table (free with free()). */
int cx_weight_table(cx_backbone bb, int num_classes, cx_weight_spec **out, int *count, cx_err *e);
const char *cx_backbone_name(cx_backbone bb);
/* Number of stage-4 blocks: 6 (resnet50) or 23 (resnet101). */
int cx_stage4_blocks(cx_backbone bb);

#endif
