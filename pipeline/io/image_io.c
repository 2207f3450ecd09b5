/* Image codecs (see image_io.h): PNG via libpng, JPEG via libjpeg(-turbo), WebP via libwebp
 * (optional, CX_HAVE_WEBP), all decoded from memory to 8-bit RGB; PNG encoding to memory;
 * atomic file writes.
 *
 * Untrusted input: the declared size is checked against CX_IMAGE_MAX_PIXELS before any
 * pixel buffer is allocated, libpng/libjpeg errors come back through setjmp as cx_err
 * messages, and a truncated JPEG (which libjpeg would otherwise pad with grey and accept
 * with a warning) is an error. libwebp returns status codes; its simple decoding path
 * checks the RIFF size against the data, so a truncated WebP is an error too. */
#include "image_io.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <zlib.h>
#ifdef CX_HAVE_WEBP
#include <webp/decode.h>
#endif

/* Largest file cx_image_load reads (a 100 Mpixel PNG of noise stays below this). */
#define CX_IMAGE_MAX_FILE_BYTES ((size_t)1 << 30)

void cx_rgb_image_free(cx_rgb_image *im) {
  if (!im) return;
  free(im->rgb);
  im->rgb = NULL;
  im->width = im->height = 0;
}

static int check_size(const char *fmt, unsigned long w, unsigned long h, cx_err *e) {
  if (w == 0 || h == 0) return cx_fail(e, "%s image has an empty size (%lux%lu)", fmt, w, h);
  if ((double)w * (double)h > (double)CX_IMAGE_MAX_PIXELS || w > INT_MAX / 4 || h > INT_MAX / 4)
    return cx_fail(e,
                   "%s image declares %lux%lu pixels, more than the limit of %d pixels "
                   "(refusing to decode: possible decompression bomb)",
                   fmt, w, h, CX_IMAGE_MAX_PIXELS);
  return 0;
}

/* ---------------------------------------------------------------------------------- */
/* PNG decode                                                                          */
/* ---------------------------------------------------------------------------------- */

typedef struct png_src {
  const uint8_t *buf;
  size_t len, pos;
  char msg[256];
  jmp_buf jb;
} png_src;

static void png_err_fn(png_structp p, png_const_charp msg) {
  png_src *s = png_get_error_ptr(p);
  snprintf(s->msg, sizeof s->msg, "%s", msg);
  longjmp(s->jb, 1);
}

static void png_warn_fn(png_structp p, png_const_charp msg) { (void)p; (void)msg; }

static void png_read_fn(png_structp p, png_bytep out, size_t n) {
  png_src *s = png_get_io_ptr(p);
  if (n > s->len - s->pos) {
    snprintf(s->msg, sizeof s->msg, "PNG data is truncated (file ends after %zu bytes)", s->len);
    longjmp(s->jb, 1);
  }
  memcpy(out, s->buf + s->pos, n);
  s->pos += n;
}

