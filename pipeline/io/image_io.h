/* Image codecs: PNG (libpng), JPEG (libjpeg-turbo) and, when built with libwebp
 * (CX_HAVE_WEBP), still WebP in; PNG out.
 * Every decoded image is 8-bit RGB: RGBA drops alpha, greyscale is replicated, palette
 * is expanded, 16-bit is reduced to 8 bits. Decoding refuses images whose declared size
 * exceeds CX_IMAGE_MAX_PIXELS (decompression bombs) before allocating. */
#ifndef CX_IMAGE_IO_H
#define CX_IMAGE_IO_H

#include <stddef.h>
#include <stdint.h>

#include "cx_error.h"

#define CX_IMAGE_MAX_PIXELS (100 * 1000 * 1000)

typedef struct cx_rgb_image {
  int width, height;
  uint8_t *rgb; /* height * width * 3, owned (free with cx_rgb_image_free) */
} cx_rgb_image;

void cx_rgb_image_free(cx_rgb_image *im);

/* Reads a PNG, JPEG or WebP file (format from the content, not the extension). */
int cx_image_load(const char *path, cx_rgb_image *out, cx_err *e);
/* Decodes a PNG, JPEG or WebP held in memory (HTTP answers, fuzzing). */
int cx_image_decode(const uint8_t *buf, size_t len, cx_rgb_image *out, cx_err *e);
/* The format cx_image_decode sees in buf's signature: "png", "jpeg", "webp", or NULL. */
const char *cx_image_format(const uint8_t *buf, size_t len);
/* Whether this build decodes WebP (libwebp found at build time). */
int cx_image_webp_supported(void);

/* tEXt chunks to write: key/value pairs, e.g. {"parameters", "..."}. */
typedef struct cx_png_text {
  const char *key, *value;
} cx_png_text;

/* Encodes 8-bit pixels (channels 1, 3 or 4) as PNG into a malloc'd buffer. */
int cx_png_encode(int width, int height, int channels, const uint8_t *pixels,
                  const cx_png_text *texts, int ntexts, uint8_t **out, size_t *out_len, cx_err *e);
/* Writes a PNG atomically: temp file in the same directory, then rename. */
int cx_png_write(const char *path, int width, int height, int channels, const uint8_t *pixels,
                 const cx_png_text *texts, int ntexts, cx_err *e);
/* cx_png_write for previews written at GPU rates (segment's overlays): zlib level 1 and the Sub
 * filter, ~5-10x faster to encode, ~1.3-1.6x larger files. */
int cx_png_write_fast(const char *path, int width, int height, int channels, const uint8_t *pixels, cx_err *e);
/* Reads the tEXt/iTXt/zTXt chunk `key` of a PNG in memory (malloc'd string or NULL). */
char *cx_png_read_text(const uint8_t *buf, size_t len, const char *key);

/* Atomic file write (temp + fsync + rename) of an arbitrary byte buffer. */
int cx_write_file_atomic(const char *path, const void *data, size_t len, cx_err *e);

#endif
