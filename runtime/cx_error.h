/* Error reporting for library code: functions return 0 on success and -1 on failure,
 * filling a cx_err with a message a user can act on. Library code never exits. */
#ifndef CX_ERROR_H
#define CX_ERROR_H

#include <stddef.h>

typedef struct cx_err {
  char msg[1024];
} cx_err;

/* Sets e->msg (printf-style) and returns -1, so callers can `return cx_fail(e, ...)`. */
int cx_fail(cx_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends context: "context: previous message". Returns -1. */
int cx_failctx(cx_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Allocation helpers that report through cx_err (NULL on failure). */
void *cx_malloc(size_t bytes, cx_err *e, const char *what);
void *cx_calloc(size_t n, size_t size, cx_err *e, const char *what);

#endif
