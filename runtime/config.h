/* Model and inference settings, named exactly as matterport's Config attributes
 * (shared/spec/maskrcnn-matterport.md §1) so that a matterport user recognises them.
 * cx_config_default() gives matterport's base defaults with the COCO inference overrides
 * (NUM_CLASSES 81, IMAGES_PER_GPU 1). */
#ifndef CX_CONFIG_H
#define CX_CONFIG_H

#include "cx_error.h"

#define CX_MAX_LEVELS 5
#define CX_MAX_RATIOS 8

typedef enum { CX_RESIZE_NONE, CX_RESIZE_SQUARE, CX_RESIZE_PAD64, CX_RESIZE_CROP } cx_resize_mode;
typedef enum { CX_BACKBONE_RESNET50, CX_BACKBONE_RESNET101 } cx_backbone;

typedef struct cx_config {
  char NAME[64];
  int IMAGES_PER_GPU, GPU_COUNT;
  cx_backbone BACKBONE;
  int BACKBONE_STRIDES[CX_MAX_LEVELS];
  int FPN_CLASSIF_FC_LAYERS_SIZE, TOP_DOWN_PYRAMID_SIZE;
  int NUM_CLASSES;
  double RPN_ANCHOR_SCALES[CX_MAX_LEVELS];
  double RPN_ANCHOR_RATIOS[CX_MAX_RATIOS];
  int RPN_ANCHOR_RATIOS_COUNT;
  int RPN_ANCHOR_STRIDE;
  double RPN_NMS_THRESHOLD;
  int PRE_NMS_LIMIT, POST_NMS_ROIS_INFERENCE;
  cx_resize_mode IMAGE_RESIZE_MODE;
  int IMAGE_MIN_DIM, IMAGE_MAX_DIM;
  double IMAGE_MIN_SCALE;
  int IMAGE_CHANNEL_COUNT;
  double MEAN_PIXEL[3];
  int POOL_SIZE, MASK_POOL_SIZE;
  int MASK_SHAPE[2];
  double RPN_BBOX_STD_DEV[4], BBOX_STD_DEV[4];
  int DETECTION_MAX_INSTANCES;
  double DETECTION_MIN_CONFIDENCE, DETECTION_NMS_THRESHOLD;
  double BN_EPSILON; /* Keras BatchNormalization epsilon (not stored in .h5 files) */
  /* Runtime limit, not a matterport setting: largest accepted input side in pixels. */
  int MAX_INPUT_DIM;
} cx_config;

void cx_config_default(cx_config *c);
/* Set one setting from text, e.g. ("DETECTION_MIN_CONFIDENCE", "0"),
 * ("RPN_ANCHOR_SCALES", "(128, 256, 512, 1024, 2048)"), ("BACKBONE", "resnet50").
 * Unknown names and out-of-range values are errors naming the setting. */
int cx_config_set(cx_config *c, const char *name, const char *value, cx_err *e);
/* "NAME=VALUE" form of cx_config_set. */
int cx_config_set_kv(cx_config *c, const char *kv, cx_err *e);
/* Cross-field checks (e.g. canvas multiple of 64, BACKBONE_STRIDES vs architecture). */
int cx_config_validate(const cx_config *c, cx_err *e);

/* Introspection: the list of setting names, and a setting's value as text
 * (matterport/Python-like: 0.7, (32, 64), "square"). Returns 0 or -1 for unknown name. */
int cx_config_count(void);
const char *cx_config_name(int i);
int cx_config_format(const cx_config *c, const char *name, char *buf, size_t len);

#endif
