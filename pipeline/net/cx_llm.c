/* OpenAI-compatible chat client for the scene context; see cx_llm.h and spec Part C / E. */
#include "cx_llm.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx_base64.h"
#include "cx_http.h"
#include "cx_record.h"

#define LLM_START_HINT \
  "start the server (llama-server, ollama serve, vllm serve, LM Studio) or point --llm-url at a running one"

void cx_llm_settings_default(cx_llm_settings *s) {
  memset(s, 0, sizeof *s);
  snprintf(s->url, sizeof s->url, "https://api.openai.com/v1");
  snprintf(s->model, sizeof s->model, "gpt-4o");
  snprintf(s->api_key_env, sizeof s->api_key_env, "OPENAI_API_KEY");
  s->temperature = 0.7;
  snprintf(s->token_field, sizeof s->token_field, "max_completion_tokens");
  s->seed = -1;
  snprintf(s->response_format, sizeof s->response_format, "auto");
  snprintf(s->image_detail, sizeof s->image_detail, "low");
  s->max_content_retries = 2;
  s->max_tags = 10;
  s->connect_timeout_s = 5, s->timeout_s = 600, s->backoff_base_s = 0.5, s->retry_after_cap_s = 60;
  s->max_retries = 3;
}

int cx_llm_settings_set(cx_llm_settings *s, const char *k, const cJSON *v, cx_err *e) {
#define STR(name)                                                                                       \
  if (!strcmp(k, #name)) {                                                                              \
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= sizeof s->name)                                  \
      return cx_fail(e, "llm.%s must be a string of at most %zu characters", k, sizeof s->name - 1);     \
    snprintf(s->name, sizeof s->name, "%s", v->valuestring);                                             \
    return 0;                                                                                           \
  }
#define NUM(name, lo, hi)                                                                               \
  if (!strcmp(k, #name)) {                                                                              \
    if (!cJSON_IsNumber(v) || v->valuedouble < (lo) || v->valuedouble > (hi))                            \
      return cx_fail(e, "llm.%s must be a number in [%g, %g]", k, (double)(lo), (double)(hi));           \
    s->name = v->valuedouble;                                                                            \
    return 0;                                                                                           \
  }
#define INT(name, lo, hi)                                                                               \
  if (!strcmp(k, #name)) {                                                                              \
    if (cJSON_IsBool(v)) { s->name = cJSON_IsTrue(v); return 0; }                                       \
    if (!cJSON_IsNumber(v) || v->valuedouble < (lo) || v->valuedouble > (hi))                            \
      return cx_fail(e, "llm.%s must be an integer in [%g, %g]", k, (double)(lo), (double)(hi));         \
    s->name = (int)v->valuedouble;                                                                       \
    return 0;                                                                                           \
  }
  STR(url) STR(model) STR(api_key_env) STR(token_field) STR(response_format) STR(image_detail)
  NUM(temperature, -1, 2) INT(max_tokens, 0, 1000000) INT(vision, 0, 1) INT(max_content_retries, 0, 10)
  INT(max_tags, 1, 100) NUM(connect_timeout_s, 0.1, 600) NUM(timeout_s, 0.1, 86400) NUM(backoff_base_s, 0, 60)
  NUM(retry_after_cap_s, 0, 3600) INT(max_retries, 0, 20)
#undef STR
#undef NUM
#undef INT
  if (!strcmp(k, "seed")) {
    if (!cJSON_IsNumber(v)) return cx_fail(e, "llm.seed must be an integer (-1: not sent)");
    s->seed = (int64_t)v->valuedouble;
    return 0;
  }
  if (!strcmp(k, "api_key")) /* keys in files end up in backups and repositories */
    return cx_fail(e, "llm.api_key is not read from the config file: put the key in the environment "
                      "(OPENAI_API_KEY, or a variable named by llm.api_key_env)");
  return cx_fail(e, "unknown LLM setting \"%s\" in the config file", k);
}

void cx_llm_result_free(cx_llm_result *r) {
  if (!r) return;
  cx_scene_free(&r->scene);
  cJSON_Delete(r->exchanges);
  cJSON_Delete(r->fallbacks);
  free(r->raw_reply);
  memset(r, 0, sizeof *r);
}

static void origin_of(const cx_llm *l, char *out, size_t n) { cx_url_redact(l->s.url, out, n); }

static int is_openai(const char *url) { return strstr(url, "://api.openai.com") != NULL; }

int cx_llm_init(cx_llm *l, const cx_llm_settings *s, cJSON *log, volatile sig_atomic_t *cancel, cx_err *e) {
  memset(l, 0, sizeof *l);
  l->s = *s;
  size_t n = strlen(l->s.url);
  while (n && l->s.url[n - 1] == '/') l->s.url[--n] = 0;
  if (strncmp(l->s.url, "http://", 7) && strncmp(l->s.url, "https://", 8))
    return cx_fail(e, "LLM URL \"%s\" must start with http:// or https://", l->s.url);
  if (strcmp(l->s.token_field, "max_completion_tokens") && strcmp(l->s.token_field, "max_tokens"))
    return cx_fail(e, "llm.token_field must be \"max_completion_tokens\" or \"max_tokens\"");
  const char *rf = l->s.response_format;
  if (!strcmp(rf, "auto") || !strcmp(rf, "json_schema")) l->rf_level = 0;
  else if (!strcmp(rf, "json_object")) l->rf_level = 1;
  else if (!strcmp(rf, "text")) l->rf_level = 2;
  else return cx_fail(e, "llm.response_format must be auto, json_schema, json_object or text");
  const char *key = getenv(l->s.api_key_env[0] ? l->s.api_key_env : "OPENAI_API_KEY");
  if (key && strlen(key) >= sizeof l->api_key)
    return cx_fail(e, "the API key in $%s is implausibly long", l->s.api_key_env);
  if (key) snprintf(l->api_key, sizeof l->api_key, "%s", key);
  if (!l->api_key[0] && is_openai(l->s.url))
    return cx_fail(e, "no API key: set %s for %s, or pass --llm-url with a local OpenAI-compatible server "
                      "(e.g. http://127.0.0.1:11434/v1 for Ollama)", l->s.api_key_env, l->s.url);
  l->log = log;
  l->cancel = cancel;
  return cx_http_global_init(e);
}

static void llm_opts(cx_llm *l, cx_http_opts *o) {
  cx_http_opts_default(o, "LLM server", LLM_START_HINT);
  o->connect_timeout_s = l->s.connect_timeout_s;
  o->timeout_s = l->s.timeout_s;
  o->max_retries = l->s.max_retries;
  o->backoff_base_s = l->s.backoff_base_s;
  o->retry_after_cap_s = l->s.retry_after_cap_s;
  o->bearer = l->api_key[0] ? l->api_key : NULL;
  o->cancel = l->cancel;
}

static int key_error(cx_llm *l, long status, const char *detail, cx_err *e) {
  char origin[512];
  origin_of(l, origin, sizeof origin);
  if (status == 401 && !l->api_key[0])
    return cx_fail(e, "LLM server at %s needs an API key (401: %s): set %s", origin, detail[0] ? detail : "Unauthorized",
                   l->s.api_key_env);
  if (status == 401)
    return cx_fail(e, "LLM server at %s rejected the API key from $%s (401: %s): set %s to a valid key", origin,
                   l->s.api_key_env, detail[0] ? detail : "Unauthorized", l->s.api_key_env);
  return cx_fail(e, "LLM server at %s refused access (403: %s): the key in $%s lacks permission for this model or "
                    "region", origin, detail[0] ? detail : "Forbidden", l->s.api_key_env);
}

int cx_llm_preflight(cx_llm *l, cx_err *e) {
  char url[1024];
  snprintf(url, sizeof url, "%s/models", l->s.url);
  cx_http_opts o;
  llm_opts(l, &o);
  o.retry_connect = 0;
  o.timeout_s = 30;
  cx_http_response r;
  double t0 = cx_now_s();
  if (cx_http_request(&o, "GET", url, NULL, 0, &r, e)) {
    cx_redact_inplace(e->msg, l->api_key);
    cx_record_request(l->log, "llm", "GET", url, NULL, NULL, e->msg, t0);
    return -1;
  }
  cx_record_request(l->log, "llm", "GET", url, NULL, &r, NULL, t0);
  int rc = 0;
  if (r.status == 401 || r.status == 403) {
    char detail[400];
    cx_http_error_detail(r.body, r.len, detail, sizeof detail);
    cx_redact_inplace(detail, l->api_key);
    rc = key_error(l, r.status, detail, e);
  }
  /* other statuses: /models is optional on some servers; the chat call will tell */
  cx_http_response_free(&r);
  return rc;
}

/* ---- request ----------------------------------------------------------------------- */

static const char *scene_schema =
    "{\"type\":\"object\",\"additionalProperties\":false,"
    "\"required\":[\"story\",\"global_prompt\",\"global_negative_prompt\",\"objects\"],"
    "\"properties\":{"
    "\"story\":{\"type\":\"string\",\"description\":\"One paragraph of at most about 120 words: the scene, mood "
    "and setting that tie the detected objects together.\"},"
    "\"global_prompt\":{\"type\":\"string\",\"description\":\"Refined comma-separated tag prompt for the whole "
    "image that keeps the subject of the original prompt.\"},"
    "\"global_negative_prompt\":{\"type\":[\"string\",\"null\"],\"description\":\"Optional comma-separated "
    "negative tags for the whole image, or null.\"},"
    "\"objects\":{\"type\":\"array\",\"description\":\"Exactly one entry per object of the request, in the same "
    "order.\",\"items\":{\"type\":\"object\",\"additionalProperties\":false,"
    "\"required\":[\"id\",\"label\",\"description\",\"tags\",\"negative_tags\"],\"properties\":{"
    "\"id\":{\"type\":\"integer\",\"description\":\"The object's id exactly as given.\"},"
    "\"label\":{\"type\":\"string\",\"description\":\"The object's label exactly as given.\"},"
    "\"description\":{\"type\":\"string\",\"description\":\"One short sentence (at most about 25 words) on how "
    "this object looks in the story.\"},"
    "\"tags\":{\"type\":\"array\",\"description\":\"1 to 10 short Stable Diffusion tags (1-4 words each) about "
    "this object only; no commas inside a tag; do not repeat the original prompt.\",\"items\":{\"type\":"
    "\"string\"}},"
    "\"negative_tags\":{\"type\":\"array\",\"description\":\"0 to 10 short tags for what to avoid in this "
    "object's region; may be empty.\",\"items\":{\"type\":\"string\"}}}}}}}";

static const char *system_prompt =
    "You help a Stable Diffusion user add context to a generated image. You receive the prompt that generated it "
    "and the objects a segmentation model found in it. First write a short story (one paragraph, at most 120 "
    "words) around the prompt and the objects; new themes and backgrounds are welcome. Then, guided by the "
    "story, write for every object Stable Diffusion tags that describe only that object: 1 to 10 short tags of "
    "1-4 words, no sentences, no commas inside a tag, not repeating the original prompt's tags. Each object's "
    "tags will be used to inpaint that object with more detail. Answer with a single JSON object and nothing "
    "else, following this shape: {\"story\": string, \"global_prompt\": string of comma-separated tags, "
    "\"global_negative_prompt\": string or null, \"objects\": [{\"id\": integer, \"label\": string, "
    "\"description\": string, \"tags\": [string], \"negative_tags\": [string]}]}, with exactly one entry per "
    "object, in the order given, id and label copied exactly.";

static char *user_document(const cx_llm *l, const cx_scene_request *req) {
  cJSON *d = cJSON_CreateObject();
  cJSON_AddStringToObject(d, "original_prompt", req->original_prompt ? req->original_prompt : "");
  int size[2] = {req->width, req->height};
  cJSON_AddItemToObject(d, "image_size", cJSON_CreateIntArray(size, 2));
  cJSON *objs = cJSON_AddArrayToObject(d, "objects");
  for (int i = 0; i < req->nobjects; i++) {
    const cx_scene_object_in *o = &req->objects[i];
    cJSON *oj = cJSON_CreateObject();
    cJSON_AddNumberToObject(oj, "id", o->id);
    cJSON_AddStringToObject(oj, "label", o->label);
    cJSON_AddNumberToObject(oj, "area_fraction", (double)(long)(o->area_fraction * 1000 + 0.5) / 1000);
    cJSON_AddItemToObject(oj, "bbox", cJSON_CreateIntArray(o->bbox, 4));
    cJSON_AddItemToArray(objs, oj);
  }
  cJSON *rules = cJSON_AddObjectToObject(d, "rules");
  cJSON_AddNumberToObject(rules, "max_tags_per_object", l->s.max_tags);
  cJSON_AddNumberToObject(rules, "max_negative_tags_per_object", l->s.max_tags);
  cJSON_AddNumberToObject(rules, "story_max_words", 120);
  char *s = cJSON_PrintUnformatted(d);
  cJSON_Delete(d);
  return s;
}

static cJSON *build_request(cx_llm *l, const cx_scene_request *req, const char *user_doc, int max_tokens,
                            const char *bad_reply, const char *bad_reason) {
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "model", l->s.model);
  cJSON *msgs = cJSON_AddArrayToObject(b, "messages");
  cJSON *sys = cJSON_CreateObject();
  cJSON_AddStringToObject(sys, "role", "system");
  cJSON_AddStringToObject(sys, "content", system_prompt);
  cJSON_AddItemToArray(msgs, sys);
  cJSON *user = cJSON_CreateObject();
  cJSON_AddStringToObject(user, "role", "user");
  if (l->s.vision && req->image_png) {
    cJSON *parts = cJSON_AddArrayToObject(user, "content");
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "type", "text");
    cJSON_AddStringToObject(t, "text", user_doc);
    cJSON_AddItemToArray(parts, t);
    size_t bl;
    char *b64 = cx_b64_encode(req->image_png, req->image_len, &bl);
    char *url = b64 ? malloc(bl + 32) : NULL;
    if (url) {
      snprintf(url, bl + 32, "data:image/png;base64,%s", b64);
      cJSON *ip = cJSON_CreateObject();
      cJSON_AddStringToObject(ip, "type", "image_url");
      cJSON *iu = cJSON_AddObjectToObject(ip, "image_url");
      cJSON_AddStringToObject(iu, "url", url);
      cJSON_AddStringToObject(iu, "detail", l->s.image_detail);
      cJSON_AddItemToArray(parts, ip);
    }
    free(b64), free(url);
  } else {
    cJSON_AddStringToObject(user, "content", user_doc);
  }
  cJSON_AddItemToArray(msgs, user);
  if (bad_reply) { /* content retry after a validation failure: show the model what was wrong */
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "role", "assistant");
    cJSON_AddStringToObject(a, "content", bad_reply);
    cJSON_AddItemToArray(msgs, a);
    char fix[1400];
    snprintf(fix, sizeof fix, "That answer could not be used (%s). Answer again with only the corrected JSON object.",
             bad_reason);
    cJSON *u = cJSON_CreateObject();
    cJSON_AddStringToObject(u, "role", "user");
    cJSON_AddStringToObject(u, "content", fix);
    cJSON_AddItemToArray(msgs, u);
  }
  if (l->s.temperature >= 0) cJSON_AddNumberToObject(b, "temperature", l->s.temperature);
  if (max_tokens > 0) cJSON_AddNumberToObject(b, l->s.token_field, max_tokens);
  if (l->s.seed >= 0) cJSON_AddNumberToObject(b, "seed", (double)l->s.seed);
  if (l->rf_level == 0) {
    cJSON *rf = cJSON_AddObjectToObject(b, "response_format");
    cJSON_AddStringToObject(rf, "type", "json_schema");
    cJSON *js = cJSON_AddObjectToObject(rf, "json_schema");
    cJSON_AddStringToObject(js, "name", "scene_context");
    cJSON_AddBoolToObject(js, "strict", 1);
    cJSON_AddItemToObject(js, "schema", cJSON_Parse(scene_schema));
  } else if (l->rf_level == 1) {
    cJSON *rf = cJSON_AddObjectToObject(b, "response_format");
    cJSON_AddStringToObject(rf, "type", "json_object");
  }
  return b;
}

