/* Bad input to the runtime API: each case must fail with an actionable message
 * (checked for key words), never crash, and leak nothing (run under ASan in CI). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mrcnn.h"
#include "synth.h"

static int failures, passes;

static void expect_fail(const char *what, int rc, const cx_err *e, const char *needle) {
  int ok = rc != 0 && strstr(e->msg, needle) != NULL;
  printf("%-48s %s  [%s]\n", what, ok ? "PASS" : "FAIL", rc ? e->msg : "(no error)");
  if (ok) passes++; else failures++;
}

static void expect_ok(const char *what, int rc, const cx_err *e) {
  printf("%-48s %s%s%s\n", what, rc == 0 ? "PASS" : "FAIL", rc ? "  " : "", rc ? e->msg : "");
  if (rc == 0) passes++; else failures++;
}

/* Small resnet50 model on a 128x128 canvas keeps the whole test fast. */
static void small_cfg(cx_config *c) {
  cx_err e;
  cx_config_default(c);
  cx_config_set(c, "IMAGE_MAX_DIM", "128", &e);
  cx_config_set(c, "IMAGE_MIN_DIM", "128", &e);
  cx_config_set(c, "DETECTION_MIN_CONFIDENCE", "0", &e);
}

static int write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  fwrite(p, 1, n, f);
  return fclose(f);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : ".";
  char good[4096], path[4096];
  cx_err e;
  cx_config cfg;
  small_cfg(&cfg);
  snprintf(good, sizeof good, "%s/api_good.safetensors", dir);
  cx_tensor_store *s;
  if (cx_synth_store(CX_BACKBONE_RESNET50, 81, &s, &e) || cx_safetensors_save(s, good, &e)) { printf("setup: %s\n", e.msg); return 1; }
  cx_store_free(s);
  cx_model *m = NULL;

  /* Config errors name the setting. */
  expect_fail("unknown setting", cx_config_set(&cfg, "DETECTION_MIN_CONFIDENSE", "0.5", &e), &e, "DETECTION_MIN_CONFIDENSE");
  expect_fail("out-of-range setting", cx_config_set(&cfg, "DETECTION_MIN_CONFIDENCE", "1.5", &e), &e, "DETECTION_MIN_CONFIDENCE");
  expect_fail("wrong list length", cx_config_set(&cfg, "MEAN_PIXEL", "(1, 2)", &e), &e, "MEAN_PIXEL");
  expect_fail("not a number", cx_config_set(&cfg, "POST_NMS_ROIS_INFERENCE", "many", &e), &e, "POST_NMS_ROIS_INFERENCE");

  /* device names: cpu, cuda (GPU 0), cuda:N; anything else refused with the accepted forms */
  {
    int idx = -2;
    expect_ok("device cpu", cx_device_parse("cpu", &idx, &e) == 0 && idx == -1 ? 0 : -1, &e);
    expect_ok("device cuda", cx_device_parse("cuda", &idx, &e) == 1 && idx == 0 ? 0 : -1, &e);
    expect_ok("device cuda:3", cx_device_parse("cuda:3", &idx, &e) == 1 && idx == 3 ? 0 : -1, &e);
    const char *bad[] = {"gpu", "cuda:", "cuda:-1", "cuda:1x", "cuda:99999", "CUDA", "cuda0", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      char what[64];
      snprintf(what, sizeof what, "device '%s'", bad[i]);
      expect_fail(what, cx_device_parse(bad[i], &idx, &e), &e, "cpu, cuda or cuda:N");
    }
  }
  cx_config c2 = cfg;
  expect_ok("tuple setting", cx_config_set(&c2, "RPN_ANCHOR_SCALES", "(128, 256, 512, 1024, 2048)", &e), &e);
  small_cfg(&cfg);

  /* Weights files. */
  snprintf(path, sizeof path, "%s/does-not-exist.safetensors", dir);
  expect_fail("missing weights file", cx_model_open(path, &cfg, &m, &e), &e, "cannot open");
  /* Truncated: cut the good file in the middle of its data. */
  FILE *f = fopen(good, "rb");
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)len);
  if (fread(buf, 1, (size_t)len, f) != (size_t)len) { printf("setup read failed\n"); return 1; }
  fclose(f);
  snprintf(path, sizeof path, "%s/api_truncated.safetensors", dir);
  write_bytes(path, buf, (size_t)len / 2);
  expect_fail("truncated weights file", cx_model_open(path, &cfg, &m, &e), &e, "truncated");
  snprintf(path, sizeof path, "%s/api_tiny.safetensors", dir);
  write_bytes(path, buf, 5);
  expect_fail("5-byte weights file", cx_model_open(path, &cfg, &m, &e), &e, "too short");
  snprintf(path, sizeof path, "%s/api_hdf5.safetensors", dir);
  write_bytes(path, "\x89HDF\r\n\x1a\n\0\0\0\0\0\0\0\0", 16);
  expect_fail("HDF5 file given as weights", cx_model_open(path, &cfg, &m, &e), &e, "ctxdiff convert");
  free(buf);
  /* the bad files leave nothing behind (the good one is removed at the end) */
  const char *bad_files[] = {"api_truncated", "api_tiny", "api_hdf5"};
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, bad_files[i]);
    unlink(path);
  }

  /* Wrong shape, missing tensor, class list mismatch: edit an in-memory store. */
  cx_tensor_store *bad;
  cx_synth_store(CX_BACKBONE_RESNET50, 81, &bad, &e);
  for (int i = 0; i < bad->count; i++)
    if (!strcmp(bad->t[i].name, "res3b_branch2b/kernel")) bad->t[i].shape[2] = 64;
  expect_fail("tensor with a wrong shape", cx_model_from_store(bad, &cfg, &m, &e), &e, "res3b_branch2b/kernel");
  cx_synth_store(CX_BACKBONE_RESNET50, 81, &bad, &e);
  for (int i = 0; i < bad->count; i++)
    if (!strcmp(bad->t[i].name, "fpn_p4/bias")) strcpy(bad->t[i].name, "fpn_p4/biax");
  expect_fail("missing tensor", cx_model_from_store(bad, &cfg, &m, &e), &e, "fpn_p4/bias");
  cx_synth_store(CX_BACKBONE_RESNET50, 81, &bad, &e);
  cx_store_set_meta(bad, "class_names", "[\"BG\", \"cat\", \"dog\"]", &e);
  expect_fail("class list of the wrong length", cx_model_from_store(bad, &cfg, &m, &e), &e, "3 names");
  cx_synth_store(CX_BACKBONE_RESNET50, 81, &bad, &e);
  cx_store_set_meta(bad, "num_classes", "17", &e);
  expect_fail("metadata class count disagrees", cx_model_from_store(bad, &cfg, &m, &e), &e, "17");

  /* Images. */
  expect_ok("open good weights", cx_model_open(good, &cfg, &m, &e), &e);
  if (!m) return 1;
  cx_detections d;
  uint8_t px[3 * 4] = {0};
  cx_image zero = {0, 0, px};
  expect_fail("0x0 image", cx_detect(m, &zero, 1, &d, &e), &e, "0x0");
  cx_image one = {1, 1, px};
  expect_fail("1x1 image", cx_detect(m, &one, 1, &d, &e), &e, "1x1");
  cx_image null_px = {64, 64, NULL};
  expect_fail("image without pixels", cx_detect(m, &null_px, 1, &d, &e), &e, "no pixel data");
  cx_image huge = {20000, 10, px}; /* pixels never read: rejected on size */
  expect_fail("image larger than MAX_INPUT_DIM", cx_detect(m, &huge, 1, &d, &e), &e, "MAX_INPUT_DIM");
  cx_image thin = {5000, 2, NULL};
  uint8_t *thin_px = calloc(5000 * 2 * 3, 1);
  thin.rgb = thin_px;
  expect_fail("too elongated image", cx_detect(m, &thin, 1, &d, &e), &e, "elongated");
  free(thin_px);
  /* A normal image works, twice (the second call reuses the plan). */
  uint8_t *img = cx_synth_image(160, 120, 0, &e);
  cx_image ok = {160, 120, img};
  for (int rep = 0; rep < 2; rep++) {
    int rc = cx_detect(m, &ok, 1, &d, &e);
    expect_ok("synthetic 160x120 image", rc, &e);
    if (!rc) {
      int good_boxes = d.count > 0;
      for (int i = 0; i < d.count; i++)
        good_boxes &= d.rois[i * 4] >= 0 && d.rois[i * 4 + 2] <= 120 && d.rois[i * 4 + 1] >= 0 && d.rois[i * 4 + 3] <= 160;
      printf("%-48s %s (%d detections)\n", "detections inside the image", good_boxes ? "PASS" : "FAIL", d.count);
      good_boxes ? passes++ : failures++;
      /* mrcnn.h: each mask is 0 outside its roi and has pixels inside it (RLE and overlay read
       * the box only) */
      int inside = d.count > 0, some = 0;
      for (int i = 0; i < d.count; i++) {
        const int32_t *r = d.rois + i * 4;
        for (int y = 0; y < 120; y++)
          for (int x = 0; x < 160; x++) {
            const int in = y >= r[0] && y < r[2] && x >= r[1] && x < r[3];
            if (d.masks[((size_t)i * 120 + y) * 160 + x]) {
              inside &= in;
              some = 1;
            }
          }
      }
      printf("%-48s %s\n", "masks are 0 outside their rois", inside && some ? "PASS" : "FAIL");
      inside && some ? passes++ : failures++;
      cx_detections_free(&d, 1);
    }
  }
  /* Pipelined API: same results as cx_detect, FIFO order, and its misuse is refused. */
  cx_detections p0, p1[2], sync;
  uint8_t *img2 = cx_synth_image(160, 120, 1, &e);
  cx_image two[2] = {{160, 120, img2}, {160, 120, img}};
  expect_fail("collect with nothing pending", cx_detect_collect(m, 1, &p0, &e), &e, "no batch is pending");
  expect_ok("submit batch 1", cx_detect_submit(m, &ok, 1, &e), &e);
  expect_fail("synchronous detect while pending", cx_detect(m, &ok, 1, &sync, &e), &e, "collect them");
  expect_fail("device change while pending", cx_model_set_device(m, "cpu", NULL, &e), &e, "collect them");
  expect_fail("submit a bad image while pending", cx_detect_submit(m, &null_px, 1, &e), &e, "no pixel data");
  expect_ok("submit batch 2 (2 images)", cx_detect_submit(m, two, 2, &e), &e);
  expect_fail("a third batch in flight", cx_detect_submit(m, &ok, 1, &e), &e, "already in flight");
  expect_fail("collect with the wrong image count", cx_detect_collect(m, 2, p1, &e), &e, "has 1 image");
  int rc0 = cx_detect_collect(m, 1, &p0, &e);
  expect_ok("collect batch 1", rc0, &e);
  int rc1 = cx_detect_collect(m, 2, p1, &e);
  expect_ok("collect batch 2", rc1, &e);
  printf("%-48s %s (%d)\n", "nothing pending after both", cx_detect_pending(m) == 0 ? "PASS" : "FAIL", cx_detect_pending(m));
  cx_detect_pending(m) == 0 ? passes++ : failures++;
  if (!rc0 && !rc1 && !cx_detect(m, &ok, 1, &sync, &e)) {
    /* batch 1 and image 1 of batch 2 are the same image as `sync`; image 0 of batch 2 differs */
    int same = p0.count == sync.count && p1[1].count == sync.count &&
               !memcmp(p0.rois, sync.rois, (size_t)sync.count * 16) && !memcmp(p1[1].rois, sync.rois, (size_t)sync.count * 16) &&
               !memcmp(p0.masks, sync.masks, (size_t)sync.count * 160 * 120) &&
               !memcmp(p1[1].masks, sync.masks, (size_t)sync.count * 160 * 120);
    int differs = p1[0].count != sync.count || memcmp(p1[0].rois, sync.rois, (size_t)sync.count * 16) != 0;
    printf("%-48s %s\n", "pipelined results equal cx_detect's, in order", same && differs ? "PASS" : "FAIL");
    same && differs ? passes++ : failures++;
    cx_detections_free(&sync, 1);
  } else {
    failures++;
  }
  if (!rc0) cx_detections_free(&p0, 1);
  if (!rc1) cx_detections_free(p1, 2);
  /* batches left pending are freed with the model (ASan checks) */
  expect_ok("submit and leave pending", cx_detect_submit(m, &ok, 1, &e), &e);
  free(img2);
  free(img);
  cx_model_free(m);
  unlink(good);
  printf("%d passed, %d failed\n", passes, failures);
  return failures ? 1 : 0;
}
