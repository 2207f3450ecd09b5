/* Runs the runtime on the synthetic model and image and writes its intermediates and
 * final detections as .npy files, for tests/model/compare_model.py to compare with the
 * independent reference (shared/reference/mrcnn_ref.py).
 *
 * usage: dump_model [--final-only] OUTDIR BACKBONE NUM_CLASSES WIDTH HEIGHT SEED [NAME=VALUE ...]
 * --final-only: the detections only, from the path users run (with intermediates dumped the
 * mask head computes matterport's whole mrcnn_mask tensor instead of each detection's class) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mrcnn.h"
#include "npy.h"
#include "synth.h"

int main(int argc, char **argv) {
  const int final_only = argc > 1 && !strcmp(argv[1], "--final-only");
  if (final_only) argc--, argv++;
  if (argc < 7) {
    fprintf(stderr, "usage: dump_model [--final-only] OUTDIR resnet101|resnet50 NUM_CLASSES WIDTH HEIGHT SEED [NAME=VALUE ...]\n");
    return 2;
  }
  const char *dir = argv[1];
  cx_backbone bb = !strcmp(argv[2], "resnet50") ? CX_BACKBONE_RESNET50 : CX_BACKBONE_RESNET101;
  int nc = atoi(argv[3]), w = atoi(argv[4]), h = atoi(argv[5]), seed = atoi(argv[6]);
  cx_err e;
  cx_config cfg;
  cx_config_default(&cfg);
  for (int i = 7; i < argc; i++)
    if (cx_config_set_kv(&cfg, argv[i], &e)) { fprintf(stderr, "dump_model: %s\n", e.msg); return 1; }
  cx_tensor_store *s;
  cx_model *m;
  if (cx_synth_store(bb, nc, &s, &e) || cx_model_from_store(s, &cfg, &m, &e)) { fprintf(stderr, "dump_model: %s\n", e.msg); return 1; }
  uint8_t *img = cx_synth_image(w, h, seed, &e);
  if (!img) { fprintf(stderr, "dump_model: %s\n", e.msg); return 1; }
  if (!final_only) cx_model_set_dump_dir(m, dir);
  cx_image im = {w, h, img};
  cx_detections d;
  if (cx_detect(m, &im, 1, &d, &e)) { fprintf(stderr, "dump_model: %s\n", e.msg); return 1; }
  const cx_timings *t = cx_model_timings(m);
  fprintf(stderr, "dump_model: %d detections; ms: preprocess %.0f backbone+fpn %.0f rpn %.0f classifier %.0f mask %.0f unmold %.0f total %.0f\n",
          d.count, t->preprocess, t->backbone_fpn, t->rpn_proposals, t->classifier_detection, t->mask_head, t->unmold, t->total);
  char path[4096];
  long s1[1] = {d.count}, s2[2] = {d.count, 4}, s3[3] = {d.count, h, w};
  int rc = 0;
  snprintf(path, sizeof path, "%s/rois.npy", dir);
  rc |= cx_npy_write(path, "<i4", d.rois, 4, 2, s2, &e);
  snprintf(path, sizeof path, "%s/class_ids.npy", dir);
  rc |= cx_npy_write(path, "<i4", d.class_ids, 4, 1, s1, &e);
  snprintf(path, sizeof path, "%s/scores.npy", dir);
  rc |= cx_npy_write(path, "<f4", d.scores, 4, 1, s1, &e);
  snprintf(path, sizeof path, "%s/masks.npy", dir); /* [N, H, W]; the comparer transposes */
  rc |= cx_npy_write(path, "|u1", d.masks, 1, 3, s3, &e);
  if (rc) fprintf(stderr, "dump_model: %s\n", e.msg);
  cx_detections_free(&d, 1);
  cx_model_free(m);
  free(img);
  return rc ? 1 : 0;
}
