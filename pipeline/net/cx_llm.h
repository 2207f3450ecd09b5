/* Client for OpenAI Chat Completions and compatible servers (spec pipeline-apis.md Part C),
 * producing the per-object scene context of Part E: the scene_context JSON schema sent as
 * response_format (falling back to json_object, then plain text as the server allows),
 * client-side validation and normalisation (E.3) and fallbacks (E.5).
 *
 * The API key is read from the environment (OPENAI_API_KEY or a configured name) and only
 * ever placed in the Authorization header; records and messages never contain it. */
#ifndef CX_LLM_H
#define CX_LLM_H

#include <cjson/cJSON.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "cx_error.h"

typedef struct cx_llm_settings {
  char url[512];            /* base URL including the version prefix, e.g. https://api.openai.com/v1 */
  char model[128];
  char api_key_env[64];     /* environment variable holding the key; default OPENAI_API_KEY */
  double temperature;       /* 0.7 as the original; < 0: not sent */
  int max_tokens;           /* 0: not sent */
  char token_field[32];     /* "max_completion_tokens" (OpenAI) or "max_tokens" (Ollama, older servers) */
  int64_t seed;             /* < 0: not sent */
  char response_format[16]; /* "auto" (json_schema -> json_object -> text), "json_schema", "json_object", "text" */
  int vision;               /* send the image as an image_url data URL part */
  char image_detail[8];     /* "low" */
  int max_content_retries;  /* further requests after invalid JSON / validation / length; 2 */
  int max_tags;             /* 10 */
  double connect_timeout_s, timeout_s, backoff_base_s, retry_after_cap_s;
  int max_retries;
} cx_llm_settings;

void cx_llm_settings_default(cx_llm_settings *s);
int cx_llm_settings_set(cx_llm_settings *s, const char *key, const cJSON *value, cx_err *e);

typedef struct cx_scene_object_in {
  int id;
  char label[64];
  double area_fraction;
  int bbox[4]; /* x, y, w, h in output pixels */
} cx_scene_object_in;

typedef struct cx_scene_request {
  const char *original_prompt;
  int width, height;
  int nobjects;
  const cx_scene_object_in *objects;
  const uint8_t *image_png; /* for vision mode; may be NULL */
  size_t image_len;
} cx_scene_request;

typedef struct cx_scene_object {
  int id;
  char label[64];
  char *description;
  char **tags;
  int ntags;
  char **negative_tags;
  int nnegative;
  int fallback; /* 1: the LLM gave no valid entry; tags come from E.5 */
} cx_scene_object;

typedef struct cx_scene {
  char *story, *global_prompt, *global_negative; /* global_negative may be NULL */
  int nobjects;
  cx_scene_object *objects; /* one per requested object, in request order */
  int degraded;             /* the whole LLM step failed; every object uses the fallback */
} cx_scene;

void cx_scene_free(cx_scene *s);
/* The validated scene as JSON (story, global_prompt, global_negative_prompt, objects[]). */
cJSON *cx_scene_to_json(const cx_scene *s);
int cx_scene_from_json(const cJSON *j, cx_scene *out, cx_err *e); /* inverse, for --resume */

/* E.3: parse `content` (fences and surrounding prose tolerated), validate and normalise
 * against the request. `notes` (JSON array, may be NULL) receives one string per object
 * that fell back. Returns -1 (content failure) when nothing usable came back. */
int cx_scene_validate(const char *content, const cx_scene_request *req, int max_tags, cx_scene *out,
                      cJSON *notes, cx_err *e);
/* E.5: whole-step fallback, every object = label + original prompt tags. */
int cx_scene_fallback(const cx_scene_request *req, int max_tags, cx_scene *out, cx_err *e);
/* E.3.4 tag normalisation of a comma-separated text: malloc'd array of malloc'd tags. */
int cx_tags_normalise(const char *text, int max_tags, char ***tags, int *ntags);
void cx_tags_free(char **tags, int n);

/* E.4: "label, tags..., style tags, first `global_tags` tags of global_prompt" (malloc'd). */
char *cx_scene_object_prompt(const cx_scene *s, int k, const char *style_tags, int global_tags);
/* E.4: "negative_tags..., global negative" (malloc'd). */
char *cx_scene_object_negative(const cx_scene *s, int k, const char *global_negative);

typedef struct cx_llm {
  cx_llm_settings s;
  char api_key[512];   /* from the environment; never printed */
  int rf_level;        /* current response_format: 0 json_schema, 1 json_object, 2 text */
  cJSON *log;          /* request records (not owned) */
  volatile sig_atomic_t *cancel;
} cx_llm;

typedef struct cx_llm_result {
  cx_scene scene;
  cJSON *exchanges;  /* per request: response_format, status, finish_reason, raw reply, error */
  cJSON *fallbacks;  /* strings: what fell back and why */
  char *raw_reply;   /* last reply content (may be NULL) */
} cx_llm_result;

void cx_llm_result_free(cx_llm_result *r);

/* Reads the key from the environment. Fails when the URL is OpenAI's and no key is set. */
int cx_llm_init(cx_llm *l, const cx_llm_settings *s, cJSON *log, volatile sig_atomic_t *cancel, cx_err *e);
/* GET <base>/models: fails at once when the server is not running or refuses the key. */
int cx_llm_preflight(cx_llm *l, cx_err *e);
/* Asks for the scene context. Returns -1 only for configuration errors (key, model, URL) and
 * Ctrl-C; every other failure ends in the E.5 fallback with result->scene.degraded set. */
int cx_llm_scene(cx_llm *l, const cx_scene_request *req, cx_llm_result *result, cx_err *e);

#endif
