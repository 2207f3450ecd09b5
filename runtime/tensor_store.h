/* A named set of float32 tensors (weights): loaded from safetensors by mmap, or built in
 * memory (synthetic weights). Names follow matterport layers: "<layer>/<weight>". */
#ifndef CX_TENSOR_STORE_H
#define CX_TENSOR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cx_error.h"

#define CX_MAX_DIMS 4

typedef struct cx_named_tensor {
  char *name;
  int ndim;
  int64_t shape[CX_MAX_DIMS];
  const float *data; /* points into the mmap or into owned memory */
  float *owned;      /* non-NULL when the store owns this buffer */
} cx_named_tensor;

typedef struct cx_tensor_store {
  cx_named_tensor *t;
  int count, cap;
  void *map;           /* mmap base (safetensors) */
  size_t map_len;
  char **meta_keys, **meta_vals; /* __metadata__ */
  int meta_count;
} cx_tensor_store;

cx_tensor_store *cx_store_new(cx_err *e);
void cx_store_free(cx_tensor_store *s);
/* Adds a tensor, taking ownership of `data` (malloc'd). */
int cx_store_add(cx_tensor_store *s, const char *name, int ndim, const int64_t *shape, float *data, cx_err *e);
int cx_store_set_meta(cx_tensor_store *s, const char *key, const char *val, cx_err *e);
const char *cx_store_meta(const cx_tensor_store *s, const char *key);
const cx_named_tensor *cx_store_find(const cx_tensor_store *s, const char *name);
size_t cx_tensor_numel(const cx_named_tensor *t);

/* safetensors: 8-byte little-endian header length, JSON header, raw data. Only F32
 * tensors are accepted. Validation names the file and tensor in every error. */
int cx_safetensors_load(const char *path, cx_tensor_store **out, cx_err *e);
/* Parses a header held in memory (used by the loader and the fuzz target). data_len is
 * the size of the byte buffer after the header; offsets are checked against it. */
int cx_safetensors_parse_header(const char *json, size_t json_len, const uint8_t *data, size_t data_len,
                                cx_tensor_store *s, const char *path, cx_err *e);
/* Writes atomically (temp file + rename). */
int cx_safetensors_save(const cx_tensor_store *s, const char *path, cx_err *e);

#endif
