/* AUTOMATIC1111 web UI API client; see cx_sd.h and spec pipeline-apis.md Part B / D.9. */
#include "cx_sd.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cx_base64.h"
#include "cx_http.h"
#include "cx_record.h"

#define SD_START_HINT "start the web UI with --api (or pass --sd-url with its address)"

void cx_sd_settings_default(cx_sd_settings *s) {
  memset(s, 0, sizeof *s);
  snprintf(s->url, sizeof s->url, "http://127.0.0.1:7860");
  /* The original's "DPM++ 2M Karras" (D.3), in the portable split form of B.9. */
  snprintf(s->sampler, sizeof s->sampler, "DPM++ 2M");
  snprintf(s->scheduler, sizeof s->scheduler, "Karras");
  s->width = 640, s->height = 360, s->steps = 20, s->cfg_scale = 7.0;
  s->enable_hr = 1, s->hr_scale = 2.0, s->hr_second_pass_steps = 20, s->hr_denoising_strength = 0.6;
  snprintf(s->hr_upscaler, sizeof s->hr_upscaler, "Latent");
  s->inpaint_steps = 40, s->inpaint_denoising_strength = 0.6;
  s->resize_mode = 0, s->mask_blur = 20, s->inpainting_fill = 1, s->inpaint_full_res = 0;
  s->inpaint_full_res_padding = 32, s->inpainting_mask_invert = 0;
  s->connect_timeout_s = 5, s->timeout_s = 900, s->ready_wait_s = 0;
  s->max_retries = 3, s->backoff_base_s = 0.5, s->progress_interval_s = 1.0;
}

static int set_str(char *dst, size_t n, const char *key, const cJSON *v, cx_err *e) {
  if (!cJSON_IsString(v)) return cx_fail(e, "sd.%s must be a string", key);
  if (strlen(v->valuestring) >= n) return cx_fail(e, "sd.%s is longer than %zu characters", key, n - 1);
  snprintf(dst, n, "%s", v->valuestring);
  return 0;
}

static int set_num(double *dst, const char *key, const cJSON *v, double lo, double hi, cx_err *e) {
  if (!cJSON_IsNumber(v)) return cx_fail(e, "sd.%s must be a number", key);
  if (v->valuedouble < lo || v->valuedouble > hi) return cx_fail(e, "sd.%s = %g is outside [%g, %g]", key, v->valuedouble, lo, hi);
  *dst = v->valuedouble;
  return 0;
}

static int set_int(int *dst, const char *key, const cJSON *v, int lo, int hi, cx_err *e) {
  if (cJSON_IsBool(v)) {
    *dst = cJSON_IsTrue(v);
    return 0;
  }
  double d = 0;
  if (set_num(&d, key, v, lo, hi, e)) return -1;
  if (d != floor(d)) return cx_fail(e, "sd.%s must be an integer (got %g)", key, d);
  *dst = (int)d;
  return 0;
}

int cx_sd_settings_set(cx_sd_settings *s, const char *k, const cJSON *v, cx_err *e) {
#define STR(name) if (!strcmp(k, #name)) return set_str(s->name, sizeof s->name, k, v, e)
#define NUM(name, lo, hi) if (!strcmp(k, #name)) return set_num(&s->name, k, v, lo, hi, e)
#define INT(name, lo, hi) if (!strcmp(k, #name)) return set_int(&s->name, k, v, lo, hi, e)
  STR(url); STR(auth); STR(checkpoint); STR(sampler); STR(scheduler); STR(hr_upscaler);
  INT(width, 8, 8192); INT(height, 8, 8192); INT(steps, 1, 1000); NUM(cfg_scale, 0, 100);
  INT(enable_hr, 0, 1); NUM(hr_scale, 1, 8); INT(hr_second_pass_steps, 0, 1000);
  NUM(hr_denoising_strength, 0, 1); INT(inpaint_steps, 1, 1000); NUM(inpaint_denoising_strength, 0, 1);
  INT(resize_mode, 0, 3); INT(mask_blur, 0, 256); INT(inpainting_fill, 0, 3); INT(inpaint_full_res, 0, 1);
  INT(inpaint_full_res_padding, 0, 1024); INT(inpainting_mask_invert, 0, 1);
  NUM(connect_timeout_s, 0.1, 600); NUM(timeout_s, 0.1, 86400); NUM(ready_wait_s, 0, 3600);
  INT(max_retries, 0, 20); NUM(backoff_base_s, 0, 60); NUM(progress_interval_s, 0, 60);
#undef STR
#undef NUM
#undef INT
  if (!strcmp(k, "styles")) {
    if (!cJSON_IsArray(v)) return cx_fail(e, "sd.styles must be an array of style names");
    s->nstyles = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
      if (s->nstyles == CX_SD_MAX_STYLES) return cx_fail(e, "sd.styles: at most %d styles", CX_SD_MAX_STYLES);
      if (set_str(s->styles[s->nstyles], sizeof s->styles[0], k, it, e)) return -1;
      s->nstyles++;
    }
    return 0;
  }
  return cx_fail(e, "unknown SD setting \"%s\" in the config file", k);
}