static const char *rf_name(int level) { return level == 0 ? "json_schema" : level == 1 ? "json_object" : "text"; }

static int mentions_response_format(const char *detail) {
  char low[800];
  size_t i = 0;
  for (; detail[i] && i + 1 < sizeof low; i++) low[i] = (char)tolower((unsigned char)detail[i]);
  low[i] = 0;
  return strstr(low, "response_format") || strstr(low, "json_schema") || strstr(low, "json_object") ||
         strstr(low, "response format") || strstr(low, "schema");
}

static void add_note(cJSON *arr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_note(cJSON *arr, const char *fmt, ...) {
  char buf[2400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  cJSON_AddItemToArray(arr, cJSON_CreateString(buf));
}

int cx_llm_scene(cx_llm *l, const cx_scene_request *req, cx_llm_result *res, cx_err *e) {
  memset(res, 0, sizeof *res);
  res->exchanges = cJSON_CreateArray();
  res->fallbacks = cJSON_CreateArray();
  char *doc = user_document(l, req);
  if (!doc || !res->exchanges || !res->fallbacks) {
    free(doc);
    return cx_fail(e, "out of memory building the LLM request");
  }
  char url[1024], origin[512];
  snprintf(url, sizeof url, "%s/chat/completions", l->s.url);
  origin_of(l, origin, sizeof origin);
  int max_tokens = l->s.max_tokens;
  int content_failures = 0;
  char *bad_reply = NULL;
  char bad_reason[1024] = "";
  char failure[2048] = "";
  int rc = 0;

  for (;;) {
    cJSON *body = build_request(l, req, doc, max_tokens, bad_reply, bad_reason);
    char *text = cJSON_PrintUnformatted(body);
    cx_http_opts o;
    llm_opts(l, &o);
    cx_http_response r;
    double t0 = cx_now_s();
    cJSON *ex = cJSON_CreateObject();
    cJSON_AddStringToObject(ex, "response_format", rf_name(l->rf_level));
    cJSON_AddItemToArray(res->exchanges, ex);
    int hr = text ? cx_http_request(&o, "POST", url, text, strlen(text), &r, e) : cx_fail(e, "out of memory");
    free(text);
    if (hr) {
      cx_redact_inplace(e->msg, l->api_key);
      cx_record_request(l->log, "llm", "POST", url, body, NULL, e->msg, t0);
      cJSON_Delete(body);
      cJSON_AddStringToObject(ex, "error", e->msg);
      if (l->cancel && *l->cancel) {
        rc = -1;
        break;
      }
      snprintf(failure, sizeof failure, "%s", e->msg);
      break;
    }
    cx_record_request(l->log, "llm", "POST", url, body, &r, NULL, t0);
    cJSON_Delete(body);
    cJSON_AddNumberToObject(ex, "status", (double)r.status);
    cJSON_AddNumberToObject(ex, "attempts", r.attempts);
    if (r.status != 200) {
      char detail[800], code[64];
      cx_http_error_detail(r.body, r.len, detail, sizeof detail);
      cx_http_error_code(r.body, r.len, code, sizeof code);
      cx_redact_inplace(detail, l->api_key);
      cJSON_AddStringToObject(ex, "error", detail);
      long st = r.status;
      int attempts = r.attempts;
      cx_http_response_free(&r);
      if ((st == 400 || st == 422) && !strcmp(l->s.response_format, "auto") && l->rf_level < 2 &&
          mentions_response_format(detail)) {
        add_note(res->fallbacks, "server rejected response_format %s (%ld: %s); now using %s", rf_name(l->rf_level),
                 st, detail, rf_name(l->rf_level + 1));
        l->rf_level++;
        continue;
      }
      if (st == 401 || st == 403) {
        rc = key_error(l, st, detail, e);
        break;
      }
      if (st == 404) {
        rc = cx_fail(e, "LLM server at %s answered 404 for /chat/completions (%s): check --llm-url (it includes the "
                        "version prefix, e.g. /v1) and --llm-model \"%s\"", origin, detail[0] ? detail : "Not Found",
                     l->s.model);
        break;
      }
      snprintf(failure, sizeof failure, "LLM server at %s answered %ld %s%s%s%s%s", origin, st, cx_http_reason(st),
               detail[0] ? ": " : "", detail, !strcmp(code, "insufficient_quota") ? " (quota exhausted: check the "
               "account's billing)" : "", attempts > 1 ? " after retries" : "");
      break;
    }
    /* 200: inspect the completion */
    cJSON *j = cJSON_ParseWithLength(r.body, r.len);
    cx_http_response_free(&r);
    const char *why = NULL;
    char whybuf[1024];
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    const cJSON *c0 = cJSON_GetArrayItem(choices, 0);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c0, "message");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    const cJSON *refusal = cJSON_GetObjectItemCaseSensitive(msg, "refusal");
    const cJSON *fin = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
    const char *finish = cJSON_IsString(fin) ? fin->valuestring : "";
    cJSON_AddStringToObject(ex, "finish_reason", finish);
    if (cJSON_IsString(content)) {
      free(res->raw_reply);
      res->raw_reply = strdup(content->valuestring);
      cx_redact_inplace(res->raw_reply, l->api_key);
      cJSON_AddStringToObject(ex, "reply", res->raw_reply ? res->raw_reply : "");
    }
    int terminal = 0;
    if (!j) why = "the answer is not JSON";
    else if (!cJSON_IsArray(choices) || !c0) why = "the answer has no choices";
    else if (cJSON_IsString(refusal) && refusal->valuestring[0]) {
      snprintf(failure, sizeof failure, "the model refused: %s", refusal->valuestring);
      terminal = 1;
    } else if (!strcmp(finish, "content_filter")) {
      snprintf(failure, sizeof failure, "the reply was withheld by the server's content filter");
      terminal = 1;
    } else if (!strcmp(finish, "length")) {
      why = "the reply was cut off at the token limit (finish_reason length)";
      max_tokens = max_tokens > 0 ? max_tokens * 2 : 4096;
    } else if (!cJSON_IsString(content)) {
      why = "the reply has no text content";
    } else {
      cx_scene sc;
      cx_err ve;
      cJSON *notes = cJSON_CreateArray();
      if (cx_scene_validate(content->valuestring, req, l->s.max_tags, &sc, notes, &ve) == 0) {
        res->scene = sc;
        cJSON *n;
        while ((n = cJSON_DetachItemFromArray(notes, 0))) cJSON_AddItemToArray(res->fallbacks, n);
        cJSON_Delete(notes);
        cJSON_Delete(j);
        free(bad_reply);
        free(doc);
        return 0;
      }
      cJSON_Delete(notes);
      snprintf(whybuf, sizeof whybuf, "%s", ve.msg);
      why = whybuf;
      free(bad_reply);
      bad_reply = strdup(content->valuestring);
      snprintf(bad_reason, sizeof bad_reason, "%s", ve.msg);
    }
    cJSON_Delete(j);
    if (terminal) {
      cJSON_AddStringToObject(ex, "error", failure);
      break;
    }
    cJSON_AddStringToObject(ex, "error", why);
    if (++content_failures > l->s.max_content_retries) {
      snprintf(failure, sizeof failure, "no usable reply after %d requests (last: %s)", content_failures, why);
      break;
    }
    add_note(res->fallbacks, "asking again: %s", why);
  }
  free(bad_reply);
  free(doc);
  if (rc) return -1;
  /* E.5: the whole step failed; continue with label + original prompt, marked degraded */
  add_note(res->fallbacks, "LLM step failed, every object uses its label plus the original prompt: %s", failure);
  if (cx_scene_fallback(req, l->s.max_tags, &res->scene, e)) return -1;
  return 0;
}
