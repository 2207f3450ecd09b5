#include "cx_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cx_fail(cx_err *e, const char *fmt, ...) {
  if (!e) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return -1;
}

int cx_failctx(cx_err *e, const char *fmt, ...) {
  if (!e) return -1;
  char prev[sizeof e->msg];
  memcpy(prev, e->msg, sizeof prev);
  prev[sizeof prev - 1] = 0;
  char ctx[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx, sizeof ctx, fmt, ap);
  va_end(ap);
  snprintf(e->msg, sizeof e->msg, "%s: %s", ctx, prev);
  return -1;
}

void *cx_malloc(size_t bytes, cx_err *e, const char *what) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) cx_fail(e, "out of memory allocating %zu bytes for %s", bytes, what);
  return p;
}

void *cx_calloc(size_t n, size_t size, cx_err *e, const char *what) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) cx_fail(e, "out of memory allocating %zu x %zu bytes for %s", n, size, what);
  return p;
}
