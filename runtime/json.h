/* A small strict JSON reader (RFC 8259) used where cJSON is not available: the
 * safetensors header, config files. Depth and size are bounded; errors give the offset. */
#ifndef CX_JSON_H
#define CX_JSON_H

#include <stddef.h>

#include "cx_error.h"

typedef enum { CX_JSON_NULL, CX_JSON_FALSE, CX_JSON_TRUE, CX_JSON_NUMBER, CX_JSON_STRING,
               CX_JSON_ARRAY, CX_JSON_OBJECT } cx_json_type;

typedef struct cx_json {
  cx_json_type type;
  double number;
  char *string;          /* STRING value (NUL-terminated, UTF-8) */
  char *key;             /* member name when inside an OBJECT */
  struct cx_json *child; /* first element / member */
  struct cx_json *next;  /* next sibling */
  const char *raw;       /* start of the value's text in the source */
  size_t raw_len;        /* length of the value's text */
} cx_json;

/* Parses `len` bytes; `what` names the source in error messages. */
cx_json *cx_json_parse(const char *text, size_t len, const char *what, cx_err *e);
void cx_json_free(cx_json *j);
const cx_json *cx_json_get(const cx_json *obj, const char *key);
int cx_json_count(const cx_json *arr);
/* Writes `s` as a JSON string literal (with quotes) to f. */
#include <stdio.h>
void cx_json_write_string(FILE *f, const char *s);

#endif
