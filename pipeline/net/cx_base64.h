/* Base64 (RFC 4648, standard alphabet) for image payloads in SD and LLM requests.
 * The encoder writes one line without newlines. The decoder is tolerant as the SD API is
 * (spec pipeline-apis.md A.3): an optional "data:<mime>;base64," prefix is stripped,
 * ASCII whitespace is skipped, missing '=' padding is accepted. */
#ifndef CX_BASE64_H
#define CX_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "cx_error.h"

/* malloc'd NUL-terminated text; *out_len (optional) excludes the NUL. NULL on OOM. */
char *cx_b64_encode(const uint8_t *data, size_t len, size_t *out_len);
/* Decodes `text` (len bytes) into a malloc'd buffer. Characters outside the alphabet
 * other than whitespace are an error naming their offset. */
int cx_b64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len, cx_err *e);

#endif
