/* ctxdiff synth-weights / synth-image: the deterministic test model and image of
 * shared/spec/synthetic-weights.md, for tests, benchmarks and first runs without weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "image_io.h"
#include "synth.h"

static int parse_int(const char *s, int lo, int hi, int *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

int cx_cmd_synth_weights(int argc, char **argv) {
  const char *out = NULL;
  cx_backbone bb = CX_BACKBONE_RESNET101;
  int nc = 81;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      printf("usage: ctxdiff synth-weights [--backbone resnet101|resnet50] [--num-classes N] -o FILE.safetensors\n\n"
             "Writes the deterministic synthetic Mask R-CNN weights of the spec (values computed from\n"
             "each tensor's name and index). Defaults: resnet101, 81 classes (COCO names).\n");
      return 0;
    } else if (!strcmp(a, "--backbone") && i + 1 < argc) {
      const char *v = argv[++i];
      if (!strcmp(v, "resnet101")) bb = CX_BACKBONE_RESNET101;
      else if (!strcmp(v, "resnet50")) bb = CX_BACKBONE_RESNET50;
      else { fprintf(stderr, "ctxdiff synth-weights: --backbone must be resnet101 or resnet50 (got '%s')\n", v); return 2; }
    } else if (!strcmp(a, "--num-classes") && i + 1 < argc) {
      if (parse_int(argv[++i], 2, 100000, &nc)) { fprintf(stderr, "ctxdiff synth-weights: --num-classes needs an integer in 2..100000\n"); return 2; }
    } else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && i + 1 < argc) {
      out = argv[++i];
    } else {
      fprintf(stderr, "ctxdiff synth-weights: unknown or incomplete option '%s' (see --help)\n", a);
      return 2;
    }
  }
  if (!out) { fprintf(stderr, "ctxdiff synth-weights: missing -o FILE.safetensors\n"); return 2; }
  cx_err e;
  cx_tensor_store *s;
  if (cx_synth_store(bb, nc, &s, &e) || cx_safetensors_save(s, out, &e)) {
    fprintf(stderr, "ctxdiff synth-weights: %s\n", e.msg);
    return 1;
  }
  fprintf(stderr, "ctxdiff synth-weights: wrote %s (%s, %d classes, %d tensors)\n", out, cx_backbone_name(bb), nc, s->count);
  cx_store_free(s);
  return 0;
}

int cx_cmd_synth_image(int argc, char **argv) {
  const char *out = NULL;
  int w = 1280, h = 1280, seed = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      printf("usage: ctxdiff synth-image [--width W] [--height H] [--seed S] -o FILE.png\n\n"
             "Writes the deterministic synthetic RGB test image of the spec. Defaults: 1280x1280, seed 0\n"
             "(the detection-level fixture); 640x480 is the padding fixture.\n");
      return 0;
    } else if (!strcmp(a, "--width") && i + 1 < argc) {
      if (parse_int(argv[++i], 1, 65535, &w)) { fprintf(stderr, "ctxdiff synth-image: --width needs 1..65535\n"); return 2; }
    } else if (!strcmp(a, "--height") && i + 1 < argc) {
      if (parse_int(argv[++i], 1, 65535, &h)) { fprintf(stderr, "ctxdiff synth-image: --height needs 1..65535\n"); return 2; }
    } else if (!strcmp(a, "--seed") && i + 1 < argc) {
      if (parse_int(argv[++i], -1000000, 1000000, &seed)) { fprintf(stderr, "ctxdiff synth-image: --seed needs an integer\n"); return 2; }
    } else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && i + 1 < argc) {
      out = argv[++i];
    } else {
      fprintf(stderr, "ctxdiff synth-image: unknown or incomplete option '%s' (see --help)\n", a);
      return 2;
    }
  }
  if (!out) { fprintf(stderr, "ctxdiff synth-image: missing -o FILE.png\n"); return 2; }
  cx_err e;
  uint8_t *img = cx_synth_image(w, h, seed, &e);
  if (!img || cx_png_write(out, w, h, 3, img, NULL, 0, &e)) {
    fprintf(stderr, "ctxdiff synth-image: %s\n", e.msg);
    free(img);
    return 1;
  }
  free(img);
  return 0;
}
