/* The contextual diffusion loop; see cx_loop.h and spec pipeline-apis.md D.9. */
#include "cx_loop.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cx_http.h"
#include "cx_record.h"
#include "cx_settings.h"
#include "image_io.h"
#include "mrcnn.h"
#include "synth.h"
#if __has_include("overlay.h")
#include "overlay.h"
#define CX_HAVE_OVERLAY 1
#endif

#ifndef CTXDIFF_VERSION
#define CTXDIFF_VERSION "dev"
#endif

void cx_run_options_default(cx_run_options *o) {
  memset(o, 0, sizeof *o);
  o->iterations = 1;
  o->seed = -1;
  o->global_tags_in_object = 3;
  snprintf(o->device, sizeof o->device, "cpu");
  cx_sd_settings_default(&o->sd);
  cx_llm_settings_default(&o->llm);
  cx_config_default(&o->seg);
  o->seg.DETECTION_MIN_CONFIDENCE = 0.9; /* the original's threshold (D.1) */
}

int cx_run_apply_sections(cx_run_options *o, const cJSON *doc, cx_err *e) {
  const cJSON *it;
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(doc, "segmentation")) {
    char text[512];
    if (cx_json_to_setting_text(it, text, sizeof text))
      return cx_fail(e, "segmentation.%s: value must be a number, string or list of numbers", it->string);
    if (cx_config_set(&o->seg, it->string, text, e)) return cx_failctx(e, "config file, segmentation section");
  }
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(doc, "run")) {
    const char *k = it->string;
    if (!strcmp(k, "style_tags") && cJSON_IsString(it))
      snprintf(o->style_tags, sizeof o->style_tags, "%s", it->valuestring);
    else if (!strcmp(k, "negative_prompt") && cJSON_IsString(it))
      snprintf(o->negative, sizeof o->negative, "%s", it->valuestring);
    else if (!strcmp(k, "global_tags_in_object") && cJSON_IsNumber(it))
      o->global_tags_in_object = (int)it->valuedouble;
    else if (!strcmp(k, "iterations") && cJSON_IsNumber(it) && it->valuedouble >= 1)
      o->iterations = (int)it->valuedouble;
    else if (!strcmp(k, "per_instance") && cJSON_IsBool(it))
      o->per_instance = cJSON_IsTrue(it);
    else
      return cx_fail(e, "config file: unknown or mistyped run setting \"%s\"", k);
  }
  return 0;
}

/* ---- settings <-> JSON --------------------------------------------------------------- */

static cJSON *sd_settings_json(const cx_sd_settings *s) {
  cJSON *j = cJSON_CreateObject();
  char url[600];
  cx_url_redact(s->url, url, sizeof url);
  cJSON_AddStringToObject(j, "url", url);
  cJSON_AddStringToObject(j, "checkpoint", s->checkpoint);
  cJSON_AddStringToObject(j, "sampler", s->sampler);
  cJSON_AddStringToObject(j, "scheduler", s->scheduler);
  cJSON *st = cJSON_AddArrayToObject(j, "styles");
  for (int i = 0; i < s->nstyles; i++) cJSON_AddItemToArray(st, cJSON_CreateString(s->styles[i]));
#define N(f) cJSON_AddNumberToObject(j, #f, s->f)
  N(width); N(height); N(steps); N(cfg_scale); N(enable_hr); N(hr_scale);
  cJSON_AddStringToObject(j, "hr_upscaler", s->hr_upscaler);
  N(hr_second_pass_steps); N(hr_denoising_strength); N(inpaint_steps); N(inpaint_denoising_strength);
  N(resize_mode); N(mask_blur); N(inpainting_fill); N(inpaint_full_res); N(inpaint_full_res_padding);
  N(inpainting_mask_invert); N(connect_timeout_s); N(timeout_s); N(ready_wait_s); N(max_retries);
  N(backoff_base_s); N(progress_interval_s);
#undef N
  return j;
}

static cJSON *llm_settings_json(const cx_llm_settings *s) {
  cJSON *j = cJSON_CreateObject();
  char url[600];
  cx_url_redact(s->url, url, sizeof url);
  cJSON_AddStringToObject(j, "url", url);
  cJSON_AddStringToObject(j, "model", s->model);
  cJSON_AddStringToObject(j, "api_key_env", s->api_key_env); /* the variable's name, never its value */
  cJSON_AddStringToObject(j, "token_field", s->token_field);
  cJSON_AddStringToObject(j, "response_format", s->response_format);
  cJSON_AddStringToObject(j, "image_detail", s->image_detail);
#define N(f) cJSON_AddNumberToObject(j, #f, (double)s->f)
  N(temperature); N(max_tokens); N(seed); N(vision); N(max_content_retries); N(max_tags); N(connect_timeout_s);
  N(timeout_s); N(backoff_base_s); N(retry_after_cap_s); N(max_retries);
#undef N
  return j;
}

