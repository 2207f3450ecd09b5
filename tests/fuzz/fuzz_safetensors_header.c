/* libFuzzer target: cx_safetensors_parse_header on an arbitrary header and data area.
 * The first two input bytes choose where the header ends; the rest of the input is the
 * data area the offsets are checked against. Both live in exact-size heap copies. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t body = size - 2;
  size_t hlen = ((size_t)data[0] | (size_t)data[1] << 8) % (body + 1);
  char *json = malloc(hlen ? hlen : 1);
  uint8_t *rest = malloc(body - hlen ? body - hlen : 1);
  if (!json || !rest) {
    free(json);
    free(rest);
    return 0;
  }
  memcpy(json, data + 2, hlen);
  memcpy(rest, data + 2 + hlen, body - hlen);
  cx_err e;
  cx_tensor_store *s = cx_store_new(&e);
  if (s) {
    if (cx_safetensors_parse_header(json, hlen, rest, body - hlen, s, "fuzz.safetensors", &e) == 0) {
      /* Every accepted tensor must lie inside the data area. */
      for (int i = 0; i < s->count; i++) {
        const cx_named_tensor *t = &s->t[i];
        size_t n = cx_tensor_numel(t);
        if (n) {
          volatile float a = t->data[0], b = t->data[n - 1];
          (void)a;
          (void)b;
        }
      }
    } else if (e.msg[0] == 0) {
      abort();
    }
    cx_store_free(s);
  }
  free(json);
  free(rest);
  return 0;
}