void cx_sd_image_free(cx_sd_image *im) {
  if (!im) return;
  free(im->png);
  free(im->infotext);
  cx_rgb_image_free(&im->image);
  memset(im, 0, sizeof *im);
}

int cx_sd_init(cx_sd *sd, const cx_sd_settings *s, cJSON *log, volatile sig_atomic_t *cancel, cx_err *e) {
  memset(sd, 0, sizeof *sd);
  sd->s = *s;
  size_t n = strlen(sd->s.url);
  while (n && sd->s.url[n - 1] == '/') sd->s.url[--n] = 0;
  if (strncmp(sd->s.url, "http://", 7) && strncmp(sd->s.url, "https://", 8))
    return cx_fail(e, "SD URL \"%s\" must start with http:// or https://", sd->s.url);
  sd->log = log;
  sd->cancel = cancel;
  return cx_http_global_init(e);
}

/* ---- requests ------------------------------------------------------------------------ */

static void sd_opts(cx_sd *sd, cx_http_opts *o, int generation) {
  cx_http_opts_default(o, "SD server", SD_START_HINT);
  o->connect_timeout_s = sd->s.connect_timeout_s;
  o->timeout_s = generation ? sd->s.timeout_s : (sd->s.timeout_s < 60 ? sd->s.timeout_s : 60);
  o->max_retries = sd->s.max_retries;
  o->backoff_base_s = sd->s.backoff_base_s;
  o->max_500_retries = 1; /* OOM and bad parameters recur (C.8) */
  o->retry_budget_s = 60;
  o->userpwd = sd->s.auth[0] ? sd->s.auth : NULL;
  o->cancel = sd->cancel;
}

static void origin_of(const cx_sd *sd, char *out, size_t n) { cx_url_redact(sd->s.url, out, n); }

/* Turns a non-2xx answer into one actionable message. */
static int sd_status_error(cx_sd *sd, const char *method, const char *path, const cx_http_response *r,
                           cx_err *e) {
  char detail[600], origin[512];
  cx_http_error_detail(r->body, r->len, detail, sizeof detail);
  origin_of(sd, origin, sizeof origin);
  long st = r->status;
  const char *reason = cx_http_reason(st);
  if (st == 404 && (!strcmp(detail, "Not Found") || !detail[0]))
    return cx_fail(e, "SD server at %s has no %s (404 Not Found): start the web UI with --api "
                      "(without it the /sdapi routes are off)", origin, path);
  if (st == 401)
    return cx_fail(e, "SD server at %s refused %s (401: %s): %s", origin, path, detail[0] ? detail : "Unauthorized",
                   sd->s.auth[0] ? "check the user:password given with --sd-auth against the web UI's --api-auth"
                                 : "it runs with --api-auth; pass the same user:password with --sd-auth "
                                   "(or CTXDIFF_SD_AUTH)");
  if (st == 422)
    return cx_fail(e, "SD server at %s rejected %s %s (422 Unprocessable Entity): %s: check the \"sd\" settings "
                      "in the config file", origin, method, path, detail[0] ? detail : "invalid request");
  if (st >= 500)
    return cx_fail(e, "SD server at %s failed on %s %s (%ld %s%s%s): see the web UI's console", origin, method,
                   path, st, reason, detail[0] ? "): " : "", detail[0] ? detail : "");
  return cx_fail(e, "SD server at %s answered %s %s with %ld %s%s%s", origin, method, path, st, reason,
                 detail[0] ? ": " : "", detail);
}

