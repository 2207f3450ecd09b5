/* matterport Config settings by name: defaults, parsing from text, validation. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_INT, T_DOUBLE, T_INTS, T_DOUBLES, T_STR, T_RESIZE, T_BACKBONE } setting_type;

typedef struct {
  const char *name;
  setting_type type;
  size_t off;
  int min_count, max_count; /* arrays: accepted element counts */
  size_t count_off;         /* arrays of variable length: where the count is stored (0: fixed) */
  double lo, hi;            /* accepted range of each value */
} setting;

#define F(x) offsetof(cx_config, x)
static const setting SETTINGS[] = {
    {"NAME", T_STR, F(NAME), 0, 0, 0, 0, 0},
    {"IMAGES_PER_GPU", T_INT, F(IMAGES_PER_GPU), 0, 0, 0, 1, 1024},
    {"GPU_COUNT", T_INT, F(GPU_COUNT), 0, 0, 0, 1, 1},
    {"BACKBONE", T_BACKBONE, F(BACKBONE), 0, 0, 0, 0, 0},
    {"BACKBONE_STRIDES", T_INTS, F(BACKBONE_STRIDES), 5, 5, 0, 1, 1024},
    {"FPN_CLASSIF_FC_LAYERS_SIZE", T_INT, F(FPN_CLASSIF_FC_LAYERS_SIZE), 0, 0, 0, 1024, 1024},
    {"TOP_DOWN_PYRAMID_SIZE", T_INT, F(TOP_DOWN_PYRAMID_SIZE), 0, 0, 0, 256, 256},
    {"NUM_CLASSES", T_INT, F(NUM_CLASSES), 0, 0, 0, 2, 100000},
    {"RPN_ANCHOR_SCALES", T_DOUBLES, F(RPN_ANCHOR_SCALES), 5, 5, 0, 1e-3, 1e6},
    {"RPN_ANCHOR_RATIOS", T_DOUBLES, F(RPN_ANCHOR_RATIOS), 1, CX_MAX_RATIOS, F(RPN_ANCHOR_RATIOS_COUNT), 1e-6, 1e6},
    {"RPN_ANCHOR_STRIDE", T_INT, F(RPN_ANCHOR_STRIDE), 0, 0, 0, 1, 64},
    {"RPN_NMS_THRESHOLD", T_DOUBLE, F(RPN_NMS_THRESHOLD), 0, 0, 0, 0, 1},
    {"PRE_NMS_LIMIT", T_INT, F(PRE_NMS_LIMIT), 0, 0, 0, 1, 10000000},
    {"POST_NMS_ROIS_INFERENCE", T_INT, F(POST_NMS_ROIS_INFERENCE), 0, 0, 0, 1, 100000},
    {"IMAGE_RESIZE_MODE", T_RESIZE, F(IMAGE_RESIZE_MODE), 0, 0, 0, 0, 0},
    {"IMAGE_MIN_DIM", T_INT, F(IMAGE_MIN_DIM), 0, 0, 0, 0, 16384},
    {"IMAGE_MAX_DIM", T_INT, F(IMAGE_MAX_DIM), 0, 0, 0, 64, 16384},
    {"IMAGE_MIN_SCALE", T_DOUBLE, F(IMAGE_MIN_SCALE), 0, 0, 0, 0, 1000},
    {"IMAGE_CHANNEL_COUNT", T_INT, F(IMAGE_CHANNEL_COUNT), 0, 0, 0, 3, 3},
    {"MEAN_PIXEL", T_DOUBLES, F(MEAN_PIXEL), 3, 3, 0, -1e6, 1e6},
    {"POOL_SIZE", T_INT, F(POOL_SIZE), 0, 0, 0, 7, 7},
    {"MASK_POOL_SIZE", T_INT, F(MASK_POOL_SIZE), 0, 0, 0, 14, 14},
    {"MASK_SHAPE", T_INTS, F(MASK_SHAPE), 2, 2, 0, 28, 28},
    {"RPN_BBOX_STD_DEV", T_DOUBLES, F(RPN_BBOX_STD_DEV), 4, 4, 0, 0, 1e6},
    {"BBOX_STD_DEV", T_DOUBLES, F(BBOX_STD_DEV), 4, 4, 0, 0, 1e6},
    {"DETECTION_MAX_INSTANCES", T_INT, F(DETECTION_MAX_INSTANCES), 0, 0, 0, 1, 100000},
    {"DETECTION_MIN_CONFIDENCE", T_DOUBLE, F(DETECTION_MIN_CONFIDENCE), 0, 0, 0, 0, 1},
    {"DETECTION_NMS_THRESHOLD", T_DOUBLE, F(DETECTION_NMS_THRESHOLD), 0, 0, 0, 0, 1},
    {"BN_EPSILON", T_DOUBLE, F(BN_EPSILON), 0, 0, 0, 0, 1},
    {"MAX_INPUT_DIM", T_INT, F(MAX_INPUT_DIM), 0, 0, 0, 1, 1 << 20},
};
#undef F
#define NSETTINGS ((int)(sizeof SETTINGS / sizeof SETTINGS[0]))

