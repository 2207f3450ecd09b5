/* Synthetic weights and image (shared/spec/synthetic-weights.md). All integer arithmetic
 * is uint64 wrapping; each value is computed in double and rounded to float once. */
#include "synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coco_classes.h"

uint64_t cx_fnv1a64(const char *s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    h ^= *p;
    h *= 0x100000001b3ULL;
  }
  return h;
}

double cx_synth_uniform(uint64_t h, uint64_t i) {
  uint64_t x = h + i * 0x9E3779B97F4A7C15ULL;
  uint64_t z = x + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z = z ^ (z >> 31);
  return ((double)(z >> 40) + 0.5) / 16777216.0 * 2.0 - 1.0;
}

static double kernel_gain(const char *layer) {
  if (!strcmp(layer, "conv1")) return 1.0 / 64.0;
  if (!strcmp(layer, "rpn_class_raw") || !strcmp(layer, "rpn_bbox_pred") || !strcmp(layer, "mrcnn_bbox_fc")) return 0.25;
  return 1.0;
}

/* 0.1 for the batch norm closing a residual branch: bn<digit><letter>_branch2c. */
static double gamma_gain(const char *layer) {
  if (strlen(layer) == 13 && !strncmp(layer, "bn", 2) && layer[2] >= '0' && layer[2] <= '9' && layer[3] >= 'a' &&
      layer[3] <= 'z' && !strcmp(layer + 4, "_branch2c"))
    return 0.1;
  return 1.0;
}

void cx_synth_tensor(const cx_weight_spec *w, float *out) {
  uint64_t h = cx_fnv1a64(w->name);
  size_t n = 1;
  for (int d = 0; d < w->ndim; d++) n *= (size_t)w->shape[d];
  double scale = 0;
  if (!strcmp(w->weight, "kernel")) {
    double fan_in = 1;
    if (w->kind == CX_W_DECONV) fan_in = (double)w->shape[w->ndim - 1];
    else for (int d = 0; d < w->ndim - 1; d++) fan_in *= (double)w->shape[d];
    scale = sqrt(6.0 / fan_in);
  }
  double k = kernel_gain(w->layer), g = gamma_gain(w->layer);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    double u = cx_synth_uniform(h, i), v;
    if (!strcmp(w->weight, "kernel")) v = u * scale * k;
    else if (!strcmp(w->weight, "bias")) v = 0.02 * u;
    else if (!strcmp(w->weight, "gamma")) v = (1.0 + 0.1 * u) * g;
    else if (!strcmp(w->weight, "moving_variance")) v = 1.25 + 0.25 * u;
    else v = 0.1 * u; /* beta, moving_mean */
    out[i] = (float)v;
  }
}

int cx_synth_store(cx_backbone bb, int num_classes, cx_tensor_store **out, cx_err *e) {
  *out = NULL;
  if (num_classes < 2 || num_classes > 100000) return cx_fail(e, "synthetic weights need 2..100000 classes (got %d)", num_classes);
  cx_weight_spec *tab;
  int n;
  if (cx_weight_table(bb, num_classes, &tab, &n, e)) return -1;
  cx_tensor_store *s = cx_store_new(e);
  if (!s) { free(tab); return -1; }
  for (int i = 0; i < n; i++) {
    size_t numel = 1;
    for (int d = 0; d < tab[i].ndim; d++) numel *= (size_t)tab[i].shape[d];
    float *data = cx_malloc(numel * sizeof(float), e, tab[i].name);
    if (!data) goto fail;
    cx_synth_tensor(&tab[i], data);
    if (cx_store_add(s, tab[i].name, tab[i].ndim, tab[i].shape, data, e)) goto fail;
  }
  char buf[32];
  snprintf(buf, sizeof buf, "%d", num_classes);
  if (cx_store_set_meta(s, "format", "ctxdiff-mrcnn-1", e) || cx_store_set_meta(s, "backbone", cx_backbone_name(bb), e) ||
      cx_store_set_meta(s, "num_classes", buf, e) || cx_store_set_meta(s, "source", "synthetic (shared/spec/synthetic-weights.md)", e))
    goto fail;
  if (num_classes == CX_COCO_NUM_CLASSES) {
    char *names = cx_class_names_json(cx_coco_class_names, CX_COCO_NUM_CLASSES);
    if (!names || cx_store_set_meta(s, "class_names", names, e)) { free(names); goto fail; }
    free(names);
  }
  free(tab);
  *out = s;
  return 0;
fail:
  free(tab);
  cx_store_free(s);
  return -1;
}

static double round_half_away(double v) {
  double t = trunc(v), frac = v - t;
  if (fabs(frac) >= 0.5) t += (v > 0) - (v < 0);
  return t;
}

uint8_t *cx_synth_image(int width, int height, int seed, cx_err *e) {
  if (width < 1 || height < 1 || (double)width * height > 1e9) {
    cx_fail(e, "synthetic image size %dx%d is out of range", width, height);
    return NULL;
  }
  uint8_t *img = cx_malloc((size_t)width * height * 3, e, "synthetic image");
  if (!img) return NULL;
  double s = seed;
#pragma omp parallel for schedule(static)
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++) {
      /* Python's % and // floor; x, y >= 0 so only the seed can be negative. */
      long q = (long)(x / 64) + (long)(y / 48) + seed;
      int even = ((q % 2) + 2) % 2 == 0;
      for (int c = 0; c < 3; c++) {
        double v = 127.5 + 60.0 * sin(0.021 * (double)x * (double)(c + 1) + s) + 60.0 * cos(0.017 * (double)y * (double)(3 - c) - s);
        if (even) v = v * 0.5 + 40.0 * c;
        double r = round_half_away(v);
        img[((size_t)y * width + x) * 3 + c] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
      }
    }
  return img;
}
