/* HTTP layer on libcurl shared by the SD and LLM clients (spec pipeline-apis.md A.1, C.8).
 *
 * One call = one logical request: connect and total timeouts per attempt, retries with
 * exponential backoff and jitter on transport errors, 408/409/429/5xx (Retry-After and
 * retry-after-ms honoured, x-should-retry obeyed, insufficient_quota never retried), and a
 * cancel flag (Ctrl-C). The call returns 0 whenever an HTTP answer arrived, whatever its
 * status; the caller turns non-2xx answers into messages with cx_http_error_detail().
 * Transport failures return -1 with an actionable message that names the service and its
 * URL (without credentials). Secrets (API key, basic-auth password) never enter messages. */
#ifndef CX_HTTP_H
#define CX_HTTP_H

#include <signal.h>
#include <stddef.h>

#include "cx_error.h"

typedef struct cx_http_opts {
  const char *service;     /* "SD server", "LLM server": first words of messages */
  const char *start_hint;  /* what to do when the connection is refused, e.g. "start the web UI with --api" */
  double connect_timeout_s; /* per attempt; default 5 */
  double timeout_s;        /* total per attempt; 0 = no limit */
  int max_retries;         /* retries after the first attempt; default 3 */
  int max_500_retries;     /* how many of those may follow a 500 (SD generation: 1) */
  double backoff_base_s;   /* delay before retry n: min(base * 2^n, cap) * U[0.75, 1]; 0.5 */
  double backoff_cap_s;    /* 8 */
  double retry_after_cap_s; /* a longer Retry-After is not waited for: report instead; 60 */
  double retry_budget_s;   /* no retry would start after this much time in total; 0 = none */
  int retry_connect;       /* retry "connection refused" (0: fail at once, e.g. first contact) */
  const char *userpwd;     /* HTTP basic auth "user:pass", or NULL */
  const char *bearer;      /* API key for "Authorization: Bearer", or NULL */
  volatile sig_atomic_t *cancel; /* incremented by the SIGINT handler; may be NULL */
  int cancel_abort_level;  /* abort the transfer once *cancel >= this (default 1) */
  /* Called about every 100 ms while a transfer runs (progress polling, interrupts). */
  void (*tick)(void *ctx, double elapsed_s);
  void *tick_ctx;
} cx_http_opts;

void cx_http_opts_default(cx_http_opts *o, const char *service, const char *start_hint);

typedef struct cx_http_response {
  long status;
  char *body;          /* NUL-terminated, malloc'd */
  size_t len;
  char content_type[128];
  char request_id[128];
  int attempts;        /* attempts made, including the last */
  double elapsed_s;    /* all attempts and waits */
  double waited_s;     /* time spent in backoff waits */
  int retry_statuses[8]; /* statuses of the attempts that were retried (0 = transport error) */
  int nretry_statuses;
} cx_http_response;

void cx_http_response_free(cx_http_response *r);

/* method "GET" or "POST"; body may be NULL (POST then sends an empty body).
 * content_type defaults to application/json for POST. */
int cx_http_request(const cx_http_opts *o, const char *method, const char *url,
                    const char *body, size_t body_len, cx_http_response *r, cx_err *e);

/* The server's own words about a failed request, from any error shape of B.2 / C.7
 * ({"detail": str | [{loc,msg}]}, {"error": str | {message,code}}, "errors", "message"),
 * or the first bytes of a non-JSON body. Writes "" when there is nothing useful. */
void cx_http_error_detail(const char *body, size_t len, char *out, size_t out_len);
/* Error code/type of an OpenAI-shaped body ("insufficient_quota"), "" when absent. */
void cx_http_error_code(const char *body, size_t len, char *out, size_t out_len);

/* URL with any user:password@ removed, for messages and records. */
void cx_url_redact(const char *url, char *out, size_t out_len);
/* Replaces every occurrence of `secret` (when non-empty, >= 4 chars) in s with "***". */
void cx_redact_inplace(char *s, const char *secret);

/* Reason phrase for common statuses ("Not Found"). */
const char *cx_http_reason(long status);

int cx_http_global_init(cx_err *e);

#endif