static cJSON *seg_settings_json(const cx_config *c) {
  cJSON *j = cJSON_CreateObject();
  for (int i = 0; i < cx_config_count(); i++) {
    char buf[512];
    if (cx_config_format(c, cx_config_name(i), buf, sizeof buf) == 0)
      cJSON_AddStringToObject(j, cx_config_name(i), buf);
  }
  return j;
}

static void strip_quotes(char *s) {
  size_t n = strlen(s);
  if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
    memmove(s, s + 1, n - 2);
    s[n - 2] = 0;
  }
}

int cx_run_load_settings(const char *dir, cx_run_options *o, cx_err *e) {
  char path[2048];
  snprintf(path, sizeof path, "%s/run.json", dir);
  cJSON *run = cx_json_load_file(path, e);
  if (!run) return cx_failctx(e, "--resume %s", dir);
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(run, "settings");
  int rc = -1;
  if (!cJSON_IsObject(s)) {
    cx_fail(e, "%s has no settings: not a ctxdiff run directory", path);
    goto done;
  }
#define GETS(key, dst)                                                                \
  do {                                                                                \
    const cJSON *v_ = cJSON_GetObjectItemCaseSensitive(s, key);                        \
    if (cJSON_IsString(v_)) snprintf(dst, sizeof dst, "%s", v_->valuestring);          \
  } while (0)
  GETS("prompt", o->prompt);
  GETS("negative_prompt", o->negative);
  GETS("weights", o->weights);
  GETS("device", o->device);
  GETS("precision", o->precision);
  GETS("style_tags", o->style_tags);
#undef GETS
  const cJSON *v;
  if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(s, "iterations"))) o->iterations = (int)v->valuedouble;
  if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(s, "seed"))) o->seed = (int64_t)v->valuedouble;
  if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(s, "global_tags_in_object")))
    o->global_tags_in_object = (int)v->valuedouble;
  o->per_instance = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "per_instance"));
  const cJSON *it;
  char auth[sizeof o->sd.auth];
  memcpy(auth, o->sd.auth, sizeof auth); /* never stored: keep what this invocation was given */
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(s, "sd")) {
    if (cx_sd_settings_set(&o->sd, it->string, it, e)) goto done;
  }
  memcpy(o->sd.auth, auth, sizeof auth);
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(s, "llm")) {
    if (!strcmp(it->string, "seed")) {
      o->llm.seed = (int64_t)it->valuedouble;
      continue;
    }
    if (cx_llm_settings_set(&o->llm, it->string, it, e)) goto done;
  }
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(s, "segmentation")) {
    if (!cJSON_IsString(it)) continue;
    char text[512];
    snprintf(text, sizeof text, "%s", it->valuestring);
    if (!strcmp(it->string, "NAME") || !strcmp(it->string, "IMAGE_RESIZE_MODE")) strip_quotes(text);
    if (cx_config_set(&o->seg, it->string, text, e)) {
      cx_failctx(e, "%s: segmentation", path);
      goto done;
    }
  }
  rc = 0;
done:
  cJSON_Delete(run);
  return rc;
}

/* ---- helpers ----------------------------------------------------------------------- */

typedef struct {
  const cx_run_options *o;
  cx_run_options opts; /* effective options (resume merges the stored ones) */
  cJSON *run;          /* the run.json document */
  cJSON *requests;     /* its "requests" array */
  char dir[1024];
  volatile sig_atomic_t *cancel;
  double t0;
} run_ctx;

static void say(const run_ctx *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const run_ctx *r, const char *fmt, ...) {
  if (r->opts.quiet) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "ctxdiff: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
}

static int save_run(run_ctx *r, cx_err *e) {
  char path[2048];
  snprintf(path, sizeof path, "%s/run.json", r->dir);
  char *txt = cJSON_Print(r->run);
  if (!txt) return cx_fail(e, "out of memory writing run.json");
  int rc = cx_write_file_atomic(path, txt, strlen(txt), e);
  free(txt);
  return rc;
}

static int mkdir_p(const char *path, cx_err *e) {
  char buf[1200];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(buf, 0777) && errno != EEXIST) return cx_fail(e, "cannot create %s: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0777) && errno != EEXIST) return cx_fail(e, "cannot create %s: %s", buf, strerror(errno));
  return 0;
}

static void file_label(const char *label, char *out, size_t n) {
  size_t o = 0;
  for (; *label && o + 1 < n; label++) {
    char c = *label;
    out[o++] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_')
                   ? c : '_';
  }
  out[o] = 0;
}