static int decode_png(const uint8_t *buf, size_t len, cx_rgb_image *out, cx_err *e) {
  png_src src = {.buf = buf, .len = len};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_err_fn, png_warn_fn);
  if (!png) return cx_fail(e, "PNG: cannot create decoder (out of memory)");
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    return cx_fail(e, "PNG: cannot create decoder (out of memory)");
  }
  uint8_t *volatile rgb = NULL;
  png_bytep *volatile rows = NULL;
  if (setjmp(src.jb)) {
    png_destroy_read_struct(&png, &info, NULL);
    free(rgb);
    free(rows);
    return cx_fail(e, "PNG decoding failed: %s", src.msg[0] ? src.msg : "unknown error");
  }
  /* libpng's own limits, in case a later chunk tries something odd. */
  png_set_user_limits(png, 1u << 30, 1u << 30);
  png_set_chunk_malloc_max(png, 64u << 20);
  png_set_read_fn(png, &src, png_read_fn);
  png_read_info(png, info);
  png_uint_32 w, h;
  int depth, ctype, interlace;
  png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
  if (check_size("PNG", w, h, e)) {
    png_destroy_read_struct(&png, &info, NULL);
    return -1;
  }
  if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16) png_set_scale_16(png);
  /* Alpha is dropped; a tRNS chunk may turn into alpha during expansion, drop that too. */
  if ((ctype & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
  if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  size_t rowbytes = png_get_rowbytes(png, info);
  if (rowbytes != (size_t)w * 3 || png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8)
    png_error(png, "unexpected pixel layout after conversion to 8-bit RGB");
  rgb = malloc((size_t)w * h * 3);
  rows = malloc(sizeof(png_bytep) * h);
  if (!rgb || !rows) png_error(png, "out of memory for the pixel buffer");
  for (png_uint_32 y = 0; y < h; y++) rows[y] = rgb + (size_t)y * w * 3;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  out->width = (int)w;
  out->height = (int)h;
  out->rgb = rgb;
  return 0;
}

/* ---------------------------------------------------------------------------------- */
/* JPEG decode                                                                         */
/* ---------------------------------------------------------------------------------- */

typedef struct jpeg_err {
  struct jpeg_error_mgr pub;
  char msg[JMSG_LENGTH_MAX + 64];
  jmp_buf jb;
} jpeg_err;

static void jpeg_error_exit_fn(j_common_ptr c) {
  jpeg_err *je = (jpeg_err *)c->err;
  char buf[JMSG_LENGTH_MAX];
  c->err->format_message(c, buf);
  snprintf(je->msg, sizeof je->msg, "%s", buf);
  longjmp(je->jb, 1);
}

static void jpeg_emit_fn(j_common_ptr c, int level) {
  /* A premature end of data is a warning in libjpeg (it pads with grey); we refuse it. */
  if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) {
    jpeg_err *je = (jpeg_err *)c->err;
    snprintf(je->msg, sizeof je->msg, "JPEG data is truncated (premature end of file)");
    longjmp(je->jb, 1);
  }
}