void cx_config_default(cx_config *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->NAME, sizeof c->NAME, "coco");
  c->IMAGES_PER_GPU = 1;
  c->GPU_COUNT = 1;
  c->BACKBONE = CX_BACKBONE_RESNET101;
  const int strides[5] = {4, 8, 16, 32, 64};
  const double scales[5] = {32, 64, 128, 256, 512};
  for (int i = 0; i < 5; i++) {
    c->BACKBONE_STRIDES[i] = strides[i];
    c->RPN_ANCHOR_SCALES[i] = scales[i];
  }
  c->FPN_CLASSIF_FC_LAYERS_SIZE = 1024;
  c->TOP_DOWN_PYRAMID_SIZE = 256;
  c->NUM_CLASSES = 81;
  c->RPN_ANCHOR_RATIOS[0] = 0.5;
  c->RPN_ANCHOR_RATIOS[1] = 1;
  c->RPN_ANCHOR_RATIOS[2] = 2;
  c->RPN_ANCHOR_RATIOS_COUNT = 3;
  c->RPN_ANCHOR_STRIDE = 1;
  c->RPN_NMS_THRESHOLD = 0.7;
  c->PRE_NMS_LIMIT = 6000;
  c->POST_NMS_ROIS_INFERENCE = 1000;
  c->IMAGE_RESIZE_MODE = CX_RESIZE_SQUARE;
  c->IMAGE_MIN_DIM = 800;
  c->IMAGE_MAX_DIM = 1024;
  c->IMAGE_MIN_SCALE = 0;
  c->IMAGE_CHANNEL_COUNT = 3;
  c->MEAN_PIXEL[0] = 123.7;
  c->MEAN_PIXEL[1] = 116.8;
  c->MEAN_PIXEL[2] = 103.9;
  c->POOL_SIZE = 7;
  c->MASK_POOL_SIZE = 14;
  c->MASK_SHAPE[0] = c->MASK_SHAPE[1] = 28;
  const double sd[4] = {0.1, 0.1, 0.2, 0.2};
  memcpy(c->RPN_BBOX_STD_DEV, sd, sizeof sd);
  memcpy(c->BBOX_STD_DEV, sd, sizeof sd);
  c->DETECTION_MAX_INSTANCES = 100;
  c->DETECTION_MIN_CONFIDENCE = 0.7;
  c->DETECTION_NMS_THRESHOLD = 0.3;
  c->BN_EPSILON = 1e-3;
  c->MAX_INPUT_DIM = 16384;
}

/* Shortest text that reads back as the same double (0.7, not 0.69999999999999996). */
static void fmt_double(char *buf, size_t len, double v) {
  for (int prec = 6; prec <= 17; prec++) {
    snprintf(buf, len, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) return;
  }
}

static const setting *find(const char *name) {
  for (int i = 0; i < NSETTINGS; i++)
    if (!strcmp(SETTINGS[i].name, name)) return &SETTINGS[i];
  return NULL;
}

static int parse_number(const char *s, double *v, const char **end) {
  while (isspace((unsigned char)*s)) s++;
  errno = 0;
  char *e;
  if (!strncasecmp(s, "true", 4)) { *v = 1; *end = s + 4; return 0; }   /* Python bools */
  if (!strncasecmp(s, "false", 5)) { *v = 0; *end = s + 5; return 0; }
  *v = strtod(s, &e);
  if (e == s || errno || !isfinite(*v)) return -1;
  *end = e;
  return 0;
}