/* GET or POST of a JSON body; parses the 2xx answer into *out (may be JSON null). */
static int sd_call(cx_sd *sd, const char *method, const char *path, const cJSON *body, int generation,
                   const cx_http_opts *opts_override, cJSON **out, cx_err *e) {
  char url[1024];
  snprintf(url, sizeof url, "%s%s", sd->s.url, path);
  cx_http_opts o;
  if (opts_override) o = *opts_override;
  else sd_opts(sd, &o, generation);
  char *text = body ? cJSON_PrintUnformatted(body) : NULL;
  if (body && !text) return cx_fail(e, "out of memory encoding the request to %s", path);
  cx_http_response r;
  double t0 = cx_now_s();
  int rc = cx_http_request(&o, method, url, text, text ? strlen(text) : 0, &r, e);
  free(text);
  if (rc) {
    cx_record_request(sd->log, "sd", method, url, body, NULL, e->msg, t0);
    return -1;
  }
  if (r.status < 200 || r.status >= 300) {
    sd_status_error(sd, method, path, &r, e);
    cx_record_request(sd->log, "sd", method, url, body, &r, e->msg, t0);
    cx_http_response_free(&r);
    return -1;
  }
  cJSON *j = cJSON_ParseWithLength(r.body, r.len);
  if (!j) {
    char origin[512], head[200];
    origin_of(sd, origin, sizeof origin);
    cx_http_error_detail(r.body, r.len, head, sizeof head);
    cx_fail(e, "SD server at %s answered %s with something that is not JSON (%s): is this an SD web UI?", origin,
            path, head);
    cx_record_request(sd->log, "sd", method, url, body, &r, e->msg, t0);
    cx_http_response_free(&r);
    return -1;
  }
  cx_record_request(sd->log, "sd", method, url, body, &r, NULL, t0);
  cx_http_response_free(&r);
  *out = j;
  return 0;
}

/* ---- connect (D.9 steps 1-3) --------------------------------------------------------- */

static const char *base_name(const char *p) {
  const char *s1 = strrchr(p, '/'), *s2 = strrchr(p, '\\');
  const char *s = s1 > s2 ? s1 : s2;
  return s ? s + 1 : p;
}

static int name_matches(const char *want, const cJSON *model) {
  const char *keys[] = {"title", "model_name", "hash", "sha256"};
  for (int i = 0; i < 4; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, keys[i]);
    if (cJSON_IsString(v) && !strcmp(v->valuestring, want)) return 1;
  }
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(model, "filename");
  if (cJSON_IsString(f)) {
    const char *b = base_name(f->valuestring);
    if (!strcmp(b, want)) return 1;
    const char *dot = strrchr(b, '.');
    if (dot && strlen(want) == (size_t)(dot - b) && !strncmp(b, want, (size_t)(dot - b))) return 1;
  }
  return 0;
}