static int decode_jpeg(const uint8_t *buf, size_t len, cx_rgb_image *out, cx_err *e) {
  struct jpeg_decompress_struct cinfo;
  jpeg_err je;
  memset(&je, 0, sizeof je);
  cinfo.err = jpeg_std_error(&je.pub);
  je.pub.error_exit = jpeg_error_exit_fn;
  je.pub.emit_message = jpeg_emit_fn;
  uint8_t *volatile rgb = NULL;
  uint8_t *volatile cmyk = NULL;
  if (setjmp(je.jb)) {
    jpeg_destroy_decompress(&cinfo);
    free(rgb);
    free(cmyk);
    return cx_fail(e, "JPEG decoding failed: %s", je.msg[0] ? je.msg : "unknown error");
  }
  jpeg_create_decompress(&cinfo);
  cinfo.mem->max_memory_to_use = (long)1 << 30;
  jpeg_mem_src(&cinfo, (const unsigned char *)buf, (unsigned long)len);
  jpeg_read_header(&cinfo, TRUE);
  if (check_size("JPEG", cinfo.image_width, cinfo.image_height, e)) {
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  int is_cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = is_cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  unsigned w = cinfo.output_width, h = cinfo.output_height;
  int nc = cinfo.output_components;
  if (nc != (is_cmyk ? 4 : 3)) {
    snprintf(je.msg, sizeof je.msg, "unexpected %d output components", nc);
    longjmp(je.jb, 1);
  }
  rgb = malloc((size_t)w * h * 3);
  if (is_cmyk) cmyk = malloc((size_t)w * 4);
  if (!rgb || (is_cmyk && !cmyk)) {
    snprintf(je.msg, sizeof je.msg, "out of memory for a %ux%u image", w, h);
    longjmp(je.jb, 1);
  }
  while (cinfo.output_scanline < h) {
    unsigned y = cinfo.output_scanline;
    JSAMPROW row = is_cmyk ? (JSAMPROW)cmyk : (JSAMPROW)(rgb + (size_t)y * w * 3);
    if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
      snprintf(je.msg, sizeof je.msg, "JPEG data is truncated");
      longjmp(je.jb, 1);
    }
    if (is_cmyk) {
      /* Adobe CMYK JPEGs store inverted values: R = C*K/255 with the stored C, K. */
      int inverted = cinfo.saw_Adobe_marker;
      uint8_t *d = rgb + (size_t)y * w * 3;
      for (unsigned x = 0; x < w; x++) {
        unsigned c = cmyk[4 * x], m = cmyk[4 * x + 1], yy = cmyk[4 * x + 2], k = cmyk[4 * x + 3];
        if (!inverted) c = 255 - c, m = 255 - m, yy = 255 - yy, k = 255 - k;
        d[3 * x] = (uint8_t)((c * k + 127) / 255);
        d[3 * x + 1] = (uint8_t)((m * k + 127) / 255);
        d[3 * x + 2] = (uint8_t)((yy * k + 127) / 255);
      }
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  free(cmyk);
  out->width = (int)w;
  out->height = (int)h;
  out->rgb = rgb;
  return 0;
}

/* ---------------------------------------------------------------------------------- */
/* WebP decode                                                                         */
/* ---------------------------------------------------------------------------------- */

#ifdef CX_HAVE_WEBP
static const char *webp_status(VP8StatusCode st) {
  switch (st) {
  case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
  case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
  case VP8_STATUS_BITSTREAM_ERROR: return "corrupt data (bitstream error)";
  case VP8_STATUS_UNSUPPORTED_FEATURE: return "uses a feature libwebp does not support";
  case VP8_STATUS_NOT_ENOUGH_DATA: return "data is truncated (file ends early)";
  default: return "unknown error";
  }
}

/* Alpha is dropped as in the PNG path: MODE_RGB keeps each pixel's stored colour, whatever
 * its alpha (no compositing), for lossy (VP8 + ALPH) and lossless (VP8L) alike. */
static int decode_webp(const uint8_t *buf, size_t len, cx_rgb_image *out, cx_err *e) {
  WebPDecoderConfig cfg;
  if (!WebPInitDecoderConfig(&cfg)) return cx_fail(e, "WebP: libwebp rejected its decoder config (version mismatch?)");
  /* Header only: size and animation are known before anything is allocated. */
  VP8StatusCode st = WebPGetFeatures(buf, len, &cfg.input);
  if (st != VP8_STATUS_OK) return cx_fail(e, "WebP decoding failed: %s", webp_status(st));
  if (cfg.input.has_animation)
    return cx_fail(e, "animated WebP images are not supported (%dx%d canvas): give a single still image",
                   cfg.input.width, cfg.input.height);
  if (check_size("WebP", (unsigned long)cfg.input.width, (unsigned long)cfg.input.height, e)) return -1;
  int w = cfg.input.width, h = cfg.input.height;
  size_t stride = (size_t)w * 3, size = stride * (size_t)h;
  uint8_t *rgb = malloc(size);
  if (!rgb) return cx_fail(e, "WebP decoding failed: out of memory for a %dx%d image", w, h);
  cfg.output.colorspace = MODE_RGB;
  cfg.output.is_external_memory = 1;
  cfg.output.u.RGBA.rgba = rgb;
  cfg.output.u.RGBA.stride = (int)stride;
  cfg.output.u.RGBA.size = size;
  st = WebPDecode(buf, len, &cfg);
  int ow = cfg.output.width, oh = cfg.output.height;
  WebPFreeDecBuffer(&cfg.output); /* external memory stays ours; frees libwebp's bookkeeping */
  if (st != VP8_STATUS_OK) {
    free(rgb);
    return cx_fail(e, "WebP decoding failed: %s", webp_status(st));
  }
  if (ow != w || oh != h) {
    free(rgb);
    return cx_fail(e, "WebP decoding failed: header says %dx%d but the image decoded as %dx%d", w, h, ow, oh);
  }
  out->width = w;
  out->height = h;
  out->rgb = rgb;
  return 0;
}
#endif

/* ---------------------------------------------------------------------------------- */

const char *cx_image_format(const uint8_t *buf, size_t len) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (!buf) return NULL;
  if (len >= 8 && !memcmp(buf, png_sig, 8)) return "png";
  if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) return "jpeg";
  if (len >= 12 && !memcmp(buf, "RIFF", 4) && !memcmp(buf + 8, "WEBP", 4)) return "webp";
  return NULL;
}

