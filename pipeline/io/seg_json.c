/* Writer of the segment result file (see seg_json.h). */
#include "seg_json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "rle.h"

/* A setting value that is a plain number is written as a JSON number, anything else as
 * a string (tuples, names). */
static void write_setting_value(FILE *f, const char *v) {
  char *end = NULL;
  double d = strtod(v, &end);
  if (end && end != v && *end == 0 && isfinite(d) && strchr("-0123456789", v[0]) &&
      !(v[0] == '0' && v[1] >= '0' && v[1] <= '9'))
    fputs(v, f);
  else
    cx_json_write_string(f, v);
}

static void write_ms(FILE *f, const char *name, double ms, int *first) {
  fprintf(f, "%s\n    \"%s\": %.3f", *first ? "" : ",", name, ms);
  *first = 0;
}

int cx_seg_json_write(FILE *f, const cx_seg_record *r, cx_err *e) {
  const cx_detections *d = r->det;
  fputs("{\n  \"image\": {\"file\": ", f);
  cx_json_write_string(f, r->image_file);
  fprintf(f, ", \"width\": %d, \"height\": %d},\n", r->width, r->height);
  fputs("  \"weights\": {\"file\": ", f);
  if (r->weights_file)
    cx_json_write_string(f, r->weights_file);
  else
    fputs("null", f);
  fputs(", \"backbone\": ", f);
  cx_json_write_string(f, r->backbone ? r->backbone : "");
  fprintf(f, ", \"classes\": %d, \"synthetic\": %s},\n", r->num_classes, r->synthetic ? "true" : "false");
  fputs("  \"settings\": {", f);
  for (int i = 0; i < r->nsettings; i++) {
    fputs(i ? ", " : "", f);
    cx_json_write_string(f, r->settings[i].name);
    fputs(": ", f);
    write_setting_value(f, r->settings[i].value);
  }
  fputs("},\n", f);
  fputs("  \"timings_ms\": {", f);
  int first = 1;
  write_ms(f, "decode", r->decode_ms, &first);
  if (r->timings) {
    const cx_timings *t = r->timings;
    write_ms(f, "preprocess", t->preprocess, &first);
    write_ms(f, "backbone_fpn", t->backbone_fpn, &first);
    write_ms(f, "rpn_proposals", t->rpn_proposals, &first);
    write_ms(f, "classifier_detection", t->classifier_detection, &first);
    write_ms(f, "mask_head", t->mask_head, &first);
    write_ms(f, "unmold", t->unmold, &first);
    write_ms(f, "total", t->total, &first);
  }
  write_ms(f, "write", r->write_ms, &first);
  fprintf(f, ",\n    \"batch_size\": %d\n  },\n", r->batch_size);
  fputs("  \"detections\": [", f);
  size_t plane = (size_t)d->width * d->height;
  for (int i = 0; i < d->count; i++) {
    const int32_t *roi = d->rois + 4 * i;
    int cid = d->class_ids[i];
    const char *name = (r->class_names && cid >= 0 && cid < r->nclass_names) ? r->class_names[cid] : NULL;
    fprintf(f, "%s\n    {\"class_id\": %d, \"class_name\": ", i ? "," : "", cid);
    if (name)
      cx_json_write_string(f, name);
    else
      fputs("null", f);
    /* %.9g round-trips a float32 exactly. */
    fprintf(f, ", \"score\": %.9g,\n", (double)d->scores[i]);
    fprintf(f, "     \"bbox\": [%d, %d, %d, %d], \"roi\": [%d, %d, %d, %d],\n", roi[1], roi[0], roi[3] - roi[1],
            roi[2] - roi[0], roi[0], roi[1], roi[2], roi[3]);
    /* masks are 0 outside their rois (mrcnn.h): encode from the box, not the whole plane */
    char *counts = cx_rle_encode_mask_box(d->masks + plane * i, d->height, d->width, roi, e);
    if (!counts) return cx_failctx(e, "detection %d mask", i);
    fprintf(f, "     \"mask\": {\"size\": [%d, %d], \"counts\": ", d->height, d->width);
    cx_json_write_string(f, counts);
    fputs("}}", f);
    free(counts);
  }
  fputs(d->count ? "\n  ]\n}\n" : "]\n}\n", f);
  if (ferror(f)) return cx_fail(e, "error writing the JSON result");
  return 0;
}