int cx_sd_connect(cx_sd *sd, cx_err *e) {
  char origin[512];
  origin_of(sd, origin, sizeof origin);
  /* 1. readiness + checkpoint list. A refused connection fails at once unless a wait was asked
   *    for: with no server running, the user should hear about it immediately. */
  cx_http_opts o;
  sd_opts(sd, &o, 0);
  o.retry_connect = sd->s.ready_wait_s > 0;
  o.retry_budget_s = sd->s.ready_wait_s > 0 ? sd->s.ready_wait_s : 60;
  if (sd->s.ready_wait_s > 0) o.max_retries = 1000;
  cJSON *models = NULL;
  if (sd_call(sd, "GET", "/sdapi/v1/sd-models", NULL, 0, &o, &models, e)) return -1;
  if (!cJSON_IsArray(models)) {
    cJSON_Delete(models);
    return cx_fail(e, "SD server at %s: /sdapi/v1/sd-models did not answer a list", origin);
  }
  sd->checkpoint_title[0] = 0;
  if (sd->s.checkpoint[0]) {
    const cJSON *m;
    cJSON_ArrayForEach(m, models) {
      if (name_matches(sd->s.checkpoint, m)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "title");
        if (cJSON_IsString(t)) snprintf(sd->checkpoint_title, sizeof sd->checkpoint_title, "%s", t->valuestring);
        break;
      }
    }
    if (!sd->checkpoint_title[0]) {
      char list[600] = "";
      size_t n = 0;
      cJSON_ArrayForEach(m, models) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "title");
        if (cJSON_IsString(t) && n + 4 < sizeof list)
          n += (size_t)snprintf(list + n, sizeof list - n, "%s\"%s\"", n ? ", " : "", t->valuestring);
        if (n >= sizeof list) break;
      }
      cJSON_Delete(models);
      return cx_fail(e, "SD server at %s has no checkpoint \"%s\"; it has: %s", origin, sd->s.checkpoint,
                     list[0] ? list : "(none)");
    }
  }
  cJSON_Delete(models);

  /* 2. options: switch the (server-global) checkpoint only when it differs. */
  cJSON *opts = NULL;
  if (sd_call(sd, "GET", "/sdapi/v1/options", NULL, 0, NULL, &opts, e)) return -1;
  const cJSON *cur = cJSON_GetObjectItemCaseSensitive(opts, "sd_model_checkpoint");
  int differs = sd->checkpoint_title[0] && !(cJSON_IsString(cur) && !strcmp(cur->valuestring, sd->checkpoint_title));
  if (!sd->checkpoint_title[0] && cJSON_IsString(cur))
    snprintf(sd->checkpoint_title, sizeof sd->checkpoint_title, "%s", cur->valuestring);
  cJSON_Delete(opts);
  if (differs) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "sd_model_checkpoint", sd->checkpoint_title);
    cJSON *ans = NULL;
    int rc = sd_call(sd, "POST", "/sdapi/v1/options", b, 1, NULL, &ans, e);
    cJSON_Delete(b);
    cJSON_Delete(ans);
    if (rc) return cx_failctx(e, "switching the checkpoint to \"%s\"", sd->checkpoint_title);
  }

  /* 3. sampler naming (B.9): /schedulers answers on 1.9.1+, where the scheduler is its own field. */
  cJSON *sch = NULL;
  int have_schedulers = 0;
  {
    char url[1024];
    snprintf(url, sizeof url, "%s/sdapi/v1/schedulers", sd->s.url);
    cx_http_response r;
    sd_opts(sd, &o, 0);
    double t0 = cx_now_s();
    if (cx_http_request(&o, "GET", url, NULL, 0, &r, e)) {
      cx_record_request(sd->log, "sd", "GET", url, NULL, NULL, e->msg, t0);
      return -1;
    }
    cx_record_request(sd->log, "sd", "GET", url, NULL, &r, NULL, t0);
    if (r.status == 200) {
      sch = cJSON_ParseWithLength(r.body, r.len);
      have_schedulers = cJSON_IsArray(sch);
    } else if (r.status != 404) {
      sd_status_error(sd, "GET", "/sdapi/v1/schedulers", &r, e);
      cx_http_response_free(&r);
      return -1;
    }
    cx_http_response_free(&r);
  }
  cJSON *samplers = NULL;
  if (sd_call(sd, "GET", "/sdapi/v1/samplers", NULL, 0, NULL, &samplers, e)) {
    cJSON_Delete(sch);
    return -1;
  }
  int sched_default = !sd->s.scheduler[0] || !strcasecmp(sd->s.scheduler, "automatic");
  char combined[160];
  snprintf(combined, sizeof combined, "%s %s", sd->s.sampler, sd->s.scheduler);
  int have_plain = 0, have_combined = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, samplers) {
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
    if (!cJSON_IsString(nm)) continue;
    if (!strcmp(nm->valuestring, sd->s.sampler)) have_plain = 1;
    if (!strcmp(nm->valuestring, combined)) have_combined = 1;
  }
  sd->scheduler_sent[0] = 0;
  if (have_schedulers) {
    if (!have_plain) {
      cJSON_Delete(sch);
      cJSON_Delete(samplers);
      return cx_fail(e, "SD server at %s has no sampler \"%s\" (see GET /sdapi/v1/samplers): set sd.sampler to "
                        "one it lists", origin, sd->s.sampler);
    }
    snprintf(sd->sampler_sent, sizeof sd->sampler_sent, "%s", sd->s.sampler);
    if (!sched_default) {
      int known = 0;
      cJSON_ArrayForEach(it, sch) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
        const cJSON *lb = cJSON_GetObjectItemCaseSensitive(it, "label");
        if ((cJSON_IsString(nm) && !strcasecmp(nm->valuestring, sd->s.scheduler)) ||
            (cJSON_IsString(lb) && !strcasecmp(lb->valuestring, sd->s.scheduler)))
          known = 1;
      }
      if (!known) {
        cJSON_Delete(sch);
        cJSON_Delete(samplers);
        return cx_fail(e, "SD server at %s has no scheduler \"%s\" (see GET /sdapi/v1/schedulers)", origin,
                       sd->s.scheduler);
      }
      snprintf(sd->scheduler_sent, sizeof sd->scheduler_sent, "%s", sd->s.scheduler);
    }
  } else if (!sched_default && have_combined) {
    snprintf(sd->sampler_sent, sizeof sd->sampler_sent, "%s", combined); /* before 1.9.1 */
  } else if (have_plain) {
    snprintf(sd->sampler_sent, sizeof sd->sampler_sent, "%s", sd->s.sampler);
    if (!sched_default)
      fprintf(stderr, "ctxdiff: warning: SD server has no \"%s\"; using \"%s\" with its default schedule\n",
              combined, sd->s.sampler);
  } else {
    cJSON_Delete(sch);
    cJSON_Delete(samplers);
    return cx_fail(e, "SD server at %s has no sampler \"%s\": set sd.sampler to one listed by GET /sdapi/v1/samplers",
                   origin, sd->s.sampler);
  }
  cJSON_Delete(sch);
  cJSON_Delete(samplers);

  /* Server-side styles that do not exist are silently ignored by A1111 (D.8.5): say so. */
  if (sd->s.nstyles) {
    cJSON *styles = NULL;
    if (sd_call(sd, "GET", "/sdapi/v1/prompt-styles", NULL, 0, NULL, &styles, e)) return -1;
    for (int i = 0; i < sd->s.nstyles; i++) {
      int found = 0;
      cJSON_ArrayForEach(it, styles) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (cJSON_IsString(nm) && !strcmp(nm->valuestring, sd->s.styles[i])) found = 1;
      }
      if (!found)
        fprintf(stderr, "ctxdiff: warning: SD server has no style \"%s\"; it will be ignored\n", sd->s.styles[i]);
    }
    cJSON_Delete(styles);
  }
  return 0;
}

