/* libFuzzer target: cx_image_decode (PNG via libpng, JPEG via libjpeg, WebP via libwebp when
 * built with CX_HAVE_WEBP) on arbitrary bytes.
 * Any crash, sanitizer report, leak or decoded image with inconsistent size is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* An exact-size copy so that any over-read hits ASan's redzone. */
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  cx_rgb_image im;
  cx_err e;
  if (cx_image_decode(buf, size, &im, &e) == 0) {
    if (im.width <= 0 || im.height <= 0 || (long long)im.width * im.height > CX_IMAGE_MAX_PIXELS) abort();
    volatile uint8_t sink = im.rgb[(size_t)im.width * im.height * 3 - 1]; /* whole buffer exists */
    (void)sink;
    cx_rgb_image_free(&im);
  } else if (e.msg[0] == 0) {
    abort(); /* a failure must say why */
  }
  free(buf);
  return 0;
}
