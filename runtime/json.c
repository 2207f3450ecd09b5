/* Strict recursive-descent JSON reader (RFC 8259); see json.h. */
#include "json.h"

#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

typedef struct {
  const char *s, *end, *what;
  cx_err *e;
  int failed;
} parser;

static int perr(parser *p, const char *at, const char *msg) {
  if (!p->failed) cx_fail(p->e, "%s: invalid JSON at byte %ld: %s", p->what, (long)(at - p->s), msg);
  p->failed = 1;
  return -1;
}

static void skip_ws(parser *p, const char **c) {
  while (*c < p->end && (**c == ' ' || **c == '\t' || **c == '\n' || **c == '\r')) (*c)++;
}

static cx_json *new_node(cx_json_type t) {
  cx_json *j = calloc(1, sizeof *j);
  if (j) j->type = t;
  return j;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static char *parse_string(parser *p, const char **c) {
  const char *start = *c;
  (*c)++; /* opening quote */
  size_t cap = 0;
  const char *q = *c;
  while (q < p->end && *q != '"') { if (*q == '\\') q++; q++; cap++; }
  if (q >= p->end) { perr(p, start, "unterminated string"); return NULL; }
  char *out = malloc(cap * 4 + 1), *o = out;
  if (!out) { perr(p, start, "out of memory"); return NULL; }
  while (*c < p->end && **c != '"') {
    unsigned char ch = (unsigned char)**c;
    if (ch < 0x20) { free(out); perr(p, *c, "control character in string"); return NULL; }
    if (ch != '\\') { *o++ = (char)ch; (*c)++; continue; }
    (*c)++;
    if (*c >= p->end) break;
    char esc = **c;
    (*c)++;
    switch (esc) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '/': *o++ = '/'; break;
      case 'b': *o++ = '\b'; break;
      case 'f': *o++ = '\f'; break;
      case 'n': *o++ = '\n'; break;
      case 'r': *o++ = '\r'; break;
      case 't': *o++ = '\t'; break;
      case 'u': {
        unsigned cp = 0;
        for (int k = 0; k < 4; k++) {
          int h = (*c < p->end) ? hexval(**c) : -1;
          if (h < 0) { free(out); perr(p, *c, "bad \\u escape"); return NULL; }
          cp = cp * 16 + (unsigned)h;
          (*c)++;
        }
        if (cp >= 0xD800 && cp < 0xDC00 && p->end - *c >= 6 && (*c)[0] == '\\' && (*c)[1] == 'u') {
          unsigned lo = 0;
          int ok = 1;
          for (int k = 0; k < 4; k++) { int h = hexval((*c)[2 + k]); if (h < 0) ok = 0; else lo = lo * 16 + (unsigned)h; }
          if (ok && lo >= 0xDC00 && lo < 0xE000) { cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00); *c += 6; }
        }
        o += put_utf8(o, cp);
        break;
      }
      default: free(out); perr(p, *c - 1, "bad escape"); return NULL;
    }
  }
  if (*c >= p->end) { free(out); perr(p, start, "unterminated string"); return NULL; }
  (*c)++; /* closing quote */
  *o = 0;
  return out;
}

static cx_json *parse_value(parser *p, const char **c, int depth);

