/* HTTP requests with timeouts, retries and actionable errors; see cx_http.h.
 * The transfer runs on a curl multi handle so that the caller's tick (SD progress polling,
 * /interrupt on Ctrl-C) runs on this thread while a long generation is pending. */
#include "cx_http.h"

#include <curl/curl.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cx_http_global_init(cx_err *e) {
  static int done;
  if (done) return 0;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return cx_fail(e, "libcurl failed to initialise");
  done = 1;
  return 0;
}

void cx_http_opts_default(cx_http_opts *o, const char *service, const char *start_hint) {
  memset(o, 0, sizeof *o);
  o->service = service;
  o->start_hint = start_hint;
  o->connect_timeout_s = 5;
  o->timeout_s = 600;
  o->max_retries = 3;
  o->max_500_retries = 3;
  o->backoff_base_s = 0.5;
  o->backoff_cap_s = 8;
  o->retry_after_cap_s = 60;
  o->retry_connect = 1;
  o->cancel_abort_level = 1;
}

void cx_http_response_free(cx_http_response *r) {
  if (!r) return;
  free(r->body);
  r->body = NULL;
  r->len = 0;
}

const char *cx_http_reason(long s) {
  switch (s) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
  }
}

void cx_url_redact(const char *url, char *out, size_t n) {
  const char *p = strstr(url, "://");
  const char *host = p ? p + 3 : url;
  const char *slash = strchr(host, '/');
  const char *at = strchr(host, '@');
  if (at && (!slash || at < slash)) {
    snprintf(out, n, "%.*s%s", (int)(host - url), url, at + 1);
  } else {
    snprintf(out, n, "%s", url);
  }
}

/* scheme://host:port of a URL (credentials removed): what a user recognises as "the server". */
static void url_origin(const char *url, char *out, size_t n) {
  char red[1024];
  cx_url_redact(url, red, sizeof red);
  const char *p = strstr(red, "://");
  const char *host = p ? p + 3 : red;
  const char *slash = strchr(host, '/');
  size_t len = slash ? (size_t)(slash - red) : strlen(red);
  snprintf(out, n, "%.*s", (int)len, red);
}

static const char *url_path(const char *url) {
  const char *p = strstr(url, "://");
  const char *host = p ? p + 3 : url;
  const char *slash = strchr(host, '/');
  return slash ? slash : "/";
}

void cx_redact_inplace(char *s, const char *secret) {
  if (!s || !secret) return;
  size_t sl = strlen(secret);
  if (sl < 4) return;
  char *hit;
  while ((hit = strstr(s, secret))) {
    memcpy(hit, "***", 3);
    memmove(hit + 3, hit + sl, strlen(hit + sl) + 1);
  }
}

/* ---- error bodies ------------------------------------------------------------------ */

static void printable_prefix(const char *body, size_t len, char *out, size_t n) {
  size_t o = 0;
  int space = 0;
  for (size_t i = 0; i < len && o + 4 < n && i < 300; i++) {
    unsigned char c = (unsigned char)body[i];
    if (isspace(c)) {
      space = o > 0;
      continue;
    }
    if (space) out[o++] = ' ';
    space = 0;
    out[o++] = (c >= 32 && c < 127) ? (char)c : '?';
  }
  if (len > 300 && o + 4 < n) memcpy(out + o, "...", 3), o += 3;
  out[o] = 0;
}

static int nonempty_string(const cJSON *j) {
  return cJSON_IsString(j) && j->valuestring && j->valuestring[0];
}