int cx_image_webp_supported(void) {
#ifdef CX_HAVE_WEBP
  return 1;
#else
  return 0;
#endif
}

int cx_image_decode(const uint8_t *buf, size_t len, cx_rgb_image *out, cx_err *e) {
  out->width = out->height = 0;
  out->rgb = NULL;
  if (!buf || len == 0) return cx_fail(e, "image data is empty");
  const char *f = cx_image_format(buf, len);
  if (!f) return cx_fail(e, "not a PNG, JPEG or WebP image (unrecognised file signature)");
  if (!strcmp(f, "png")) return decode_png(buf, len, out, e);
  if (!strcmp(f, "jpeg")) return decode_jpeg(buf, len, out, e);
#ifdef CX_HAVE_WEBP
  return decode_webp(buf, len, out, e);
#else
  return cx_fail(e, "WebP image, but this build has no WebP support (libwebp-dev was not found at build "
                    "time, or CTXDIFF_WEBP=OFF): convert it to PNG or JPEG, or rebuild with libwebp-dev");
#endif
}

static int read_file(const char *path, uint8_t **out, size_t *out_len, cx_err *e) {
  FILE *f = fopen(path, "rb");
  if (!f) return cx_fail(e, "cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    fclose(f);
    return cx_fail(e, "'%s' is a directory, not an image file", path);
  }
  size_t cap = 1 << 16, len = 0;
  uint8_t *buf = malloc(cap);
  if (!buf) {
    fclose(f);
    return cx_fail(e, "out of memory reading '%s'", path);
  }
  for (;;) {
    if (len == cap) {
      if (cap >= CX_IMAGE_MAX_FILE_BYTES) {
        free(buf);
        fclose(f);
        return cx_fail(e, "'%s' is larger than %zu bytes; refusing to read it as an image", path,
                       CX_IMAGE_MAX_FILE_BYTES);
      }
      uint8_t *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        fclose(f);
        return cx_fail(e, "out of memory reading '%s'", path);
      }
      buf = nb;
      cap *= 2;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    len += n;
    if (n == 0) break;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(buf);
    return cx_fail(e, "error reading '%s'", path);
  }
  *out = buf;
  *out_len = len;
  return 0;
}

int cx_image_load(const char *path, cx_rgb_image *out, cx_err *e) {
  out->width = out->height = 0;
  out->rgb = NULL;
  uint8_t *buf = NULL;
  size_t len = 0;
  if (read_file(path, &buf, &len, e)) return -1;
  int rc = cx_image_decode(buf, len, out, e);
  free(buf);
  if (rc) return cx_failctx(e, "%s", path);
  return 0;
}

/* ---------------------------------------------------------------------------------- */
/* PNG encode                                                                          */
/* ---------------------------------------------------------------------------------- */

typedef struct png_sink {
  uint8_t *buf;
  size_t len, cap;
  int oom;
  char msg[256];
  jmp_buf jb;
} png_sink;

static void png_write_fn(png_structp p, png_bytep data, size_t n) {
  png_sink *s = png_get_io_ptr(p);
  if (s->len + n > s->cap) {
    size_t nc = s->cap ? s->cap : 1 << 16;
    while (nc < s->len + n) nc *= 2;
    uint8_t *nb = realloc(s->buf, nc);
    if (!nb) {
      s->oom = 1;
      png_error(p, "out of memory for the encoded PNG");
    }
    s->buf = nb;
    s->cap = nc;
  }
  memcpy(s->buf + s->len, data, n);
  s->len += n;
}

static void png_flush_fn(png_structp p) { (void)p; }

static void png_werr_fn(png_structp p, png_const_charp msg) {
  png_sink *s = png_get_error_ptr(p);
  snprintf(s->msg, sizeof s->msg, "%s", msg);
  longjmp(s->jb, 1);
}

/* fast: zlib level 1 and the Sub filter on every row instead of level 6 and libpng's adaptive
 * filter choice (which tries all five filters per row) */
