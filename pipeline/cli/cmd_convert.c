/* ctxdiff convert IN.h5 OUT.safetensors [--classes FILE]: matterport Keras weights to
 * safetensors (weights/keras_h5.h). */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "keras_h5.h"
#include "weights_table.h"

static void convert_usage(FILE *f) {
  fprintf(f,
          "usage: ctxdiff convert IN.h5 OUT.safetensors [--classes FILE]\n\n"
          "Converts matterport Mask R-CNN Keras weights (save_weights or model.save files) to\n"
          "safetensors. Backbone (resnet50/resnet101) and class count come from the file.\n\n"
          "  --classes FILE   class names, one per line, background first (required unless the\n"
          "                   weights have COCO's 81 classes, which get the COCO names)\n");
}

int cx_cmd_convert(int argc, char **argv) {
  const char *in = NULL, *out = NULL, *classes = NULL;
  int quiet = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      convert_usage(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--classes")) {
      if (++i >= argc) {
        fprintf(stderr, "ctxdiff convert: --classes needs a file name\n");
        return 2;
      }
      classes = argv[i];
    } else if (!strncmp(argv[i], "--classes=", 10)) {
      classes = argv[i] + 10;
    } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
      quiet = 1;
    } else if (argv[i][0] == '-' && argv[i][1]) {
      fprintf(stderr, "ctxdiff convert: unknown option '%s'\n\n", argv[i]);
      convert_usage(stderr);
      return 2;
    } else if (!in) {
      in = argv[i];
    } else if (!out) {
      out = argv[i];
    } else {
      fprintf(stderr, "ctxdiff convert: unexpected argument '%s'\n\n", argv[i]);
      convert_usage(stderr);
      return 2;
    }
  }
  if (!in || !out) {
    convert_usage(stderr);
    return 2;
  }
  cx_err e = {{0}};
  cx_convert_result r;
  if (cx_convert_keras_h5(in, out, classes, &r, &e)) {
    fprintf(stderr, "ctxdiff convert: %s\n", e.msg);
    return 1;
  }
  if (!quiet)
    fprintf(stderr, "ctxdiff convert: wrote %s (%s, %d classes, %d tensors, %lld parameters, keras %s)\n", out,
            cx_backbone_name(r.backbone), r.num_classes, r.tensors, r.params,
            r.keras_version[0] ? r.keras_version : "unknown");
  return 0;
}
