/* Scene context: validation and normalisation of the LLM's JSON (spec pipeline-apis.md E.3),
 * fallbacks (E.5) and the mapping to inpainting prompts (E.4). Pure functions, no I/O. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx_llm.h"

#define STORY_MAX_BYTES 2000
#define DESCRIPTION_MAX_BYTES 300
#define TAG_MAX_CHARS 60

void cx_tags_free(char **tags, int n) {
  for (int i = 0; i < n; i++) free(tags[i]);
  free(tags);
}

static void utf8_truncate(char *s, size_t max) {
  size_t n = strlen(s);
  if (n <= max) return;
  while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80) max--;
  s[max] = 0;
}

static int is_strip_lead(const char *p, size_t *skip) {
  static const char *bullets[] = {"\xE2\x80\xA2", "\xE2\x80\x93", "\xE2\x80\x94", "\xE2\x80\x9C", "\xE2\x80\x9D",
                                  "\xE2\x80\x98", "\xE2\x80\x99"};
  if (strchr(" \"'`*-#>", *p) && *p) {
    *skip = 1;
    return 1;
  }
  for (size_t i = 0; i < sizeof bullets / sizeof bullets[0]; i++)
    if (!strncmp(p, bullets[i], 3)) {
      *skip = 3;
      return 1;
    }
  return 0;
}

/* Normalises one comma-free piece in place (E.3.4); returns its new length. */
static size_t normalise_piece(char *s) {
  /* newlines/tabs to spaces; drop A1111 syntax characters */
  size_t o = 0;
  for (size_t i = 0; s[i]; i++) {
    char c = s[i];
    if (c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f') c = ' ';
    if (strchr("()[]{}<>:\\", c)) continue;
    if ((unsigned char)c < 32) continue;
    s[o++] = c;
  }
  s[o] = 0;
  /* drop the A1111 keywords AND / BREAK as whole words, collapse spaces */
  char *words = strdup(s);
  if (!words) return 0;
  o = 0;
  for (char *save = NULL, *w = strtok_r(words, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
    if (!strcmp(w, "AND") || !strcmp(w, "BREAK")) continue;
    if (o) s[o++] = ' ';
    size_t wl = strlen(w);
    memcpy(s + o, w, wl);
    o += wl;
  }
  s[o] = 0;
  free(words);
  /* strip surrounding quotes, backticks, bullets, numbering and trailing periods */
  for (int changed = 1; changed;) {
    changed = 0;
    size_t skip;
    if (s[0] && is_strip_lead(s, &skip)) {
      memmove(s, s + skip, strlen(s + skip) + 1);
      changed = 1;
    } else if (isdigit((unsigned char)s[0])) {
      size_t d = 0;
      while (isdigit((unsigned char)s[d])) d++;
      if (s[d] == '.' && (s[d + 1] == ' ' || !s[d + 1])) {
        memmove(s, s + d + 1, strlen(s + d + 1) + 1);
        changed = 1;
      }
    }
    size_t n = strlen(s);
    while (n && strchr(" \"'`.*", s[n - 1])) s[--n] = 0, changed = 1;
    while (n >= 3 && (!strncmp(s + n - 3, "\xE2\x80\x9D", 3) || !strncmp(s + n - 3, "\xE2\x80\x99", 3)))
      s[n -= 3] = 0, changed = 1;
  }
  return strlen(s);
}

static int tags_push(char ***tags, int *n, int max, const char *t) {
  if (*n >= max) return 0;
  for (int i = 0; i < *n; i++)
    if (!strcasecmp((*tags)[i], t)) return 0;
  char **nt = realloc(*tags, sizeof(char *) * (size_t)(*n + 1));
  if (!nt) return -1;
  *tags = nt;
  if (!(nt[*n] = strdup(t))) return -1;
  (*n)++;
  return 0;
}

/* Appends the normalised tags of a comma-separated text. */
static int tags_add_text(char ***tags, int *n, int max, const char *text) {
  char *copy = strdup(text ? text : "");
  if (!copy) return -1;
  int rc = 0;
  char *p = copy;
  for (;;) {
    char *comma = strchr(p, ',');
    if (comma) *comma = 0;
    size_t len = normalise_piece(p);
    if (len > 0 && len <= TAG_MAX_CHARS && tags_push(tags, n, max, p)) rc = -1;
    if (!comma || rc) break;
    p = comma + 1;
  }
  free(copy);
  return rc;
}

int cx_tags_normalise(const char *text, int max_tags, char ***tags, int *ntags) {
  *tags = NULL;
  *ntags = 0;
  return tags_add_text(tags, ntags, max_tags, text);
}

static char *tags_join(char **tags, int n) {
  size_t len = 1;
  for (int i = 0; i < n; i++) len += strlen(tags[i]) + 2;
  char *s = malloc(len);
  if (!s) return NULL;
  size_t o = 0;
  for (int i = 0; i < n; i++) {
    if (i) s[o++] = ',', s[o++] = ' ';
    size_t l = strlen(tags[i]);
    memcpy(s + o, tags[i], l);
    o += l;
  }
  s[o] = 0;
  return s;
}

void cx_scene_free(cx_scene *s) {
  if (!s) return;
  free(s->story), free(s->global_prompt), free(s->global_negative);
  for (int i = 0; i < s->nobjects; i++) {
    free(s->objects[i].description);
    cx_tags_free(s->objects[i].tags, s->objects[i].ntags);
    cx_tags_free(s->objects[i].negative_tags, s->objects[i].nnegative);
  }
  free(s->objects);
  memset(s, 0, sizeof *s);
}

static void label_key(const char *in, char *out, size_t n) {
  size_t o = 0;
  for (; *in && o + 1 < n; in++)
    if (isalnum((unsigned char)*in)) out[o++] = (char)tolower((unsigned char)*in);
  out[o] = 0;
}

static int scene_alloc(const cx_scene_request *req, cx_scene *out, cx_err *e) {
  memset(out, 0, sizeof *out);
  out->nobjects = req->nobjects;
  out->objects = cx_calloc((size_t)(req->nobjects ? req->nobjects : 1), sizeof *out->objects, e, "scene objects");
  if (!out->objects) return -1;
  for (int i = 0; i < req->nobjects; i++) {
    out->objects[i].id = req->objects[i].id;
    snprintf(out->objects[i].label, sizeof out->objects[i].label, "%s", req->objects[i].label);
  }
  return 0;
}

/* Fallback tags of one object: the global prompt's tags if any, else the original prompt's. */
static int object_fallback(cx_scene_object *o, const char *global_prompt, const char *original, int max_tags) {
  cx_tags_free(o->tags, o->ntags);
  o->tags = NULL, o->ntags = 0;
  if (global_prompt && tags_add_text(&o->tags, &o->ntags, max_tags, global_prompt)) return -1;
  if (!o->ntags && tags_add_text(&o->tags, &o->ntags, max_tags, original)) return -1;
  o->fallback = 1;
  return 0;
}

int cx_scene_fallback(const cx_scene_request *req, int max_tags, cx_scene *out, cx_err *e) {
  if (scene_alloc(req, out, e)) return -1;
  out->story = strdup("");
  out->global_prompt = strdup(req->original_prompt ? req->original_prompt : "");
  out->degraded = 1;
  if (!out->story || !out->global_prompt) return cx_fail(e, "out of memory");
  for (int i = 0; i < out->nobjects; i++)
    if (object_fallback(&out->objects[i], NULL, req->original_prompt, max_tags)) return cx_fail(e, "out of memory");
  return 0;
}

/* Parses content as JSON; on failure strips code fences, then takes the outermost {...}. */
static cJSON *parse_tolerant(const char *content) {
  cJSON *j = cJSON_Parse(content);
  if (j) return j;
  const char *p = content;
  while (isspace((unsigned char)*p)) p++;
  char *buf = strdup(p);
  if (!buf) return NULL;
  if (!strncmp(buf, "```", 3)) {
    char *nl = strchr(buf, '\n');
    char *body = nl ? nl + 1 : buf + 3;
    char *end = strstr(body, "```");
    if (end) *end = 0;
    j = cJSON_Parse(body);
  }
  if (!j) {
    char *a = strchr(buf, '{'), *b = strrchr(buf, '}');
    if (a && b && b > a) {
      b[1] = 0;
      j = cJSON_Parse(a);
    }
  }
  free(buf);
  return j;
}

static int add_tags_json(const cJSON *v, char ***tags, int *n, int max) {
  if (cJSON_IsString(v)) return tags_add_text(tags, n, max, v->valuestring);
  const cJSON *it;
  cJSON_ArrayForEach(it, v) {
    if (cJSON_IsString(it) && tags_add_text(tags, n, max, it->valuestring)) return -1;
  }
  return 0;
}

static void note(cJSON *notes, const char *fmt, const char *a, int id, const char *why) {
  if (!notes) return;
  char buf[512];
  snprintf(buf, sizeof buf, fmt, a, id, why);
  cJSON_AddItemToArray(notes, cJSON_CreateString(buf));
}

int cx_scene_validate(const char *content, const cx_scene_request *req, int max_tags, cx_scene *out, cJSON *notes,
                      cx_err *e) {
  memset(out, 0, sizeof *out);
  if (!content || !*content) return cx_fail(e, "the reply is empty");
  cJSON *j = parse_tolerant(content);
  if (!j) return cx_fail(e, "the reply is not JSON (nor does it contain a JSON object)");
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return cx_fail(e, "the reply is JSON but not an object");
  }
  const cJSON *story = cJSON_GetObjectItemCaseSensitive(j, "story");
  const cJSON *gp = cJSON_GetObjectItemCaseSensitive(j, "global_prompt");
  const cJSON *gn = cJSON_GetObjectItemCaseSensitive(j, "global_negative_prompt");
  const cJSON *objs = cJSON_GetObjectItemCaseSensitive(j, "objects");
  if (!cJSON_IsString(story) || !cJSON_IsString(gp)) {
    cJSON_Delete(j);
    return cx_fail(e, "the reply lacks the string fields \"story\" and \"global_prompt\"");
  }
  if (!cJSON_IsArray(objs)) {
    cJSON_Delete(j);
    return cx_fail(e, "the reply has no \"objects\" array");
  }
  if (scene_alloc(req, out, e)) {
    cJSON_Delete(j);
    return -1;
  }
  out->story = strdup(story->valuestring);
  {
    char **t = NULL;
    int n = 0;
    tags_add_text(&t, &n, 1000, gp->valuestring);
    out->global_prompt = tags_join(t, n);
    cx_tags_free(t, n);
    if (cJSON_IsString(gn)) {
      t = NULL, n = 0;
      tags_add_text(&t, &n, 1000, gn->valuestring);
      out->global_negative = tags_join(t, n);
      cx_tags_free(t, n);
    }
  }
  if (!out->story || !out->global_prompt) {
    cJSON_Delete(j);
    cx_scene_free(out);
    return cx_fail(e, "out of memory");
  }
  utf8_truncate(out->story, STORY_MAX_BYTES);

  int *matched = calloc((size_t)(req->nobjects ? req->nobjects : 1), sizeof(int));
  int valid = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, objs) {
    if (!cJSON_IsObject(it)) continue;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(it, "label");
    int k = -1;
    if (cJSON_IsNumber(id))
      for (int i = 0; i < req->nobjects; i++)
        if ((double)req->objects[i].id == id->valuedouble) k = i;
    if (k < 0 && cJSON_IsString(label)) {
      char want[64], have[64];
      label_key(label->valuestring, want, sizeof want);
      for (int i = 0; i < req->nobjects && k < 0; i++) {
        label_key(req->objects[i].label, have, sizeof have);
        if (want[0] && !strcmp(want, have) && !matched[i]) k = i;
      }
    }
    if (k < 0 || matched[k]) continue; /* unknown extra or duplicate: first one wins */
    cx_scene_object *o = &out->objects[k];
    if (add_tags_json(cJSON_GetObjectItemCaseSensitive(it, "tags"), &o->tags, &o->ntags, max_tags) ||
        add_tags_json(cJSON_GetObjectItemCaseSensitive(it, "negative_tags"), &o->negative_tags, &o->nnegative,
                      max_tags)) {
      free(matched);
      cJSON_Delete(j);
      cx_scene_free(out);
      return cx_fail(e, "out of memory");
    }
    if (!o->ntags) { /* an entry without usable tags is not valid: keep it unmatched */
      cx_tags_free(o->negative_tags, o->nnegative);
      o->negative_tags = NULL, o->nnegative = 0;
      continue;
    }
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(it, "description");
    if (cJSON_IsString(d)) {
      o->description = strdup(d->valuestring);
      if (o->description) utf8_truncate(o->description, DESCRIPTION_MAX_BYTES);
    }
    matched[k] = 1;
    valid++;
  }
  cJSON_Delete(j);
  if (!valid && req->nobjects > 0) {
    free(matched);
    cx_scene_free(out);
    return cx_fail(e, "the reply has no valid entry for any of the %d objects", req->nobjects);
  }
  for (int i = 0; i < req->nobjects; i++) {
    if (matched[i]) continue;
    if (object_fallback(&out->objects[i], out->global_prompt, req->original_prompt, max_tags)) {
      free(matched);
      cx_scene_free(out);
      return cx_fail(e, "out of memory");
    }
    note(notes, "object '%s' (id %d): %s", out->objects[i].label, out->objects[i].id,
         "no valid entry in the LLM reply; using its label plus the global prompt's tags");
  }
  free(matched);
  return 0;
}