/* ---- progress bar and Ctrl-C --------------------------------------------------------- */

static void sd_tick(void *ctx, double elapsed) {
  cx_sd *sd = ctx;
  if (sd->cancel && *sd->cancel >= 1 && !sd->interrupt_sent) {
    /* First Ctrl-C: ask the server to stop the generation; the pending request then returns. */
    sd->interrupt_sent = 1;
    char url[1024];
    snprintf(url, sizeof url, "%s/sdapi/v1/interrupt", sd->s.url);
    cx_http_opts o;
    sd_opts(sd, &o, 0);
    o.timeout_s = 5, o.max_retries = 0, o.cancel = NULL;
    cx_http_response r;
    cx_err e2;
    double t0 = cx_now_s();
    if (sd->show_progress) fprintf(stderr, "\nctxdiff: interrupting the SD generation (Ctrl-C again to abort)\n");
    if (cx_http_request(&o, "POST", url, "", 0, &r, &e2) == 0) {
      cx_record_request(sd->log, "sd", "POST", url, NULL, &r, NULL, t0);
      cx_http_response_free(&r);
    } else {
      cx_record_request(sd->log, "sd", "POST", url, NULL, NULL, e2.msg, t0);
    }
    return;
  }
  if (!sd->show_progress || sd->s.progress_interval_s <= 0) return;
  if (elapsed - sd->last_poll < sd->s.progress_interval_s) return;
  sd->last_poll = elapsed;
  char url[1024];
  snprintf(url, sizeof url, "%s/sdapi/v1/progress?skip_current_image=true", sd->s.url);
  cx_http_opts o;
  sd_opts(sd, &o, 0);
  o.timeout_s = 2, o.max_retries = 0, o.cancel = NULL;
  cx_http_response r;
  cx_err e2;
  if (cx_http_request(&o, "GET", url, NULL, 0, &r, &e2)) return;
  cJSON *j = r.status == 200 ? cJSON_ParseWithLength(r.body, r.len) : NULL;
  cx_http_response_free(&r);
  if (!j) return;
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "progress");
  const cJSON *eta = cJSON_GetObjectItemCaseSensitive(j, "eta_relative");
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "state");
  const cJSON *step = cJSON_GetObjectItemCaseSensitive(st, "sampling_step");
  const cJSON *steps = cJSON_GetObjectItemCaseSensitive(st, "sampling_steps");
  double frac = cJSON_IsNumber(p) ? p->valuedouble : 0;
  if (frac < 0) frac = 0;
  if (frac > 1) frac = 1;
  char bar[31];
  int fill = (int)(frac * 30);
  for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
  bar[30] = 0;
  fprintf(stderr, "\r  %s [%s] %3d%%", sd->progress_label, bar, (int)(frac * 100));
  if (cJSON_IsNumber(step) && cJSON_IsNumber(steps))
    fprintf(stderr, " step %d/%d", (int)step->valuedouble, (int)steps->valuedouble);
  if (cJSON_IsNumber(eta) && eta->valuedouble > 0) fprintf(stderr, " eta %.0fs", eta->valuedouble);
  fprintf(stderr, "   ");
  fflush(stderr);
  cJSON_Delete(j);
}

