/* Request records for run.json; see cx_record.h. */
#include "cx_record.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static double record_epoch = -1;

double cx_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cx_record_set_epoch(double t0) { record_epoch = t0; }

static int looks_base64(const char *s) {
  size_t n = 0;
  for (const char *p = s; *p; p++, n++) {
    char c = *p;
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
          c == '/' || c == '=' || c == '\n' || c == '\r'))
      return 0;
  }
  return n >= 200;
}

static void strip_in_place(cJSON *j) {
  for (cJSON *c = j ? j->child : NULL; c; c = c->next) {
    if (cJSON_IsString(c) && c->valuestring) {
      const char *s = c->valuestring;
      int data_url = !strncmp(s, "data:", 5) && strstr(s, ";base64,");
      if (data_url || looks_base64(s)) {
        char ph[96];
        snprintf(ph, sizeof ph, "<%s %zu chars>", data_url ? "data URL" : "base64", strlen(s));
        cJSON_SetValuestring(c, ph);
      }
    } else if (cJSON_IsArray(c) || cJSON_IsObject(c)) {
      strip_in_place(c);
    }
  }
}

cJSON *cx_record_strip_base64(const cJSON *body) {
  if (!body) return NULL;
  cJSON *copy = cJSON_Duplicate(body, 1);
  if (copy) strip_in_place(copy);
  return copy;
}

void cx_record_request(cJSON *log, const char *service, const char *method, const char *url,
                       const cJSON *body, const cx_http_response *r, const char *error, double t_start) {
  if (!log) return;
  cJSON *rec = cJSON_CreateObject();
  if (!rec) return;
  char red[1024];
  cx_url_redact(url, red, sizeof red);
  cJSON_AddStringToObject(rec, "service", service);
  cJSON_AddStringToObject(rec, "method", method);
  cJSON_AddStringToObject(rec, "url", red);
  if (body) cJSON_AddItemToObject(rec, "body", cx_record_strip_base64(body));
  if (r) {
    cJSON_AddNumberToObject(rec, "status", (double)r->status);
    cJSON_AddNumberToObject(rec, "attempts", r->attempts);
    if (r->nretry_statuses) {
      cJSON *a = cJSON_AddArrayToObject(rec, "retried_after");
      for (int i = 0; i < r->nretry_statuses; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(r->retry_statuses[i]));
    }
    if (r->request_id[0]) cJSON_AddStringToObject(rec, "request_id", r->request_id);
  }
  double t = cx_now_s();
  if (record_epoch >= 0) cJSON_AddNumberToObject(rec, "t_s", (double)(long)((t_start - record_epoch) * 1000) / 1000);
  cJSON_AddNumberToObject(rec, "elapsed_s", (double)(long)((t - t_start) * 1000) / 1000);
  if (error) cJSON_AddStringToObject(rec, "error", error);
  cJSON_AddItemToArray(log, rec);
}