void cx_http_error_detail(const char *body, size_t len, char *out, size_t n) {
  out[0] = 0;
  if (!body || !len) return;
  cJSON *j = cJSON_ParseWithLength(body, len);
  if (!j) {
    printable_prefix(body, len, out, n);
    return;
  }
  const cJSON *detail = cJSON_GetObjectItemCaseSensitive(j, "detail");
  const cJSON *error = cJSON_GetObjectItemCaseSensitive(j, "error");
  const cJSON *errors = cJSON_GetObjectItemCaseSensitive(j, "errors");
  const cJSON *message = cJSON_GetObjectItemCaseSensitive(j, "message");
  if (nonempty_string(detail)) {
    snprintf(out, n, "%s", detail->valuestring);
  } else if (cJSON_IsArray(detail) && cJSON_GetArraySize(detail) > 0) {
    /* FastAPI/pydantic validation list: "body.steps: value is not a valid integer; ..." */
    size_t o = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, detail) {
      char loc[256] = "";
      size_t lo = 0;
      const cJSON *l;
      cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(it, "loc")) {
        if (lo && lo + 1 < sizeof loc) loc[lo++] = '.';
        if (cJSON_IsString(l))
          lo += (size_t)snprintf(loc + lo, sizeof loc - lo, "%s", l->valuestring);
        else if (cJSON_IsNumber(l))
          lo += (size_t)snprintf(loc + lo, sizeof loc - lo, "%d", (int)l->valuedouble);
        if (lo >= sizeof loc) lo = sizeof loc - 1;
      }
      const cJSON *msg = cJSON_GetObjectItemCaseSensitive(it, "msg");
      if (o + 8 >= n) break;
      o += (size_t)snprintf(out + o, n - o, "%s%s%s%s", o ? "; " : "", loc, loc[0] ? ": " : "",
                            cJSON_IsString(msg) ? msg->valuestring : "invalid value");
      if (o >= n) break;
    }
  } else if (cJSON_IsObject(error) && nonempty_string(cJSON_GetObjectItemCaseSensitive(error, "message"))) {
    snprintf(out, n, "%s", cJSON_GetObjectItemCaseSensitive(error, "message")->valuestring);
  } else if (nonempty_string(errors)) {
    /* A1111 unhandled exception: "error" holds the class name, "errors" the text. */
    if (nonempty_string(error))
      snprintf(out, n, "%s: %s", error->valuestring, errors->valuestring);
    else
      snprintf(out, n, "%s", errors->valuestring);
  } else if (nonempty_string(message)) {
    if (nonempty_string(error) && strcmp(error->valuestring, message->valuestring))
      snprintf(out, n, "%s: %s", error->valuestring, message->valuestring);
    else
      snprintf(out, n, "%s", message->valuestring);
  } else if (nonempty_string(error)) {
    snprintf(out, n, "%s", error->valuestring);
  } else {
    printable_prefix(body, len, out, n);
  }
  cJSON_Delete(j);
}

void cx_http_error_code(const char *body, size_t len, char *out, size_t n) {
  out[0] = 0;
  if (!body || !len) return;
  cJSON *j = cJSON_ParseWithLength(body, len);
  if (!j) return;
  const cJSON *error = cJSON_GetObjectItemCaseSensitive(j, "error");
  const cJSON *src = cJSON_IsObject(error) ? error : j;
  const cJSON *code = cJSON_GetObjectItemCaseSensitive(src, "code");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(src, "type");
  if (nonempty_string(code))
    snprintf(out, n, "%s", code->valuestring);
  else if (nonempty_string(type))
    snprintf(out, n, "%s", type->valuestring);
  cJSON_Delete(j);
}

/* ---- one attempt --------------------------------------------------------------------- */

typedef struct {
  char *data;
  size_t len, cap;
  int oom;
} growbuf;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
  growbuf *b = ud;
  size_t n = size * nmemb;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + n + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
      b->oom = 1;
      return 0;
    }
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, ptr, n);
  b->len += n;
  b->data[b->len] = 0;
  return n;
}

typedef struct {
  double retry_after_s; /* -1 absent, else seconds */
  int should_retry;     /* -1 absent */
  char content_type[128];
  char request_id[128];
} headers_seen;

static void header_value(const char *line, size_t n, char *out, size_t out_n) {
  const char *colon = memchr(line, ':', n);
  size_t i = colon ? (size_t)(colon - line) + 1 : n;
  while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
  size_t end = n;
  while (end > i && isspace((unsigned char)line[end - 1])) end--;
  size_t len = end - i < out_n - 1 ? end - i : out_n - 1;
  memcpy(out, line + i, len);
  out[len] = 0;
}

static int header_is(const char *line, size_t n, const char *name) {
  size_t k = strlen(name);
  return n > k && line[k] == ':' && !strncasecmp(line, name, k);
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud) {
  headers_seen *h = ud;
  size_t n = size * nmemb;
  char v[256];
  if (n >= 5 && !strncmp(line, "HTTP/", 5)) { /* a new response (after 100-continue/redirect) */
    h->retry_after_s = -1;
    h->should_retry = -1;
  } else if (header_is(line, n, "retry-after-ms")) {
    header_value(line, n, v, sizeof v);
    char *end;
    double ms = strtod(v, &end);
    if (end != v && ms >= 0) h->retry_after_s = ms / 1000.0;
  } else if (header_is(line, n, "retry-after")) {
    header_value(line, n, v, sizeof v);
    char *end;
    double s = strtod(v, &end);
    if (end != v && *end == 0) {
      if (h->retry_after_s < 0) h->retry_after_s = s;
    } else {
      time_t t = curl_getdate(v, NULL);
      if (t > 0 && h->retry_after_s < 0) {
        double d = difftime(t, time(NULL));
        h->retry_after_s = d > 0 ? d : 0;
      }
    }
  } else if (header_is(line, n, "x-should-retry")) {
    header_value(line, n, v, sizeof v);
    h->should_retry = !strcasecmp(v, "true") ? 1 : !strcasecmp(v, "false") ? 0 : -1;
  } else if (header_is(line, n, "content-type")) {
    header_value(line, n, h->content_type, sizeof h->content_type);
  } else if (header_is(line, n, "x-request-id")) {
    header_value(line, n, h->request_id, sizeof h->request_id);
  }
  return n;
}

