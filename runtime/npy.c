#include "npy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int cx_npy_write(const char *path, const char *dtype, const void *data, size_t elem_size, int ndim,
                 const long *shape, cx_err *e) {
  char hdr[256];
  int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (", dtype);
  size_t count = 1;
  for (int i = 0; i < ndim; i++) {
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%ld,%s", shape[i], i + 1 < ndim ? " " : "");
    count *= (size_t)shape[i];
  }
  n += snprintf(hdr + n, sizeof hdr - (size_t)n, "), }");
  int total = 10 + n + 1;
  int pad = (64 - total % 64) % 64; /* header block is a multiple of 64 bytes */
  FILE *f = fopen(path, "wb");
  if (!f) return cx_fail(e, "cannot write '%s': %s", path, strerror(errno));
  unsigned short hl = (unsigned short)(n + pad + 1);
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff), (unsigned char)(hl >> 8)};
  fwrite(pre, 1, 10, f);
  fwrite(hdr, 1, (size_t)n, f);
  for (int i = 0; i < pad; i++) fputc(' ', f);
  fputc('\n', f);
  size_t w = count ? fwrite(data, elem_size, count, f) : 0;
  if (fclose(f) || w != count) return cx_fail(e, "cannot write '%s': %s", path, strerror(errno));
  return 0;
}