/* ---- images ---------------------------------------------------------------------------- */

int64_t cx_infotext_seed(const char *infotext) {
  if (!infotext) return -1;
  const char *last = strrchr(infotext, '\n');
  last = last ? last + 1 : infotext;
  const char *p = strstr(last, "Seed: ");
  if (!p) return -1;
  char *end;
  long long v = strtoll(p + 6, &end, 10);
  return end == p + 6 ? -1 : (int64_t)v;
}

int cx_sd_decode_image(const char *b64, const char *infotext, cx_sd_image *out, cx_err *e) {
  uint8_t *bytes = NULL;
  size_t n = 0;
  if (cx_b64_decode(b64, strlen(b64), &bytes, &n, e)) return cx_failctx(e, "SD answer image");
  const char *fmt = cx_image_format(bytes, n);
  if (!fmt) {
    free(bytes);
    return cx_fail(e, "the SD server answered an image that is neither PNG, JPEG nor WebP (%zu bytes)", n);
  }
  if (!strcmp(fmt, "webp") && !cx_image_webp_supported()) {
    free(bytes);
    return cx_fail(e, "the SD server answered a WebP image, but this build has no WebP support (libwebp-dev was "
                      "not found at build time, or CTXDIFF_WEBP=OFF): set the file format for images (samples_format) to png in the "
                      "web UI's settings, or rebuild with libwebp-dev");
  }
  snprintf(out->format, sizeof out->format, "%s", fmt);
  if (cx_image_decode(bytes, n, &out->image, e)) {
    free(bytes);
    return cx_failctx(e, "decoding the SD server's %s answer", out->format);
  }
  /* JPEG and WebP answers carry the infotext in EXIF UserComment, which is not read: their
   * infotext comes from the answer's info.infotexts, like the seed. */
  char *chunk = !strcmp(out->format, "png") ? cx_png_read_text(bytes, n, "parameters") : NULL;
  if (chunk) {
    out->png = bytes, out->png_len = n; /* saved as-is: the server's parameters chunk stays */
    if (!out->infotext) out->infotext = chunk;
    else free(chunk);
  } else {
    free(bytes);
    const char *txt = infotext ? infotext : out->infotext;
    cx_png_text t = {"parameters", txt};
    if (cx_png_encode(out->image.width, out->image.height, 3, out->image.rgb, txt ? &t : NULL, txt ? 1 : 0,
                      &out->png, &out->png_len, e))
      return cx_failctx(e, "re-encoding the SD answer as PNG");
  }
  if (!out->infotext && infotext) out->infotext = strdup(infotext);
  return 0;
}