static void strip_copy(const char *in, char *out, size_t len) {
  while (isspace((unsigned char)*in)) in++;
  snprintf(out, len, "%s", in);
  size_t n = strlen(out);
  while (n && isspace((unsigned char)out[n - 1])) out[--n] = 0;
  if (n >= 2 && (out[0] == '"' || out[0] == '\'') && out[n - 1] == out[0]) { /* quoted string */
    memmove(out, out + 1, n - 2);
    out[n - 2] = 0;
  }
}

int cx_config_set(cx_config *c, const char *name, const char *value, cx_err *e) {
  const setting *s = find(name);
  if (!s) {
    if (!strcmp(name, "BATCH_SIZE") || !strcmp(name, "IMAGE_SHAPE") || !strcmp(name, "IMAGE_META_SIZE"))
      return cx_fail(e, "setting %s is computed by matterport from other settings and cannot be set", name);
    return cx_fail(e, "unknown setting '%s' (settings use matterport's Config names, e.g. DETECTION_MIN_CONFIDENCE)", name);
  }
  char *base = (char *)c + s->off;
  char v[512];
  strip_copy(value, v, sizeof v);
  switch (s->type) {
    case T_STR:
      snprintf(base, sizeof c->NAME, "%.63s", v);
      return 0;
    case T_RESIZE: {
      const char *names[4] = {"none", "square", "pad64", "crop"};
      for (int i = 0; i < 4; i++)
        if (!strcmp(v, names[i])) {
          if (i == CX_RESIZE_CROP)
            return cx_fail(e, "IMAGE_RESIZE_MODE 'crop' is a random training crop and has no deterministic inference meaning; use square, pad64 or none");
          *(cx_resize_mode *)base = (cx_resize_mode)i;
          return 0;
        }
      return cx_fail(e, "IMAGE_RESIZE_MODE must be one of none, square, pad64 (got '%s')", v);
    }
    case T_BACKBONE:
      if (!strcmp(v, "resnet50")) *(cx_backbone *)base = CX_BACKBONE_RESNET50;
      else if (!strcmp(v, "resnet101")) *(cx_backbone *)base = CX_BACKBONE_RESNET101;
      else return cx_fail(e, "BACKBONE must be resnet50 or resnet101 (got '%s')", v);
      return 0;
    case T_INT:
    case T_DOUBLE: {
      double d;
      const char *end;
      if (parse_number(v, &d, &end) || *end) return cx_fail(e, "%s needs a number (got '%s')", name, v);
      if (d < s->lo || d > s->hi) return cx_fail(e, "%s = %s is out of range [%g, %g]", name, v, s->lo, s->hi);
      if (s->type == T_INT) {
        if (d != floor(d)) return cx_fail(e, "%s needs an integer (got '%s')", name, v);
        *(int *)base = (int)d;
      } else {
        *(double *)base = d;
      }
      return 0;
    }
    case T_INTS:
    case T_DOUBLES: {
      /* Accept Python/JSON sequences: (a, b), [a, b], or a bare comma list. */
      const char *p = v;
      while (isspace((unsigned char)*p)) p++;
      char close = 0;
      if (*p == '(') close = ')'; else if (*p == '[') close = ']';
      if (close) p++;
      double vals[CX_MAX_RATIOS + 1];
      int n = 0;
      for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (close && *p == close) break;
        if (!*p && !close) break;
        if (n > CX_MAX_RATIOS) return cx_fail(e, "%s has too many values (got '%s')", name, v);
        const char *end;
        if (parse_number(p, &vals[n], &end)) return cx_fail(e, "%s needs a list of numbers like (1, 2, 3) (got '%s')", name, v);
        if (vals[n] < s->lo || vals[n] > s->hi) return cx_fail(e, "%s value %g is out of range [%g, %g]", name, vals[n], s->lo, s->hi);
        if (s->type == T_INTS && vals[n] != floor(vals[n])) return cx_fail(e, "%s needs integers (got '%s')", name, v);
        n++;
        p = end;
        while (isspace((unsigned char)*p)) p++;
        if (*p == ',') { p++; continue; }
        if (close && *p == close) break;
        if (!*p && !close) break;
        return cx_fail(e, "%s: cannot read '%s' as a list of numbers", name, v);
      }
      if (close) {
        p++;
        while (isspace((unsigned char)*p)) p++;
        if (*p) return cx_fail(e, "%s: unexpected text after the list in '%s'", name, v);
      }
      if (n < s->min_count || n > s->max_count) {
        if (s->min_count == s->max_count) return cx_fail(e, "%s needs exactly %d values (got %d)", name, s->min_count, n);
        return cx_fail(e, "%s needs %d to %d values (got %d)", name, s->min_count, s->max_count, n);
      }
      for (int i = 0; i < n; i++) {
        if (s->type == T_INTS) ((int *)base)[i] = (int)vals[i];
        else ((double *)base)[i] = vals[i];
      }
      if (s->count_off) *(int *)((char *)c + s->count_off) = n;
      return 0;
    }
  }
  return cx_fail(e, "internal error setting %s", name);
}

