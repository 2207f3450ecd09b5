/* Client for the AUTOMATIC1111 Stable Diffusion web UI API (spec pipeline-apis.md Part B),
 * following the call sequence of D.9: sd-models (readiness, checkpoint title), options
 * (switch the checkpoint only when it differs), schedulers/samplers probes (B.9 naming),
 * prompt-styles (warn about unknown styles), then txt2img and img2img inpainting with every
 * field sent explicitly. Defaults are the original project's values (D.1, D.3, D.7). */
#ifndef CX_SD_H
#define CX_SD_H

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdint.h>

#include "cx_error.h"
#include "image_io.h"

#define CX_SD_MAX_STYLES 8

typedef struct cx_sd_settings {
  char url[512];        /* base URL, default http://127.0.0.1:7860 */
  char auth[256];       /* "user:pass" for --api-auth, or "" */
  char checkpoint[256]; /* title, model name, file name or hash; "" keeps the loaded one */
  char sampler[64];     /* plain sampler name, "DPM++ 2M" */
  char scheduler[64];   /* "Karras"; "" or "Automatic" = the sampler's own */
  char styles[CX_SD_MAX_STYLES][128];
  int nstyles;
  /* txt2img (first pass; with hires fix the output is width*hr_scale x height*hr_scale) */
  int width, height, steps;
  double cfg_scale;
  int enable_hr;
  double hr_scale;
  char hr_upscaler[64];
  int hr_second_pass_steps;
  double hr_denoising_strength;
  /* img2img inpainting */
  int inpaint_steps;
  double inpaint_denoising_strength;
  int resize_mode, mask_blur, inpainting_fill, inpaint_full_res, inpaint_full_res_padding,
      inpainting_mask_invert;
  /* transport */
  double connect_timeout_s, timeout_s; /* timeout_s: per generation request */
  double ready_wait_s;  /* wait this long for a starting server (0: fail at once if refused) */
  int max_retries;
  double backoff_base_s;
  double progress_interval_s; /* /progress polling period while generating; 0 = off */
} cx_sd_settings;

void cx_sd_settings_default(cx_sd_settings *s);
/* Sets one field from JSON ("steps": 20, "styles": ["a"], ...). Unknown keys are errors. */
int cx_sd_settings_set(cx_sd_settings *s, const char *key, const cJSON *value, cx_err *e);

typedef struct cx_sd {
  cx_sd_settings s;
  char checkpoint_title[256]; /* as the server names it, after resolution */
  char sampler_sent[160];     /* what goes into sampler_name */
  char scheduler_sent[64];    /* what goes into scheduler ("" = field not sent) */
  cJSON *log;                 /* request records (array, not owned; NULL = none) */
  volatile sig_atomic_t *cancel;
  int show_progress;          /* draw a progress bar on stderr */
  int interrupt_sent;
  double last_poll;
  char progress_label[128];
} cx_sd;

typedef struct cx_sd_image {
  uint8_t *png;        /* file to save: the server's PNG as-is, or a re-encoded PNG carrying the
                          infotext as its parameters chunk (JPEG answers, PNGs without one) */
  size_t png_len;
  cx_rgb_image image;  /* decoded RGB */
  int64_t seed;        /* seed actually used (info.seed), -1 when unknown */
  char *infotext;      /* malloc'd, may be NULL */
  char format[8];      /* "png" / "jpeg" / "webp": what the server sent */
  int interrupted;     /* Ctrl-C was forwarded to /interrupt during this request */
} cx_sd_image;

void cx_sd_image_free(cx_sd_image *im);

int cx_sd_init(cx_sd *sd, const cx_sd_settings *s, cJSON *log, volatile sig_atomic_t *cancel, cx_err *e);
/* Readiness, checkpoint, sampler naming, styles (D.9 steps 1-3). */
int cx_sd_connect(cx_sd *sd, cx_err *e);
int cx_sd_txt2img(cx_sd *sd, const char *prompt, const char *negative, int64_t seed, cx_sd_image *out,
                  cx_err *e);
/* init image given as PNG bytes; mask as 8-bit grey PNG bytes of the same size (255 = inpaint). */
int cx_sd_inpaint(cx_sd *sd, const uint8_t *init_png, size_t init_len, const uint8_t *mask_png,
                  size_t mask_len, int width, int height, const char *prompt, const char *negative,
                  int64_t seed, cx_sd_image *out, cx_err *e);

/* Decodes one answer image (base64, optional data: prefix) into out->png/image/format,
 * keeping or adding the parameters chunk (infotext may be NULL). */
int cx_sd_decode_image(const char *b64, const char *infotext, cx_sd_image *out, cx_err *e);
/* "Seed: N" from an infotext's parameter line; -1 when absent. */
int64_t cx_infotext_seed(const char *infotext);

#endif