/* Picks images[index_of_first_image], reads seed and infotext from `info`. */
static int sd_take_result(cx_sd *sd, const char *path, cJSON *ans, int64_t requested_seed, cx_sd_image *out,
                          cx_err *e) {
  char origin[512];
  origin_of(sd, origin, sizeof origin);
  const cJSON *images = cJSON_GetObjectItemCaseSensitive(ans, "images");
  const cJSON *info_s = cJSON_GetObjectItemCaseSensitive(ans, "info");
  cJSON *info = cJSON_IsString(info_s) ? cJSON_Parse(info_s->valuestring) : NULL;
  int first = 0;
  const cJSON *ifi = cJSON_GetObjectItemCaseSensitive(info, "index_of_first_image");
  if (cJSON_IsNumber(ifi) && ifi->valuedouble >= 0) first = (int)ifi->valuedouble;
  if (!cJSON_IsArray(images) || cJSON_GetArraySize(images) <= first) {
    cJSON_Delete(info);
    return cx_fail(e, "SD server at %s answered %s without an image (\"images\" %s): is send_images off, or did "
                      "an extension fail?", origin, path, cJSON_IsArray(images) ? "is empty" : "is missing");
  }
  const cJSON *img = cJSON_GetArrayItem(images, first);
  if (!cJSON_IsString(img)) {
    cJSON_Delete(info);
    return cx_fail(e, "SD server at %s: images[%d] of %s is not a string", origin, first, path);
  }
  const char *infotext = NULL;
  const cJSON *its = cJSON_GetObjectItemCaseSensitive(info, "infotexts");
  const cJSON *it0 = cJSON_GetArrayItem(its, first > 0 && cJSON_GetArraySize(its) > first ? first : 0);
  if (cJSON_IsString(it0)) infotext = it0->valuestring;
  memset(out, 0, sizeof *out);
  out->seed = -1;
  if (cx_sd_decode_image(img->valuestring, infotext, out, e)) {
    cJSON_Delete(info);
    cx_sd_image_free(out);
    return -1;
  }
  const cJSON *seed = cJSON_GetObjectItemCaseSensitive(info, "seed");
  if (cJSON_IsNumber(seed)) out->seed = (int64_t)seed->valuedouble;
  else if (cx_infotext_seed(out->infotext) >= 0) out->seed = cx_infotext_seed(out->infotext);
  else if (requested_seed >= 0) out->seed = requested_seed;
  cJSON_Delete(info);
  out->interrupted = sd->interrupt_sent;
  return 0;
}

static void add_common(cx_sd *sd, cJSON *b, const char *prompt, const char *negative, int64_t seed) {
  cJSON_AddStringToObject(b, "prompt", prompt ? prompt : "");
  cJSON_AddStringToObject(b, "negative_prompt", negative ? negative : "");
  cJSON *st = cJSON_AddArrayToObject(b, "styles");
  for (int i = 0; i < sd->s.nstyles; i++) cJSON_AddItemToArray(st, cJSON_CreateString(sd->s.styles[i]));
  cJSON_AddNumberToObject(b, "seed", (double)seed);
  cJSON_AddStringToObject(b, "sampler_name", sd->sampler_sent);
  if (sd->scheduler_sent[0]) cJSON_AddStringToObject(b, "scheduler", sd->scheduler_sent);
  cJSON_AddNumberToObject(b, "cfg_scale", sd->s.cfg_scale);
  cJSON_AddNumberToObject(b, "batch_size", 1);
  cJSON_AddNumberToObject(b, "n_iter", 1);
  cJSON_AddBoolToObject(b, "send_images", 1);
  cJSON_AddBoolToObject(b, "save_images", 0);
}

static int sd_generate(cx_sd *sd, const char *path, cJSON *body, int64_t seed, cx_sd_image *out, cx_err *e) {
  cx_http_opts o;
  sd_opts(sd, &o, 1);
  o.cancel_abort_level = 2; /* the first Ctrl-C goes to /interrupt, the second aborts */
  o.tick = sd_tick;
  o.tick_ctx = sd;
  sd->interrupt_sent = 0;
  sd->last_poll = 0;
  cJSON *ans = NULL;
  int rc = sd_call(sd, "POST", path, body, 1, &o, &ans, e);
  if (sd->show_progress && sd->s.progress_interval_s > 0 && sd->last_poll > 0) fprintf(stderr, "\n");
  if (rc) return -1;
  rc = sd_take_result(sd, path, ans, seed, out, e);
  cJSON_Delete(ans);
  return rc;
}