int cx_config_set_kv(cx_config *c, const char *kv, cx_err *e) {
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv) return cx_fail(e, "expected NAME=VALUE (got '%s')", kv);
  char name[64];
  size_t n = (size_t)(eq - kv);
  if (n >= sizeof name) return cx_fail(e, "setting name too long in '%s'", kv);
  memcpy(name, kv, n);
  name[n] = 0;
  char clean[64];
  strip_copy(name, clean, sizeof clean);
  return cx_config_set(c, clean, eq + 1, e);
}

int cx_config_validate(const cx_config *c, cx_err *e) {
  const int arch[5] = {4, 8, 16, 32, 64};
  for (int i = 0; i < 5; i++)
    if (c->BACKBONE_STRIDES[i] != arch[i])
      return cx_fail(e, "BACKBONE_STRIDES must be (4, 8, 16, 32, 64): the ResNet-FPN architecture fixes the strides of P2..P6");
  if (c->IMAGE_RESIZE_MODE == CX_RESIZE_SQUARE && c->IMAGE_MAX_DIM % 64)
    return cx_fail(e, "IMAGE_MAX_DIM = %d must be a multiple of 64 (the canvas of square mode)", c->IMAGE_MAX_DIM);
  if (c->IMAGE_RESIZE_MODE == CX_RESIZE_PAD64 && c->IMAGE_MIN_DIM % 64)
    return cx_fail(e, "IMAGE_MIN_DIM = %d must be a multiple of 64 in pad64 mode", c->IMAGE_MIN_DIM);
  if (c->DETECTION_MAX_INSTANCES > c->POST_NMS_ROIS_INFERENCE)
    return cx_fail(e, "DETECTION_MAX_INSTANCES (%d) cannot exceed POST_NMS_ROIS_INFERENCE (%d)", c->DETECTION_MAX_INSTANCES,
                   c->POST_NMS_ROIS_INFERENCE);
  return 0;
}

int cx_config_count(void) { return NSETTINGS; }
const char *cx_config_name(int i) { return i >= 0 && i < NSETTINGS ? SETTINGS[i].name : NULL; }

int cx_config_format(const cx_config *c, const char *name, char *buf, size_t len) {
  const setting *s = find(name);
  if (!s || !len) return -1;
  const char *base = (const char *)c + s->off;
  buf[0] = 0;
  size_t used = 0;
#define APP(...) do { int k_ = snprintf(buf + used, len - used, __VA_ARGS__); if (k_ > 0) used += ((size_t)k_ < len - used) ? (size_t)k_ : len - used - 1; } while (0)
  switch (s->type) {
    case T_STR: APP("%s", base); break;
    case T_RESIZE: { const char *n[4] = {"none", "square", "pad64", "crop"}; APP("%s", n[*(const cx_resize_mode *)base]); break; }
    case T_BACKBONE: APP("%s", *(const cx_backbone *)base == CX_BACKBONE_RESNET50 ? "resnet50" : "resnet101"); break;
    case T_INT: APP("%d", *(const int *)base); break;
    case T_DOUBLE: { char d[32]; fmt_double(d, sizeof d, *(const double *)base); APP("%s", d); break; }
    case T_INTS:
    case T_DOUBLES: {
      int n = s->count_off ? *(const int *)((const char *)c + s->count_off) : s->max_count;
      APP("(");
      for (int i = 0; i < n; i++) {
        if (s->type == T_INTS) APP("%s%d", i ? ", " : "", ((const int *)base)[i]);
        else { char d[32]; fmt_double(d, sizeof d, ((const double *)base)[i]); APP("%s%s", i ? ", " : "", d); }
      }
      APP(")");
      break;
    }
  }
#undef APP
  return 0;
}
