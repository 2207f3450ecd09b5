/* The per-image result file of `ctxdiff segment` (DIR/<stem>.json):
 *
 *   { "image":    {"file", "width", "height"},
 *     "weights":  {"file", "backbone", "classes", "synthetic"},
 *     "settings": {NAME: value, ...}       only settings that differ from the defaults
 *     "timings_ms": {"decode", "preprocess", ..., "total", "write"},
 *     "detections": [ {"class_id", "class_name", "score",
 *                      "bbox": [x, y, w, h]          COCO, original pixels
 *                      "roi":  [y1, x1, y2, x2]      matterport, y2/x2 exclusive
 *                      "mask": {"size": [h, w], "counts": "..."}   COCO compressed RLE
 *                    }, ... ]  in the model's order (descending score) } */
#ifndef CX_SEG_JSON_H
#define CX_SEG_JSON_H

#include <stdio.h>

#include "cx_error.h"
#include "mrcnn.h"

typedef struct cx_seg_setting {
  const char *name, *value; /* value as matterport-style text ("0.5", "(32, 64)", "square") */
} cx_seg_setting;

typedef struct cx_seg_record {
  const char *image_file;
  int width, height;
  const char *weights_file; /* NULL for synthetic weights */
  const char *backbone;
  int num_classes;
  int synthetic;
  const cx_seg_setting *settings;
  int nsettings;
  const cx_timings *timings; /* may be NULL */
  double decode_ms, write_ms;
  int batch_size;
  const cx_detections *det;
  const char *const *class_names; /* class_names[class_id] or NULL */
  int nclass_names;
} cx_seg_record;

/* Writes the JSON document to f (pretty-printed, one detection per few lines). */
int cx_seg_json_write(FILE *f, const cx_seg_record *r, cx_err *e);

#endif