typedef enum { ATTEMPT_ANSWERED, ATTEMPT_TRANSPORT, ATTEMPT_CANCELLED, ATTEMPT_FATAL } attempt_result;

static int cancelled(const cx_http_opts *o) {
  return o->cancel && *o->cancel >= (o->cancel_abort_level > 0 ? o->cancel_abort_level : 1);
}

static attempt_result attempt(const cx_http_opts *o, const char *method, const char *url,
                              const char *body, size_t body_len, growbuf *buf, headers_seen *h,
                              long *status, CURLcode *cc, int *connected, double *t_total, cx_err *e) {
  CURL *c = curl_easy_init();
  CURLM *m = curl_multi_init();
  struct curl_slist *hdrs = NULL;
  attempt_result res = ATTEMPT_FATAL;
  char auth[2048];
  if (!c || !m) {
    cx_fail(e, "libcurl could not create a transfer (out of memory?)");
    goto done;
  }
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->connect_timeout_s * 1000));
  if (o->timeout_s > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(o->timeout_s * 1000));
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, buf);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "ctxdiff");
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  if (o->userpwd && o->userpwd[0]) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERPWD, o->userpwd);
  }
  if (o->bearer && o->bearer[0]) {
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->bearer);
    hdrs = curl_slist_append(hdrs, auth);
  }
  if (!strcmp(method, "POST")) {
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
  } else {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  }
  hdrs = curl_slist_append(hdrs, "Accept: application/json");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  memset(auth, 0, sizeof auth); /* the key lives on only inside libcurl's own copy */

  curl_multi_add_handle(m, c);
  double t0 = now_s(), last_tick = t0;
  int running = 1;
  while (running) {
    CURLMcode mc = curl_multi_perform(m, &running);
    if (mc != CURLM_OK) {
      cx_fail(e, "libcurl: %s", curl_multi_strerror(mc));
      goto done;
    }
    if (!running) break;
    if (cancelled(o)) {
      res = ATTEMPT_CANCELLED;
      goto done;
    }
    curl_multi_poll(m, NULL, 0, 100, NULL);
    double t = now_s();
    if (o->tick && t - last_tick >= 0.1) {
      o->tick(o->tick_ctx, t - t0);
      last_tick = t;
    }
  }
  int left;
  CURLMsg *msg = curl_multi_info_read(m, &left);
  *cc = msg && msg->msg == CURLMSG_DONE ? msg->data.result : CURLE_OK;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  curl_off_t conn_us = 0;
  curl_easy_getinfo(c, CURLINFO_CONNECT_TIME_T, &conn_us);
  *connected = conn_us > 0;
  *t_total = now_s() - t0;
  if (buf->oom) {
    cx_fail(e, "out of memory receiving the answer of %s", url_path(url));
    goto done;
  }
  if (*cc == CURLE_OK) {
    res = ATTEMPT_ANSWERED;
  } else if (cancelled(o)) {
    res = ATTEMPT_CANCELLED;
  } else {
    res = ATTEMPT_TRANSPORT;
  }
done:
  if (m && c) curl_multi_remove_handle(m, c);
  if (c) curl_easy_cleanup(c);
  if (m) curl_multi_cleanup(m);
  curl_slist_free_all(hdrs);
  return res;
}

static void transport_message(const cx_http_opts *o, const char *method, const char *url, CURLcode cc,
                              int connected, cx_err *e) {
  char origin[512];
  url_origin(url, origin, sizeof origin);
  const char *svc = o->service ? o->service : "server";
  switch (cc) {
    case CURLE_COULDNT_CONNECT:
      cx_fail(e, "%s at %s refused the connection: %s", svc, origin,
              o->start_hint ? o->start_hint : "start it or check the URL");
      break;
    case CURLE_COULDNT_RESOLVE_HOST:
      cx_fail(e, "%s at %s: the host name could not be resolved: check the URL", svc, origin);
      break;
    case CURLE_OPERATION_TIMEDOUT:
      if (!connected)
        cx_fail(e, "%s at %s did not accept a connection within %g s: check that it is running and reachable",
                svc, origin, o->connect_timeout_s);
      else
        cx_fail(e,
                "%s at %s did not answer %s %s within %g s: the server is busy or stuck; raise the timeout "
                "(\"timeout_s\" in the config file) if it needs longer",
                svc, origin, method, url_path(url), o->timeout_s);
      break;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
      cx_fail(e, "%s at %s closed the connection without a complete answer to %s %s (%s): check the server's log",
              svc, origin, method, url_path(url), curl_easy_strerror(cc));
      break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
      cx_fail(e, "%s at %s: TLS failed (%s): check the URL's scheme and the server's certificate", svc,
              origin, curl_easy_strerror(cc));
      break;
    default:
      cx_fail(e, "%s at %s: %s %s failed: %s", svc, origin, method, url_path(url), curl_easy_strerror(cc));
  }
}