cJSON *cx_scene_to_json(const cx_scene *s) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "story", s->story ? s->story : "");
  cJSON_AddStringToObject(j, "global_prompt", s->global_prompt ? s->global_prompt : "");
  if (s->global_negative) cJSON_AddStringToObject(j, "global_negative_prompt", s->global_negative);
  else cJSON_AddNullToObject(j, "global_negative_prompt");
  cJSON *arr = cJSON_AddArrayToObject(j, "objects");
  for (int i = 0; i < s->nobjects; i++) {
    const cx_scene_object *o = &s->objects[i];
    cJSON *oj = cJSON_CreateObject();
    cJSON_AddNumberToObject(oj, "id", o->id);
    cJSON_AddStringToObject(oj, "label", o->label);
    cJSON_AddStringToObject(oj, "description", o->description ? o->description : "");
    cJSON_AddItemToObject(oj, "tags", cJSON_CreateStringArray((const char *const *)o->tags, o->ntags));
    cJSON_AddItemToObject(oj, "negative_tags",
                          cJSON_CreateStringArray((const char *const *)o->negative_tags, o->nnegative));
    cJSON_AddBoolToObject(oj, "fallback", o->fallback);
    cJSON_AddItemToArray(arr, oj);
  }
  cJSON_AddBoolToObject(j, "degraded", s->degraded);
  return j;
}