static int png_encode(int width, int height, int channels, const uint8_t *pixels, const cx_png_text *texts,
                      int ntexts, int fast, uint8_t **out, size_t *out_len, cx_err *e) {
  *out = NULL;
  *out_len = 0;
  if (width <= 0 || height <= 0 || (channels != 1 && channels != 3 && channels != 4) || !pixels)
    return cx_fail(e, "PNG encode: invalid image %dx%d with %d channels", width, height, channels);
  png_sink sink = {0};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, png_werr_fn, png_warn_fn);
  if (!png) return cx_fail(e, "PNG encode: out of memory");
  png_infop info = png_create_info_struct(png);
  png_textp volatile tx = NULL;
  if (!info || setjmp(sink.jb)) {
    png_destroy_write_struct(&png, info ? &info : NULL);
    free(sink.buf);
    free(tx);
    return cx_fail(e, "PNG encode failed: %s", sink.msg[0] ? sink.msg : "out of memory");
  }
  png_set_write_fn(png, &sink, png_write_fn, png_flush_fn);
  png_set_compression_level(png, fast ? 1 : 6);
  if (fast) png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_SUB);
  int ctype = channels == 1 ? PNG_COLOR_TYPE_GRAY : channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGB_ALPHA;
  png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, ctype, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (ntexts > 0) {
    tx = calloc((size_t)ntexts, sizeof *tx);
    if (!tx) png_error(png, "out of memory for text chunks");
    for (int i = 0; i < ntexts; i++) {
      tx[i].compression = strlen(texts[i].value) > 1024 ? PNG_TEXT_COMPRESSION_zTXt : PNG_TEXT_COMPRESSION_NONE;
      tx[i].key = (png_charp)texts[i].key;
      tx[i].text = (png_charp)texts[i].value;
      tx[i].text_length = strlen(texts[i].value);
    }
    png_set_text(png, info, tx, ntexts);
  }
  png_write_info(png, info);
  for (int y = 0; y < height; y++)
    png_write_row(png, (png_const_bytep)(pixels + (size_t)y * width * channels));
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  free(tx);
  *out = sink.buf;
  *out_len = sink.len;
  return 0;
}

int cx_png_encode(int width, int height, int channels, const uint8_t *pixels, const cx_png_text *texts,
                  int ntexts, uint8_t **out, size_t *out_len, cx_err *e) {
  return png_encode(width, height, channels, pixels, texts, ntexts, 0, out, out_len, e);
}

static int png_write(const char *path, int width, int height, int channels, const uint8_t *pixels,
                     const cx_png_text *texts, int ntexts, int fast, cx_err *e) {
  uint8_t *buf;
  size_t len;
  if (png_encode(width, height, channels, pixels, texts, ntexts, fast, &buf, &len, e))
    return cx_failctx(e, "writing '%s'", path);
  int rc = cx_write_file_atomic(path, buf, len, e);
  free(buf);
  return rc;
}

int cx_png_write(const char *path, int width, int height, int channels, const uint8_t *pixels,
                 const cx_png_text *texts, int ntexts, cx_err *e) {
  return png_write(path, width, height, channels, pixels, texts, ntexts, 0, e);
}

int cx_png_write_fast(const char *path, int width, int height, int channels, const uint8_t *pixels, cx_err *e) {
  return png_write(path, width, height, channels, pixels, NULL, 0, 1, e);
}

/* ---------------------------------------------------------------------------------- */
/* PNG text chunks (walked by hand: no pixel decoding needed)                          */
/* ---------------------------------------------------------------------------------- */

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static char *inflate_text(const uint8_t *p, size_t n) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit(&z) != Z_OK) return NULL;
  size_t cap = n * 4 + 256, len = 0;
  char *out = malloc(cap + 1);
  if (!out) {
    inflateEnd(&z);
    return NULL;
  }
  z.next_in = (Bytef *)p;
  z.avail_in = (uInt)n;
  for (;;) {
    if (len == cap) {
      if (cap > (64u << 20)) break;
      char *nb = realloc(out, cap * 2 + 1);
      if (!nb) break;
      out = nb;
      cap *= 2;
    }
    z.next_out = (Bytef *)out + len;
    z.avail_out = (uInt)(cap - len);
    int rc = inflate(&z, Z_NO_FLUSH);
    len = cap - z.avail_out;
    if (rc == Z_STREAM_END) {
      inflateEnd(&z);
      out[len] = 0;
      return out;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) break;
    if (rc == Z_BUF_ERROR && z.avail_in == 0) break;
  }
  inflateEnd(&z);
  free(out);
  return NULL;
}