static cx_json *parse_container(parser *p, const char **c, int depth, int is_obj) {
  cx_json *node = new_node(is_obj ? CX_JSON_OBJECT : CX_JSON_ARRAY), *last = NULL;
  if (!node) { perr(p, *c, "out of memory"); return NULL; }
  char close = is_obj ? '}' : ']';
  (*c)++;
  skip_ws(p, c);
  if (*c < p->end && **c == close) { (*c)++; return node; }
  for (;;) {
    char *key = NULL;
    skip_ws(p, c);
    if (is_obj) {
      if (*c >= p->end || **c != '"') { perr(p, *c, "expected a member name"); goto fail; }
      key = parse_string(p, c);
      if (!key) goto fail;
      skip_ws(p, c);
      if (*c >= p->end || **c != ':') { free(key); perr(p, *c, "expected ':'"); goto fail; }
      (*c)++;
    }
    cx_json *v = parse_value(p, c, depth + 1);
    if (!v) { free(key); goto fail; }
    v->key = key;
    if (last) last->next = v; else node->child = v;
    last = v;
    skip_ws(p, c);
    if (*c < p->end && **c == ',') { (*c)++; continue; }
    if (*c < p->end && **c == close) { (*c)++; return node; }
    perr(p, *c, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    goto fail;
  }
fail:
  cx_json_free(node);
  return NULL;
}

static cx_json *parse_value(parser *p, const char **c, int depth) {
  if (depth > JSON_MAX_DEPTH) { perr(p, *c, "nested too deeply"); return NULL; }
  skip_ws(p, c);
  if (*c >= p->end) { perr(p, *c, "unexpected end of input"); return NULL; }
  const char *start = *c;
  cx_json *v = NULL;
  char ch = **c;
  if (ch == '{' || ch == '[') {
    v = parse_container(p, c, depth, ch == '{');
  } else if (ch == '"') {
    char *s = parse_string(p, c);
    if (!s) return NULL;
    v = new_node(CX_JSON_STRING);
    if (!v) { free(s); perr(p, start, "out of memory"); return NULL; }
    v->string = s;
  } else if (ch == 't' && p->end - *c >= 4 && !memcmp(*c, "true", 4)) {
    v = new_node(CX_JSON_TRUE); *c += 4;
  } else if (ch == 'f' && p->end - *c >= 5 && !memcmp(*c, "false", 5)) {
    v = new_node(CX_JSON_FALSE); *c += 5;
  } else if (ch == 'n' && p->end - *c >= 4 && !memcmp(*c, "null", 4)) {
    v = new_node(CX_JSON_NULL); *c += 4;
  } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
    const char *q = *c;
    if (*q == '-') q++;
    if (q >= p->end || *q < '0' || *q > '9') { perr(p, start, "bad number"); return NULL; }
    if (*q == '0') q++; else while (q < p->end && *q >= '0' && *q <= '9') q++;
    if (q < p->end && *q == '.') {
      q++;
      if (q >= p->end || *q < '0' || *q > '9') { perr(p, start, "bad number"); return NULL; }
      while (q < p->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < p->end && (*q == 'e' || *q == 'E')) {
      q++;
      if (q < p->end && (*q == '+' || *q == '-')) q++;
      if (q >= p->end || *q < '0' || *q > '9') { perr(p, start, "bad number"); return NULL; }
      while (q < p->end && *q >= '0' && *q <= '9') q++;
    }
    char buf[64];
    size_t n = (size_t)(q - *c);
    if (n >= sizeof buf) { perr(p, start, "number too long"); return NULL; }
    memcpy(buf, *c, n); buf[n] = 0;
    v = new_node(CX_JSON_NUMBER);
    if (v) v->number = strtod(buf, NULL);
    *c = q;
  } else {
    perr(p, start, "unexpected character");
    return NULL;
  }
  if (!v) { if (!p->failed) perr(p, start, "out of memory"); return NULL; }
  v->raw = start;
  v->raw_len = (size_t)(*c - start);
  return v;
}

cx_json *cx_json_parse(const char *text, size_t len, const char *what, cx_err *e) {
  parser p = {text, text + len, what ? what : "JSON", e, 0};
  const char *c = text;
  cx_json *v = parse_value(&p, &c, 0);
  if (!v) return NULL;
  skip_ws(&p, &c);
  if (c != p.end) { perr(&p, c, "trailing characters after the value"); cx_json_free(v); return NULL; }
  return v;
}

void cx_json_free(cx_json *j) {
  while (j) {
    cx_json *next = j->next;
    cx_json_free(j->child);
    free(j->string);
    free(j->key);
    free(j);
    j = next;
  }
}

const cx_json *cx_json_get(const cx_json *obj, const char *key) {
  if (!obj || obj->type != CX_JSON_OBJECT) return NULL;
  for (const cx_json *c = obj->child; c; c = c->next)
    if (c->key && !strcmp(c->key, key)) return c;
  return NULL;
}

int cx_json_count(const cx_json *arr) {
  int n = 0;
  if (arr)
    for (const cx_json *c = arr->child; c; c = c->next) n++;
  return n;
}

void cx_json_write_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
    switch (*q) {
      case '"': fputs("\\\"", f); break;
      case '\\': fputs("\\\\", f); break;
      case '\n': fputs("\\n", f); break;
      case '\r': fputs("\\r", f); break;
      case '\t': fputs("\\t", f); break;
      default:
        if (*q < 0x20) fprintf(f, "\\u%04x", *q); else fputc(*q, f);
    }
  }
  fputc('"', f);
}