static int read_file(const char *path, uint8_t **buf, size_t *len, cx_err *e) {
  FILE *f = fopen(path, "rb");
  if (!f) return cx_fail(e, "cannot open %s: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  *buf = malloc(n > 0 ? (size_t)n : 1);
  if (!*buf || fread(*buf, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    free(*buf);
    return cx_fail(e, "cannot read %s", path);
  }
  fclose(f);
  *len = (size_t)n;
  return 0;
}

/* The current image of the chain: PNG bytes (as the server sent them) + decoded pixels. */
typedef struct {
  uint8_t *png;
  size_t len;
  cx_rgb_image img;
} current_image;

static void current_free(current_image *c) {
  free(c->png);
  cx_rgb_image_free(&c->img);
  memset(c, 0, sizeof *c);
}

static int current_load(run_ctx *r, const char *rel, current_image *c, cx_err *e) {
  char path[2048];
  snprintf(path, sizeof path, "%s/%s", r->dir, rel);
  current_free(c);
  if (read_file(path, &c->png, &c->len, e)) return -1;
  if (cx_image_decode(c->png, c->len, &c->img, e)) return cx_failctx(e, "%s", path);
  return 0;
}

static void current_take(current_image *c, cx_sd_image *im) {
  current_free(c);
  c->png = im->png, c->len = im->png_len, c->img = im->image;
  im->png = NULL, im->image.rgb = NULL;
}

static int write_rel(run_ctx *r, const char *rel, const uint8_t *data, size_t len, cx_err *e) {
  char path[2048];
  snprintf(path, sizeof path, "%s/%s", r->dir, rel);
  return cx_write_file_atomic(path, data, len, e);
}

/* ---- segmentation --------------------------------------------------------------------- */

typedef struct {
  int class_id;
  char label[64];
  uint8_t *mask; /* h*w, 0/1 */
  cJSON *instances;
} object_mask;

static int load_model(run_ctx *r, cx_model **m, cx_err *e) {
  cx_config cfg = r->opts.seg;
  const char *w = r->opts.weights;
  if (!strncmp(w, "synthetic", 9)) {
    char bb[32] = "";
    int ncls = cfg.NUM_CLASSES;
    if (w[9] == ':') sscanf(w + 10, "%31[^:]:%d", bb, &ncls);
    if (bb[0] && cx_config_set(&cfg, "BACKBONE", bb, e)) return cx_failctx(e, "--weights %s", w);
    if (ncls != cfg.NUM_CLASSES) {
      char t[16];
      snprintf(t, sizeof t, "%d", ncls);
      if (cx_config_set(&cfg, "NUM_CLASSES", t, e)) return cx_failctx(e, "--weights %s", w);
    }
    cx_tensor_store *store = NULL;
    if (cx_synth_store(cfg.BACKBONE, cfg.NUM_CLASSES, &store, e) || cx_model_from_store(store, &cfg, m, e)) return -1;
  } else if (cx_model_open(w, &cfg, m, e)) {
    return -1;
  }
  /* --device cuda: the same detections (fp32) from the GPU graph */
  if (strcmp(r->opts.device, "cpu") &&
      cx_model_set_device(*m, r->opts.device, r->opts.precision[0] ? r->opts.precision : NULL, e)) {
    cx_model_free(*m);
    *m = NULL;
    return cx_failctx(e, "--device %s", r->opts.device);
  }
  return 0;
}

/* D.4 step 6: one object per class in first-appearance order, later masks OR-ed in
 * (or one object per detection with --per-instance). Masks are at the image's own size
 * (the runtime unmolds them), so no letterbox has to be undone (the D.6 bug cannot occur). */
static int merge_objects(const cx_model *m, const cx_detections *d, int per_instance, object_mask **out, int *n,
                         cx_err *e) {
  size_t px = (size_t)d->width * d->height;
  *out = cx_calloc((size_t)(d->count ? d->count : 1), sizeof **out, e, "objects");
  *n = 0;
  if (!*out) return -1;
  for (int i = 0; i < d->count; i++) {
    int k = -1;
    if (!per_instance)
      for (int j = 0; j < *n; j++)
        if ((*out)[j].class_id == d->class_ids[i]) k = j;
    if (k < 0) {
      k = (*n)++;
      object_mask *o = &(*out)[k];
      o->class_id = d->class_ids[i];
      const char *name = cx_model_class_name(m, d->class_ids[i]);
      if (name) snprintf(o->label, sizeof o->label, "%s", name);
      else snprintf(o->label, sizeof o->label, "class%d", d->class_ids[i]);
      o->mask = cx_calloc(px, 1, e, "object mask");
      o->instances = cJSON_CreateArray();
      if (!o->mask) return -1;
    }
    object_mask *o = &(*out)[k];
    const uint8_t *src = d->masks + px * (size_t)i;
    for (size_t p = 0; p < px; p++) o->mask[p] |= src[p] ? 1 : 0;
    cJSON_AddItemToArray(o->instances, cJSON_CreateNumber(i));
  }
  return 0;
}

static void mask_stats(const uint8_t *mask, int w, int h, double *area, int bbox[4]) {
  int x0 = w, y0 = h, x1 = -1, y1 = -1;
  size_t cnt = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      if (mask[(size_t)y * w + x]) {
        cnt++;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
  *area = (double)cnt / ((double)w * h);
  if (x1 < 0) bbox[0] = bbox[1] = bbox[2] = bbox[3] = 0;
  else bbox[0] = x0, bbox[1] = y0, bbox[2] = x1 - x0 + 1, bbox[3] = y1 - y0 + 1;
}

/* Segments the current image; writes masks and the overlay; fills it_json["objects"]. */
static int segment_iteration(run_ctx *r, cx_model *model, const current_image *cur, int it, cJSON *itj,
                             cx_err *e) {
  cx_image img = {cur->img.width, cur->img.height, cur->img.rgb};
  cx_detections det;
  double t0 = cx_now_s();
  if (cx_detect(model, &img, 1, &det, e)) return cx_failctx(e, "segmentation of iteration %d", it + 1);
  cJSON_AddNumberToObject(cJSON_GetObjectItemCaseSensitive(itj, "timings"), "segmentation_s", cx_now_s() - t0);
  cJSON *dets = cJSON_AddArrayToObject(itj, "detections");
  char **labels = calloc((size_t)(det.count ? det.count : 1), sizeof *labels);
  for (int i = 0; i < det.count; i++) {
    cJSON *dj = cJSON_CreateObject();
    const char *name = cx_model_class_name(model, det.class_ids[i]);
    cJSON_AddNumberToObject(dj, "class_id", det.class_ids[i]);
    cJSON_AddStringToObject(dj, "class_name", name ? name : "");
    cJSON_AddNumberToObject(dj, "score", (double)det.scores[i]);
    cJSON_AddItemToObject(dj, "box_y1x1y2x2", cJSON_CreateIntArray((const int *)&det.rois[4 * i], 4));
    cJSON_AddItemToArray(dets, dj);
    if (labels) {
      labels[i] = malloc(96);
      if (labels[i]) snprintf(labels[i], 96, "%s %.2f", name ? name : "?", (double)det.scores[i]);
    }
  }
  char rel[512];
#ifdef CX_HAVE_OVERLAY
  {
    size_t n = (size_t)img.width * img.height * 3;
    uint8_t *canvas = malloc(n);
    if (canvas) {
      memcpy(canvas, img.rgb, n);
      snprintf(rel, sizeof rel, "iter%d/segmentation.png", it + 1);
      char path[2048];
      snprintf(path, sizeof path, "%s/%s", r->dir, rel);
      char *params = cx_png_read_text(cur->png, cur->len, "parameters");
      cx_png_text t = {"parameters", params};
      if (cx_overlay_draw(canvas, img.width, img.height, &det, (const char *const *)labels, e) ||
          cx_png_write(path, img.width, img.height, 3, canvas, params ? &t : NULL, params ? 1 : 0, e)) {
        free(canvas), free(params);
        for (int i = 0; i < det.count; i++) free(labels ? labels[i] : NULL);
        free(labels);
        cx_detections_free(&det, 1);
        return -1;
      }
      cJSON_AddStringToObject(itj, "overlay", rel);
      free(canvas), free(params);
    }
  }
#endif
  for (int i = 0; labels && i < det.count; i++) free(labels[i]);
  free(labels);

  object_mask *objs = NULL;
  int nobj = 0;
  int rc = merge_objects(model, &det, r->opts.per_instance, &objs, &nobj, e);
  cJSON *oj = cJSON_AddArrayToObject(itj, "objects");
  size_t px = (size_t)img.width * img.height;
  uint8_t *grey = rc ? NULL : malloc(px ? px : 1);
  if (!rc && !grey) rc = cx_fail(e, "out of memory");
  for (int k = 0; !rc && k < nobj; k++) {
    for (size_t p = 0; p < px; p++) grey[p] = objs[k].mask[p] ? 255 : 0; /* binary, 255 = inpaint */
    char fl[64];
    file_label(objs[k].label, fl, sizeof fl);
    snprintf(rel, sizeof rel, "iter%d/mask%d-%s.png", it + 1, k, fl);
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", r->dir, rel);
    cx_png_text t = {"ctxdiff", "inpainting mask: 255 = inpaint, 0 = keep"};
    if (cx_png_write(path, img.width, img.height, 1, grey, &t, 1, e)) {
      rc = -1;
      break;
    }
    double area;
    int bbox[4];
    mask_stats(objs[k].mask, img.width, img.height, &area, bbox);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", k);
    cJSON_AddStringToObject(o, "label", objs[k].label);
    cJSON_AddNumberToObject(o, "class_id", objs[k].class_id);
    cJSON_AddNumberToObject(o, "area_fraction", area);
    cJSON_AddItemToObject(o, "bbox_xywh", cJSON_CreateIntArray(bbox, 4));
    cJSON_AddItemToObject(o, "detections", objs[k].instances);
    objs[k].instances = NULL;
    cJSON_AddStringToObject(o, "mask", rel);
    cJSON_AddItemToArray(oj, o);
  }
  free(grey);
  for (int k = 0; k < nobj; k++) {
    free(objs[k].mask);
    cJSON_Delete(objs[k].instances);
  }
  free(objs);
  cx_detections_free(&det, 1);
  return rc;
}

/* ---- the loop ------------------------------------------------------------------------- */

static cJSON *obj_get(cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static int interrupted(run_ctx *r, cx_err *e) {
  if (!r->cancel || !*r->cancel) return 0;
  cJSON_ReplaceItemInObject(r->run, "status", cJSON_CreateString("interrupted"));
  save_run(r, e);
  cx_fail(e, "interrupted; the completed steps are in %s: continue with  ctxdiff run --resume %s", r->dir, r->dir);
  return 1;
}

static int do_run(run_ctx *r, cx_err *e);

int cx_run(const cx_run_options *o, volatile sig_atomic_t *cancel, cx_err *e) {
  run_ctx r;
  memset(&r, 0, sizeof r);
  r.o = o;
  r.opts = *o;
  r.cancel = cancel;
  r.t0 = cx_now_s();
  cx_record_set_epoch(r.t0);
  snprintf(r.dir, sizeof r.dir, "%s", o->out_dir);
  int rc = do_run(&r, e);
  if (rc == 1 && r.run) {
    cJSON *st = obj_get(r.run, "status");
    if (cJSON_IsString(st) && strcmp(st->valuestring, "interrupted")) {
      cJSON_ReplaceItemInObject(r.run, "status", cJSON_CreateString("failed"));
      cJSON_DeleteItemFromObject(r.run, "error");
      char msg[sizeof e->msg];
      snprintf(msg, sizeof msg, "%s", e->msg);
      cJSON_AddStringToObject(r.run, "error", msg);
      cx_err e2;
      save_run(&r, &e2);
    }
  }
  cJSON_Delete(r.run);
  return rc;
}

static int do_run(run_ctx *r, cx_err *e) {
  cx_run_options *o = &r->opts;
  /* Existing output is never overwritten: a new run needs an empty or new directory. */
  char path[2048];
  snprintf(path, sizeof path, "%s/run.json", r->dir);
  if (o->resume) {
    r->run = cx_json_load_file(path, e);
    if (!r->run) return cx_failctx(e, "--resume"), 1;
    cJSON *st = obj_get(r->run, "status");
    if (cJSON_IsString(st) && !strcmp(st->valuestring, "done")) {
      say(r, "%s is already complete", r->dir);
      return 0;
    }
  } else if (access(path, F_OK) == 0) {
    return cx_fail(e, "%s already holds a run: continue it with --resume %s, or choose another --out", r->dir, r->dir),
           1;
  }

  /* Check the servers before anything slow: no SD server or no key stops here, at once. */
  cJSON *requests = o->resume ? cJSON_DetachItemFromObject(r->run, "requests") : NULL;
  if (!requests) requests = cJSON_CreateArray();
  cx_llm llm;
  cx_sd sd;
  if (cx_llm_init(&llm, &o->llm, requests, r->cancel, e)) {
    cJSON_Delete(requests);
    return 1;
  }
  if (cx_sd_init(&sd, &o->sd, requests, r->cancel, e) || cx_sd_connect(&sd, e) || cx_llm_preflight(&llm, e)) {
    memset(llm.api_key, 0, sizeof llm.api_key);
    cJSON_Delete(requests);
    return 1;
  }
  sd.show_progress = !o->quiet && isatty(2);

  if (!o->resume) {
    if (mkdir_p(r->dir, e)) {
      cJSON_Delete(requests);
      return 1;
    }
    r->run = cJSON_CreateObject();
    cJSON_AddStringToObject(r->run, "ctxdiff_version", CTXDIFF_VERSION);
    cJSON_AddStringToObject(r->run, "status", "running");
    cJSON *s = cJSON_AddObjectToObject(r->run, "settings");
    cJSON_AddStringToObject(s, "prompt", o->prompt);
    cJSON_AddStringToObject(s, "negative_prompt", o->negative);
    cJSON_AddNumberToObject(s, "iterations", o->iterations);
    cJSON_AddNumberToObject(s, "seed", (double)o->seed);
    cJSON_AddStringToObject(s, "weights", o->weights);
    cJSON_AddStringToObject(s, "device", o->device);
    cJSON_AddStringToObject(s, "precision", o->precision[0] ? o->precision : "fp32");
    cJSON_AddBoolToObject(s, "per_instance", o->per_instance);
    cJSON_AddStringToObject(s, "style_tags", o->style_tags);
    cJSON_AddNumberToObject(s, "global_tags_in_object", o->global_tags_in_object);
    cJSON_AddItemToObject(s, "sd", sd_settings_json(&o->sd));
    cJSON_AddItemToObject(s, "llm", llm_settings_json(&o->llm));
    cJSON_AddItemToObject(s, "segmentation", seg_settings_json(&o->seg));
    cJSON_AddItemToObject(r->run, "iterations", cJSON_CreateArray());
    cJSON_AddItemToObject(r->run, "fallbacks", cJSON_CreateArray());
  } else {
    cJSON_ReplaceItemInObject(r->run, "status", cJSON_CreateString("running"));
    if (!obj_get(r->run, "fallbacks")) cJSON_AddItemToObject(r->run, "fallbacks", cJSON_CreateArray());
    if (!obj_get(r->run, "iterations")) cJSON_AddItemToObject(r->run, "iterations", cJSON_CreateArray());
    cJSON *resumes = obj_get(r->run, "resumed");
    if (!resumes) resumes = cJSON_AddArrayToObject(r->run, "resumed");
    cJSON_AddItemToArray(resumes, cJSON_CreateNumber(cJSON_GetArraySize(requests)));
  }
  cJSON_AddItemToObject(r->run, "requests", requests);
  r->requests = requests;
  cJSON *sdinfo = cJSON_CreateObject();
  cJSON_AddStringToObject(sdinfo, "checkpoint", sd.checkpoint_title);
  cJSON_AddStringToObject(sdinfo, "sampler_name", sd.sampler_sent);
  cJSON_AddStringToObject(sdinfo, "scheduler", sd.scheduler_sent);
  cJSON_DeleteItemFromObject(r->run, "sd_server");
  cJSON_AddItemToObject(r->run, "sd_server", sdinfo);
  if (save_run(r, e)) return 1;

  cx_model *model = NULL;
  current_image cur = {0};
  int rc = 1;
  cJSON *initial = obj_get(r->run, "initial");
  int64_t base_seed;
  if (initial) {
    if (current_load(r, "initial.png", &cur, e)) goto out;
    base_seed = (int64_t)obj_get(initial, "seed")->valuedouble;
  } else {
    say(r, "txt2img %dx%d%s: \"%s\"", o->sd.width, o->sd.height, o->sd.enable_hr ? " + hires fix" : "", o->prompt);
    cx_sd_image im;
    double t0 = cx_now_s();
    if (cx_sd_txt2img(&sd, o->prompt, o->negative, o->seed, &im, e)) goto out;
    if (im.interrupted) {
      cx_sd_image_free(&im);
      if (interrupted(r, e)) {
        rc = 130;
        goto out;
      }
    }
    if (write_rel(r, "initial.png", im.png, im.png_len, e)) {
      cx_sd_image_free(&im);
      goto out;
    }
    initial = cJSON_AddObjectToObject(r->run, "initial");
    cJSON_AddStringToObject(initial, "file", "initial.png");
    cJSON_AddNumberToObject(initial, "seed", (double)im.seed);
    cJSON_AddStringToObject(initial, "format", im.format);
    cJSON_AddNumberToObject(initial, "width", im.image.width);
    cJSON_AddNumberToObject(initial, "height", im.image.height);
    cJSON_AddStringToObject(initial, "infotext", im.infotext ? im.infotext : "");
    cJSON_AddNumberToObject(initial, "elapsed_s", cx_now_s() - t0);
    base_seed = im.seed >= 0 ? im.seed : 0;
    current_take(&cur, &im);
    cx_sd_image_free(&im);
    if (save_run(r, e)) goto out;
  }
  if (interrupted(r, e)) {
    rc = 130;
    goto out;
  }

  cJSON *iters = obj_get(r->run, "iterations");
  int step_counter = 0; /* img2img seeds: base + 1 + global step index (D.9: base + 1 + k) */
  for (int it = 0; it < o->iterations; it++) {
    cJSON *itj = cJSON_GetArrayItem(iters, it);
    if (itj && cJSON_IsTrue(obj_get(itj, "completed"))) {
      step_counter += cJSON_GetArraySize(obj_get(itj, "steps"));
      if (current_load(r, obj_get(itj, "result")->valuestring, &cur, e)) goto out;
      continue;
    }
    char rel[512];
    snprintf(rel, sizeof rel, "iter%d", it + 1);
    snprintf(path, sizeof path, "%s/%s", r->dir, rel);
    if (mkdir_p(path, e)) goto out;
    if (!itj) {
      itj = cJSON_CreateObject();
      cJSON_AddNumberToObject(itj, "index", it + 1);
      cJSON_AddItemToObject(itj, "timings", cJSON_CreateObject());
      cJSON_AddItemToArray(iters, itj);
    }
    cJSON *objs = obj_get(itj, "objects");
    if (!objs) {
      if (!model) {
        say(r, "loading segmentation weights %s", o->weights);
        if (load_model(r, &model, e)) goto out;
      }
      say(r, "iteration %d/%d: segmenting %dx%d", it + 1, o->iterations, cur.img.width, cur.img.height);
      if (segment_iteration(r, model, &cur, it, itj, e)) goto out;
      objs = obj_get(itj, "objects");
      if (save_run(r, e)) goto out;
    }
    int nobj = cJSON_GetArraySize(objs);
    cx_scene scene = {0};
    cJSON *llmj = obj_get(itj, "llm");
    if (nobj == 0) {
      say(r, "iteration %d/%d: no objects detected; nothing to inpaint", it + 1, o->iterations);
    } else if (llmj) {
      if (cx_scene_from_json(obj_get(llmj, "validated"), &scene, e)) goto out;
    } else {
      cx_scene_object_in *in = calloc((size_t)nobj, sizeof *in);
      if (!in) {
        cx_fail(e, "out of memory");
        goto out;
      }
      char names[1024] = "";
      size_t nn = 0;
      for (int k = 0; k < nobj; k++) {
        cJSON *oj = cJSON_GetArrayItem(objs, k);
        in[k].id = k;
        snprintf(in[k].label, sizeof in[k].label, "%s", obj_get(oj, "label")->valuestring);
        in[k].area_fraction = obj_get(oj, "area_fraction")->valuedouble;
        for (int q = 0; q < 4; q++) in[k].bbox[q] = (int)cJSON_GetArrayItem(obj_get(oj, "bbox_xywh"), q)->valuedouble;
        if (nn + 70 < sizeof names) nn += (size_t)snprintf(names + nn, sizeof names - nn, "%s%s", k ? ", " : "", in[k].label);
      }
      say(r, "iteration %d/%d: %d object%s (%s); asking the LLM for context", it + 1, o->iterations, nobj,
          nobj == 1 ? "" : "s", names);
      cx_scene_request req = {o->prompt, cur.img.width, cur.img.height, nobj, in, cur.png, cur.len};
      cx_llm_result res;
      double t0 = cx_now_s();
      int lrc = cx_llm_scene(&llm, &req, &res, e);
      free(in);
      if (lrc) {
        if (r->cancel && *r->cancel && interrupted(r, e)) rc = 130;
        goto out;
      }
      cJSON_AddNumberToObject(obj_get(itj, "timings"), "llm_s", cx_now_s() - t0);
      llmj = cJSON_AddObjectToObject(itj, "llm");
      if (res.raw_reply) cJSON_AddStringToObject(llmj, "raw_reply", res.raw_reply);
      else cJSON_AddNullToObject(llmj, "raw_reply");
      cJSON_AddItemToObject(llmj, "validated", cx_scene_to_json(&res.scene));
      cJSON_AddItemToObject(llmj, "exchanges", res.exchanges);
      cJSON *fb = res.fallbacks;
      res.exchanges = NULL, res.fallbacks = NULL;
      cJSON_AddItemToObject(llmj, "fallbacks", fb);
      cJSON_AddBoolToObject(llmj, "degraded", res.scene.degraded);
      cJSON *f;
      cJSON_ArrayForEach(f, fb) {
        char note[1400];
        snprintf(note, sizeof note, "iteration %d: %s", it + 1, f->valuestring);
        cJSON_AddItemToArray(obj_get(r->run, "fallbacks"), cJSON_CreateString(note));
        say(r, "fallback: %s", f->valuestring);
      }
      if (res.scene.degraded) {
        cJSON_DeleteItemFromObject(r->run, "degraded");
        cJSON_AddTrueToObject(r->run, "degraded");
      }
      scene = res.scene;
      memset(&res.scene, 0, sizeof res.scene);
      cx_llm_result_free(&res);
      if (save_run(r, e)) {
        cx_scene_free(&scene);
        goto out;
      }
    }

    cJSON *steps = obj_get(itj, "steps");
    if (!steps) steps = cJSON_AddArrayToObject(itj, "steps");
    for (int k = 0; k < nobj; k++, step_counter++) {
      cJSON *stj = cJSON_GetArrayItem(steps, k);
      cJSON *oj = cJSON_GetArrayItem(objs, k);
      if (stj && cJSON_IsTrue(obj_get(stj, "completed"))) {
        if (current_load(r, obj_get(stj, "file")->valuestring, &cur, e)) goto step_fail;
        continue;
      }
      if (interrupted(r, e)) {
        rc = 130;
        goto step_fail;
      }
      const char *label = obj_get(oj, "label")->valuestring;
      char *prompt = cx_scene_object_prompt(&scene, k, o->style_tags[0] ? o->style_tags : NULL,
                                            o->global_tags_in_object);
      char *neg = cx_scene_object_negative(&scene, k, o->negative);
      int64_t seed = (base_seed + 1 + step_counter) % 4294967296LL;
      uint8_t *mpng = NULL;
      size_t mlen = 0;
      snprintf(path, sizeof path, "%s/%s", r->dir, obj_get(oj, "mask")->valuestring);
      if (!prompt || !neg || read_file(path, &mpng, &mlen, e)) {
        free(prompt), free(neg);
        if (!e->msg[0]) cx_fail(e, "out of memory");
        goto step_fail;
      }
      say(r, "iteration %d/%d: inpainting %d/%d '%s': %s", it + 1, o->iterations, k + 1, nobj, label, prompt);
      cx_sd_image im;
      double t0 = cx_now_s();
      int src = cx_sd_inpaint(&sd, cur.png, cur.len, mpng, mlen, cur.img.width, cur.img.height, prompt, neg, seed,
                              &im, e);
      free(mpng);
      if (src) {
        free(prompt), free(neg);
        if (r->cancel && *r->cancel && interrupted(r, e)) rc = 130;
        goto step_fail;
      }
      if (im.interrupted) { /* a partly denoised image: not a completed step */
        cx_sd_image_free(&im);
        free(prompt), free(neg);
        interrupted(r, e);
        rc = 130;
        goto step_fail;
      }
      char fl[64];
      file_label(label, fl, sizeof fl);
      snprintf(rel, sizeof rel, "iter%d/step%d-%s.png", it + 1, k, fl);
      if (write_rel(r, rel, im.png, im.png_len, e)) {
        cx_sd_image_free(&im);
        free(prompt), free(neg);
        goto step_fail;
      }
      if (!stj) {
        stj = cJSON_CreateObject();
        cJSON_AddItemToArray(steps, stj);
      }
      cJSON_AddNumberToObject(stj, "object", k);
      cJSON_AddStringToObject(stj, "label", label);
      cJSON_AddStringToObject(stj, "prompt", prompt);
      cJSON_AddStringToObject(stj, "negative_prompt", neg);
      cJSON_AddNumberToObject(stj, "seed", (double)seed);
      cJSON_AddNumberToObject(stj, "seed_used", (double)im.seed);
      cJSON_AddStringToObject(stj, "file", rel);
      cJSON_AddStringToObject(stj, "infotext", im.infotext ? im.infotext : "");
      cJSON_AddNumberToObject(stj, "elapsed_s", cx_now_s() - t0);
      cJSON_AddTrueToObject(stj, "completed");
      free(prompt), free(neg);
      current_take(&cur, &im);
      cx_sd_image_free(&im);
      if (save_run(r, e)) goto step_fail;
    }
    cx_scene_free(&scene);
    /* the iteration's result: the last step's PNG (or the unchanged input) */
    snprintf(rel, sizeof rel, "iter%d/result.png", it + 1);
    if (write_rel(r, rel, cur.png, cur.len, e)) goto out;
    cJSON_DeleteItemFromObject(itj, "result");
    cJSON_AddStringToObject(itj, "result", rel);
    cJSON_AddTrueToObject(itj, "completed");
    if (save_run(r, e)) goto out;
    continue;
  step_fail:
    cx_scene_free(&scene);
    goto out;
  }
  if (write_rel(r, "final.png", cur.png, cur.len, e)) goto out;
  cJSON_DeleteItemFromObject(r->run, "final");
  cJSON_AddStringToObject(r->run, "final", "final.png");
  cJSON_ReplaceItemInObject(r->run, "status", cJSON_CreateString("done"));
  cJSON_DeleteItemFromObject(r->run, "elapsed_s");
  cJSON_AddNumberToObject(r->run, "elapsed_s", cx_now_s() - r->t0);
  if (save_run(r, e)) goto out;
  say(r, "done: %s/final.png (record: %s/run.json)", r->dir, r->dir);
  rc = 0;
out:
  memset(llm.api_key, 0, sizeof llm.api_key);
  current_free(&cur);
  cx_model_free(model);
  return rc;
}