int cx_sd_txt2img(cx_sd *sd, const char *prompt, const char *negative, int64_t seed, cx_sd_image *out, cx_err *e) {
  cJSON *b = cJSON_CreateObject();
  if (!b) return cx_fail(e, "out of memory");
  add_common(sd, b, prompt, negative, seed);
  cJSON_AddNumberToObject(b, "steps", sd->s.steps);
  cJSON_AddNumberToObject(b, "width", sd->s.width);
  cJSON_AddNumberToObject(b, "height", sd->s.height);
  cJSON_AddBoolToObject(b, "enable_hr", sd->s.enable_hr);
  if (sd->s.enable_hr) {
    cJSON_AddNumberToObject(b, "hr_scale", sd->s.hr_scale);
    cJSON_AddStringToObject(b, "hr_upscaler", sd->s.hr_upscaler);
    cJSON_AddNumberToObject(b, "hr_second_pass_steps", sd->s.hr_second_pass_steps);
    cJSON_AddNumberToObject(b, "denoising_strength", sd->s.hr_denoising_strength);
  }
  snprintf(sd->progress_label, sizeof sd->progress_label, "txt2img");
  int rc = sd_generate(sd, "/sdapi/v1/txt2img", b, seed, out, e);
  cJSON_Delete(b);
  return rc;
}

static char *data_url(const uint8_t *png, size_t n) {
  size_t bl;
  char *b = cx_b64_encode(png, n, &bl);
  if (!b) return NULL;
  static const char prefix[] = "data:image/png;base64,";
  char *s = malloc(sizeof prefix + bl);
  if (s) {
    memcpy(s, prefix, sizeof prefix - 1);
    memcpy(s + sizeof prefix - 1, b, bl + 1);
  }
  free(b);
  return s;
}

int cx_sd_inpaint(cx_sd *sd, const uint8_t *init_png, size_t init_len, const uint8_t *mask_png, size_t mask_len,
                  int width, int height, const char *prompt, const char *negative, int64_t seed, cx_sd_image *out,
                  cx_err *e) {
  char *init = data_url(init_png, init_len);
  char *mask = data_url(mask_png, mask_len);
  cJSON *b = cJSON_CreateObject();
  if (!init || !mask || !b) {
    free(init), free(mask), cJSON_Delete(b);
    return cx_fail(e, "out of memory encoding the inpainting request");
  }
  cJSON *imgs = cJSON_AddArrayToObject(b, "init_images");
  cJSON_AddItemToArray(imgs, cJSON_CreateString(init));
  cJSON_AddStringToObject(b, "mask", mask);
  free(init), free(mask);
  add_common(sd, b, prompt, negative, seed);
  cJSON_AddNumberToObject(b, "steps", sd->s.inpaint_steps);
  cJSON_AddNumberToObject(b, "width", width);
  cJSON_AddNumberToObject(b, "height", height);
  cJSON_AddNumberToObject(b, "denoising_strength", sd->s.inpaint_denoising_strength);
  cJSON_AddNumberToObject(b, "resize_mode", sd->s.resize_mode);
  cJSON_AddNumberToObject(b, "mask_blur", sd->s.mask_blur);
  cJSON_AddNumberToObject(b, "inpainting_fill", sd->s.inpainting_fill);
  cJSON_AddBoolToObject(b, "inpaint_full_res", sd->s.inpaint_full_res);
  cJSON_AddNumberToObject(b, "inpaint_full_res_padding", sd->s.inpaint_full_res_padding);
  cJSON_AddNumberToObject(b, "inpainting_mask_invert", sd->s.inpainting_mask_invert);
  snprintf(sd->progress_label, sizeof sd->progress_label, "inpaint");
  int rc = sd_generate(sd, "/sdapi/v1/img2img", b, seed, out, e);
  cJSON_Delete(b);
  return rc;
}
