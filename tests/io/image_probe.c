/* Test helper: decodes an image with cx_image_load and writes "P6" PPM (8-bit RGB) so
 * that image_formats.py can compare it with an independent decoder (Pillow).
 *   image_probe IN OUT.ppm     exit 0, or 1 with the error message on stderr */
#include <stdio.h>

#include "image_io.h"

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: image_probe IN OUT.ppm\n");
    return 2;
  }
  cx_rgb_image im;
  cx_err e;
  if (cx_image_load(argv[1], &im, &e)) {
    fprintf(stderr, "%s\n", e.msg);
    return 1;
  }
  FILE *f = fopen(argv[2], "wb");
  if (!f) return 1;
  fprintf(f, "P6\n%d %d\n255\n", im.width, im.height);
  fwrite(im.rgb, 1, (size_t)im.width * im.height * 3, f);
  fclose(f);
  cx_rgb_image_free(&im);
  return 0;
}