static char *dup_n(const uint8_t *p, size_t n) {
  char *s = malloc(n + 1);
  if (!s) return NULL;
  memcpy(s, p, n);
  s[n] = 0;
  return s;
}

char *cx_png_read_text(const uint8_t *buf, size_t len, const char *key) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (!buf || len < 8 || memcmp(buf, sig, 8) || !key) return NULL;
  size_t klen = strlen(key), pos = 8;
  while (pos + 12 <= len) {
    uint32_t n = be32(buf + pos);
    const uint8_t *type = buf + pos + 4, *d = buf + pos + 8;
    if (n > len - pos - 12) return NULL;
    if (!memcmp(type, "IEND", 4)) return NULL;
    int is_t = !memcmp(type, "tEXt", 4), is_z = !memcmp(type, "zTXt", 4), is_i = !memcmp(type, "iTXt", 4);
    if ((is_t || is_z || is_i) && n > klen && !memcmp(d, key, klen) && d[klen] == 0) {
      const uint8_t *p = d + klen + 1, *end = d + n;
      if (is_t) return dup_n(p, (size_t)(end - p));
      if (is_z) {
        if (p >= end || *p != 0) return NULL;
        return inflate_text(p + 1, (size_t)(end - p - 1));
      }
      /* iTXt: compression flag, method, language\0, translated keyword\0, text */
      if (end - p < 2) return NULL;
      int compressed = p[0];
      p += 2;
      const uint8_t *z1 = memchr(p, 0, (size_t)(end - p));
      if (!z1) return NULL;
      const uint8_t *z2 = memchr(z1 + 1, 0, (size_t)(end - z1 - 1));
      if (!z2) return NULL;
      p = z2 + 1;
      return compressed ? inflate_text(p, (size_t)(end - p)) : dup_n(p, (size_t)(end - p));
    }
    pos += 12 + (size_t)n;
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Atomic write                                                                        */
/* ---------------------------------------------------------------------------------- */

/* The process umask, read once: umask() can only be read by setting it, which is not safe
 * while other threads create files (segment writes its outputs from several threads). */
static mode_t g_umask;
static pthread_once_t g_umask_once = PTHREAD_ONCE_INIT;
static void read_umask(void) {
  g_umask = umask(0);
  umask(g_umask);
}

int cx_write_file_atomic(const char *path, const void *data, size_t len, cx_err *e) {
  pthread_once(&g_umask_once, read_umask);
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp) return cx_fail(e, "out of memory writing '%s'", path);
  snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    int err = errno;
    free(tmp);
    return cx_fail(e, "cannot write '%s': %s", path, strerror(err));
  }
  /* mkstemp creates 0600; give the file the usual permissions under the umask. */
  (void)fchmod(fd, 0666 & ~g_umask);
  const uint8_t *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      unlink(tmp);
      free(tmp);
      return cx_fail(e, "cannot write '%s': %s", path, strerror(err));
    }
    p += n;
    left -= (size_t)n;
  }
  if (fsync(fd) != 0 && errno != EINVAL) {
    int err = errno;
    close(fd);
    unlink(tmp);
    free(tmp);
    return cx_fail(e, "cannot write '%s' (fsync): %s", path, strerror(err));
  }
  if (close(fd) != 0) {
    int err = errno;
    unlink(tmp);
    free(tmp);
    return cx_fail(e, "cannot write '%s' (close): %s", path, strerror(err));
  }
  if (rename(tmp, path) != 0) {
    int err = errno;
    unlink(tmp);
    free(tmp);
    return cx_fail(e, "cannot write '%s' (rename): %s", path, strerror(err));
  }
  free(tmp);
  return 0;
}
