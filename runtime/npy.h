/* Minimal NumPy .npy writer (format 1.0, little-endian), for dumping intermediates. */
#ifndef CX_NPY_H
#define CX_NPY_H

#include <stddef.h>

#include "cx_error.h"

/* dtype: "<f4", "<i4" or "|u1". */
int cx_npy_write(const char *path, const char *dtype, const void *data, size_t elem_size, int ndim,
                 const long *shape, cx_err *e);

#endif
