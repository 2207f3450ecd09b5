/* Config file loading; see cx_settings.h. */
#include "cx_settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cJSON *cx_json_load_file(const char *path, cx_err *e) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    cx_fail(e, "cannot open %s", path);
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (n < 0 || n > (64L << 20)) {
    fclose(f);
    cx_fail(e, "%s is not a readable file of at most 64 MiB", path);
    return NULL;
  }
  char *buf = malloc((size_t)n + 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    free(buf);
    cx_fail(e, "cannot read %s", path);
    return NULL;
  }
  fclose(f);
  buf[n] = 0;
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithOpts(buf, &end, 0);
  if (!j) {
    long off = end ? (long)(end - buf) : 0;
    int line = 1;
    for (long i = 0; i < off && i < n; i++) line += buf[i] == '\n';
    cx_fail(e, "%s is not valid JSON (near line %d, byte %ld)", path, line, off);
  }
  free(buf);
  return j;
}

int cx_settings_load(const char *path, cx_sd_settings *sd, cx_llm_settings *llm, cJSON **doc, cx_err *e) {
  *doc = NULL;
  cJSON *j = cx_json_load_file(path, e);
  if (!j) return -1;
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return cx_fail(e, "%s: the config must be a JSON object", path);
  }
  const cJSON *sec;
  cJSON_ArrayForEach(sec, j) {
    const char *k = sec->string;
    if (strcmp(k, "sd") && strcmp(k, "llm") && strcmp(k, "segmentation") && strcmp(k, "run")) {
      cx_fail(e, "%s: unknown section \"%s\" (expected sd, llm, segmentation, run)", path, k);
      cJSON_Delete(j);
      return -1;
    }
    if (!cJSON_IsObject(sec)) {
      cx_fail(e, "%s: section \"%s\" must be an object", path, k);
      cJSON_Delete(j);
      return -1;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, sec) {
      int rc = 0;
      if (!strcmp(k, "sd")) rc = cx_sd_settings_set(sd, it->string, it, e);
      else if (!strcmp(k, "llm")) rc = cx_llm_settings_set(llm, it->string, it, e);
      if (rc) {
        cx_failctx(e, "%s", path);
        cJSON_Delete(j);
        return -1;
      }
    }
  }
  *doc = j;
  return 0;
}

int cx_json_to_setting_text(const cJSON *v, char *out, size_t n) {
  if (cJSON_IsNumber(v)) {
    snprintf(out, n, "%.17g", v->valuedouble);
  } else if (cJSON_IsString(v)) {
    snprintf(out, n, "%s", v->valuestring);
  } else if (cJSON_IsBool(v)) {
    snprintf(out, n, "%s", cJSON_IsTrue(v) ? "True" : "False");
  } else if (cJSON_IsArray(v)) {
    size_t o = (size_t)snprintf(out, n, "(");
    const cJSON *it;
    int first = 1;
    cJSON_ArrayForEach(it, v) {
      if (!cJSON_IsNumber(it) || o + 32 >= n) return -1;
      o += (size_t)snprintf(out + o, n - o, "%s%.17g", first ? "" : ", ", it->valuedouble);
      first = 0;
    }
    snprintf(out + o, n - o, ")");
  } else {
    return -1;
  }
  return 0;
}
