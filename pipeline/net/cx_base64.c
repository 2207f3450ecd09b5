/* Base64 encode/decode; see cx_base64.h for the tolerance rules. */
#include "cx_base64.h"

#include <stdlib.h>
#include <string.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *cx_b64_encode(const uint8_t *data, size_t len, size_t *out_len) {
  size_t n = 4 * ((len + 2) / 3);
  char *out = malloc(n + 1);
  if (!out) return NULL;
  size_t o = 0, i = 0;
  for (; i + 2 < len; i += 3) {
    uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
    out[o++] = b64_alphabet[v >> 18];
    out[o++] = b64_alphabet[(v >> 12) & 63];
    out[o++] = b64_alphabet[(v >> 6) & 63];
    out[o++] = b64_alphabet[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0);
    out[o++] = b64_alphabet[v >> 18];
    out[o++] = b64_alphabet[(v >> 12) & 63];
    out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  out[o] = 0;
  if (out_len) *out_len = o;
  return out;
}

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int cx_b64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len, cx_err *e) {
  *out = NULL;
  *out_len = 0;
  size_t start = 0;
  if (len >= 5 && !memcmp(text, "data:", 5)) {
    const char *comma = memchr(text, ',', len);
    if (!comma) return cx_fail(e, "data URL without ',' before its base64 payload");
    start = (size_t)(comma - text) + 1;
  }
  uint8_t *buf = malloc((len - start) / 4 * 3 + 3);
  if (!buf) return cx_fail(e, "out of memory decoding %zu bytes of base64", len);
  uint32_t acc = 0;
  int nbits = 0, seen_pad = 0;
  size_t o = 0;
  for (size_t i = start; i < len; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v') continue;
    if (c == '=') {
      seen_pad = 1;
      continue;
    }
    int v = b64_value(c);
    if (v < 0 || seen_pad) {
      free(buf);
      return cx_fail(e, "invalid base64: unexpected character 0x%02x at offset %zu", c, i);
    }
    acc = (acc << 6) | (uint32_t)v;
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      buf[o++] = (uint8_t)(acc >> nbits);
    }
  }
  if (nbits >= 6) { /* a single leftover character cannot encode a byte */
    free(buf);
    return cx_fail(e, "invalid base64: truncated payload (%zu characters)", len - start);
  }
  *out = buf;
  *out_len = o;
  return 0;
}