static char *jstrdup(const cJSON *v) { return cJSON_IsString(v) ? strdup(v->valuestring) : NULL; }

int cx_scene_from_json(const cJSON *j, cx_scene *out, cx_err *e) {
  memset(out, 0, sizeof *out);
  const cJSON *objs = cJSON_GetObjectItemCaseSensitive(j, "objects");
  if (!cJSON_IsObject(j) || !cJSON_IsArray(objs)) return cx_fail(e, "stored scene is malformed");
  out->story = jstrdup(cJSON_GetObjectItemCaseSensitive(j, "story"));
  out->global_prompt = jstrdup(cJSON_GetObjectItemCaseSensitive(j, "global_prompt"));
  out->global_negative = jstrdup(cJSON_GetObjectItemCaseSensitive(j, "global_negative_prompt"));
  out->degraded = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "degraded"));
  out->nobjects = cJSON_GetArraySize(objs);
  out->objects = cx_calloc((size_t)(out->nobjects ? out->nobjects : 1), sizeof *out->objects, e, "scene");
  if (!out->objects) return -1;
  int i = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, objs) {
    cx_scene_object *o = &out->objects[i++];
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(it, "label");
    o->id = cJSON_IsNumber(id) ? (int)id->valuedouble : 0;
    if (cJSON_IsString(lb)) snprintf(o->label, sizeof o->label, "%s", lb->valuestring);
    o->description = jstrdup(cJSON_GetObjectItemCaseSensitive(it, "description"));
    o->fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "fallback"));
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(it, "tags")) if (cJSON_IsString(t))
        tags_push(&o->tags, &o->ntags, 1000, t->valuestring);
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(it, "negative_tags")) if (cJSON_IsString(t))
        tags_push(&o->negative_tags, &o->nnegative, 1000, t->valuestring);
  }
  return 0;
}