static int status_retryable(long s) {
  return s == 408 || s == 409 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

/* Sleeps in short slices so Ctrl-C is not held up by a long backoff. */
static int sleep_cancellable(const cx_http_opts *o, double s) {
  double end = now_s() + s;
  for (;;) {
    if (cancelled(o)) return -1;
    double left = end - now_s();
    if (left <= 0) return 0;
    if (left > 0.05) left = 0.05;
    struct timespec ts = {0, (long)(left * 1e9)};
    nanosleep(&ts, NULL);
  }
}

static double jitter(void) {
  static unsigned state;
  if (!state) state = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
  state = state * 1103515245u + 12345u;
  return 0.75 + 0.25 * ((state >> 8) & 0xffff) / 65535.0;
}

int cx_http_request(const cx_http_opts *o, const char *method, const char *url, const char *body,
                    size_t body_len, cx_http_response *r, cx_err *e) {
  memset(r, 0, sizeof *r);
  if (cx_http_global_init(e)) return -1;
  double t0 = now_s();
  int n500 = 0;
  for (int n = 0;; n++) {
    growbuf buf = {0};
    headers_seen h = {.retry_after_s = -1, .should_retry = -1};
    long status = 0;
    CURLcode cc = CURLE_OK;
    int connected = 0;
    double t_att = 0;
    attempt_result ar = attempt(o, method, url, body, body_len, &buf, &h, &status, &cc, &connected, &t_att, e);
    r->attempts = n + 1;
    if (ar == ATTEMPT_FATAL) {
      free(buf.data);
      return -1;
    }
    if (ar == ATTEMPT_CANCELLED) {
      free(buf.data);
      char origin[512];
      url_origin(url, origin, sizeof origin);
      return cx_fail(e, "interrupted (Ctrl-C) while waiting for %s at %s", o->service, origin);
    }
    int retry;
    double delay = -1;
    if (ar == ATTEMPT_TRANSPORT) {
      retry = cc != CURLE_COULDNT_RESOLVE_HOST && cc != CURLE_URL_MALFORMAT &&
              cc != CURLE_UNSUPPORTED_PROTOCOL && (cc != CURLE_COULDNT_CONNECT || o->retry_connect);
    } else {
      retry = status_retryable(status);
      if (status == 429 && buf.data && strstr(buf.data, "insufficient_quota")) retry = 0;
      if (status == 500 && n500 >= o->max_500_retries) retry = 0;
      if (h.should_retry == 1) retry = 1;
      if (h.should_retry == 0) retry = 0;
      if (retry && h.retry_after_s >= 0) {
        if (h.retry_after_s > o->retry_after_cap_s) retry = 0; /* the server asks for too long a wait */
        else if (h.retry_after_s > 0) delay = h.retry_after_s;
      }
    }
    if (retry && n >= o->max_retries) retry = 0;
    if (retry && delay < 0) {
      delay = o->backoff_base_s * pow(2.0, n);
      if (delay > o->backoff_cap_s) delay = o->backoff_cap_s;
      delay *= jitter();
    }
    if (retry && o->retry_budget_s > 0 && now_s() - t0 + delay > o->retry_budget_s) retry = 0;
    if (!retry) {
      r->elapsed_s = now_s() - t0;
      if (ar == ATTEMPT_TRANSPORT) {
        free(buf.data);
        transport_message(o, method, url, cc, connected, e);
        if (n > 0) {
          size_t used = strlen(e->msg);
          if (used + 32 < sizeof e->msg) snprintf(e->msg + used, sizeof e->msg - used, " (after %d attempts)", n + 1);
        }
        return -1;
      }
      r->status = status;
      r->body = buf.data ? buf.data : calloc(1, 1);
      r->len = buf.len;
      snprintf(r->content_type, sizeof r->content_type, "%s", h.content_type);
      snprintf(r->request_id, sizeof r->request_id, "%s", h.request_id);
      if (!r->body) return cx_fail(e, "out of memory");
      return 0;
    }
    if (status == 500) n500++;
    if (r->nretry_statuses < 8) r->retry_statuses[r->nretry_statuses++] = ar == ATTEMPT_TRANSPORT ? 0 : (int)status;
    free(buf.data);
    double ws = now_s();
    if (sleep_cancellable(o, delay)) {
      char origin[512];
      url_origin(url, origin, sizeof origin);
      return cx_fail(e, "interrupted (Ctrl-C) while waiting to retry %s at %s", o->service, origin);
    }
    r->waited_s += now_s() - ws;
    (void)t_att;
  }
}