char *cx_scene_object_prompt(const cx_scene *s, int k, const char *style_tags, int global_tags) {
  const cx_scene_object *o = &s->objects[k];
  char **t = NULL;
  int n = 0;
  tags_add_text(&t, &n, 1000, o->label);
  for (int i = 0; i < o->ntags; i++) tags_push(&t, &n, 1000, o->tags[i]);
  if (style_tags) tags_add_text(&t, &n, 1000, style_tags);
  if (global_tags > 0 && s->global_prompt && !o->fallback) {
    char **g = NULL;
    int gn = 0;
    tags_add_text(&g, &gn, global_tags, s->global_prompt);
    for (int i = 0; i < gn; i++) tags_push(&t, &n, 1000, g[i]);
    cx_tags_free(g, gn);
  }
  char *r = tags_join(t, n);
  cx_tags_free(t, n);
  return r;
}

char *cx_scene_object_negative(const cx_scene *s, int k, const char *global_negative) {
  const cx_scene_object *o = &s->objects[k];
  char **t = NULL;
  int n = 0;
  for (int i = 0; i < o->nnegative; i++) tags_push(&t, &n, 1000, o->negative_tags[i]);
  char *joined = tags_join(t, n);
  cx_tags_free(t, n);
  if (!joined || !global_negative || !global_negative[0]) return joined;
  /* the user's negative prompt is passed through verbatim: it may use A1111 syntax on purpose */
  size_t len = strlen(joined) + strlen(global_negative) + 3;
  char *r = malloc(len);
  if (r) snprintf(r, len, "%s%s%s", joined, joined[0] ? ", " : "", global_negative);
  free(joined);
  return r;
}
