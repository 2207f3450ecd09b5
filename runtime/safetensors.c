/* Named float32 tensor store and the safetensors format (8-byte LE header length, JSON
 * header, raw little-endian data), loaded by mmap. */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "tensor_store.h"

#define ST_MAX_HEADER (100u << 20) /* 100 MB: far above any Mask R-CNN header */

cx_tensor_store *cx_store_new(cx_err *e) {
  return cx_calloc(1, sizeof(cx_tensor_store), e, "tensor store");
}

void cx_store_free(cx_tensor_store *s) {
  if (!s) return;
  for (int i = 0; i < s->count; i++) {
    free(s->t[i].name);
    free(s->t[i].owned);
  }
  free(s->t);
  for (int i = 0; i < s->meta_count; i++) {
    free(s->meta_keys[i]);
    free(s->meta_vals[i]);
  }
  free(s->meta_keys);
  free(s->meta_vals);
  if (s->map) munmap(s->map, s->map_len);
  free(s);
}

size_t cx_tensor_numel(const cx_named_tensor *t) {
  size_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
  return n;
}

static int store_push(cx_tensor_store *s, const char *name, int ndim, const int64_t *shape, cx_err *e) {
  if (ndim < 0 || ndim > CX_MAX_DIMS) return cx_fail(e, "tensor '%s' has %d dimensions (at most %d supported)", name, ndim, CX_MAX_DIMS);
  if (cx_store_find(s, name)) return cx_fail(e, "tensor '%s' appears twice", name);
  if (s->count == s->cap) {
    int cap = s->cap ? s->cap * 2 : 64;
    cx_named_tensor *t = realloc(s->t, (size_t)cap * sizeof *t);
    if (!t) return cx_fail(e, "out of memory growing the tensor store");
    s->t = t;
    s->cap = cap;
  }
  cx_named_tensor *t = &s->t[s->count];
  memset(t, 0, sizeof *t);
  t->name = strdup(name);
  if (!t->name) return cx_fail(e, "out of memory");
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
  s->count++;
  return 0;
}

int cx_store_add(cx_tensor_store *s, const char *name, int ndim, const int64_t *shape, float *data, cx_err *e) {
  if (store_push(s, name, ndim, shape, e)) { free(data); return -1; }
  s->t[s->count - 1].data = data;
  s->t[s->count - 1].owned = data;
  return 0;
}

int cx_store_set_meta(cx_tensor_store *s, const char *key, const char *val, cx_err *e) {
  for (int i = 0; i < s->meta_count; i++)
    if (!strcmp(s->meta_keys[i], key)) {
      char *v = strdup(val);
      if (!v) return cx_fail(e, "out of memory");
      free(s->meta_vals[i]);
      s->meta_vals[i] = v;
      return 0;
    }
  char **k = realloc(s->meta_keys, (size_t)(s->meta_count + 1) * sizeof *k);
  if (!k) return cx_fail(e, "out of memory");
  s->meta_keys = k;
  char **v = realloc(s->meta_vals, (size_t)(s->meta_count + 1) * sizeof *v);
  if (!v) return cx_fail(e, "out of memory");
  s->meta_vals = v;
  s->meta_keys[s->meta_count] = strdup(key);
  s->meta_vals[s->meta_count] = strdup(val);
  if (!s->meta_keys[s->meta_count] || !s->meta_vals[s->meta_count]) {
    free(s->meta_keys[s->meta_count]);
    free(s->meta_vals[s->meta_count]);
    return cx_fail(e, "out of memory");
  }
  s->meta_count++;
  return 0;
}

const char *cx_store_meta(const cx_tensor_store *s, const char *key) {
  for (int i = 0; i < s->meta_count; i++)
    if (!strcmp(s->meta_keys[i], key)) return s->meta_vals[i];
  return NULL;
}

const cx_named_tensor *cx_store_find(const cx_tensor_store *s, const char *name) {
  for (int i = 0; i < s->count; i++)
    if (!strcmp(s->t[i].name, name)) return &s->t[i];
  return NULL;
}

int cx_safetensors_parse_header(const char *json, size_t json_len, const uint8_t *data, size_t data_len,
                                cx_tensor_store *s, const char *path, cx_err *e) {
  cx_json *root = cx_json_parse(json, json_len, path, e);
  if (!root) return cx_failctx(e, "%s: safetensors header", path);
  int rc = -1;
  if (root->type != CX_JSON_OBJECT) {
    cx_fail(e, "%s: safetensors header is not a JSON object", path);
    goto done;
  }
  for (const cx_json *m = root->child; m; m = m->next) {
    if (!strcmp(m->key, "__metadata__")) {
      if (m->type != CX_JSON_OBJECT) { cx_fail(e, "%s: __metadata__ is not an object", path); goto done; }
      for (const cx_json *kv = m->child; kv; kv = kv->next) {
        if (kv->type != CX_JSON_STRING) { cx_fail(e, "%s: __metadata__ value '%s' is not a string", path, kv->key); goto done; }
        if (cx_store_set_meta(s, kv->key, kv->string, e)) goto done;
      }
      continue;
    }
    const cx_json *dt = cx_json_get(m, "dtype"), *sh = cx_json_get(m, "shape"), *off = cx_json_get(m, "data_offsets");
    if (m->type != CX_JSON_OBJECT || !dt || dt->type != CX_JSON_STRING || !sh || sh->type != CX_JSON_ARRAY || !off ||
        off->type != CX_JSON_ARRAY || cx_json_count(off) != 2) {
      cx_fail(e, "%s: tensor '%s' needs dtype, shape and data_offsets [begin, end]", path, m->key);
      goto done;
    }
    if (strcmp(dt->string, "F32")) {
      cx_fail(e, "%s: tensor '%s' has dtype %s; only F32 is supported (convert the file with ctxdiff convert)", path, m->key, dt->string);
      goto done;
    }
    int ndim = cx_json_count(sh);
    if (ndim > CX_MAX_DIMS) { cx_fail(e, "%s: tensor '%s' has %d dimensions (at most %d)", path, m->key, ndim, CX_MAX_DIMS); goto done; }
    int64_t shape[CX_MAX_DIMS];
    double numel = 1;
    int d = 0;
    for (const cx_json *x = sh->child; x; x = x->next, d++) {
      if (x->type != CX_JSON_NUMBER || !(x->number >= 0) || x->number > 1e12 || x->number != floor(x->number)) {
        cx_fail(e, "%s: tensor '%s' has an invalid shape entry", path, m->key);
        goto done;
      }
      shape[d] = (int64_t)x->number;
      numel *= x->number;
    }
    double b = off->child->number, en = off->child->next->number;
    /* Range first: casting an out-of-range double to an integer is undefined. */
    if (off->child->type != CX_JSON_NUMBER || off->child->next->type != CX_JSON_NUMBER || !(b >= 0) || !(en >= b) ||
        en > 9.0e15 || b != floor(b) || en != floor(en)) {
      cx_fail(e, "%s: tensor '%s' has invalid data_offsets", path, m->key);
      goto done;
    }
    if (en - b != numel * 4) {
      cx_fail(e, "%s: tensor '%s' has %.0f bytes of data but its shape needs %.0f", path, m->key, en - b, numel * 4);
      goto done;
    }
    if (en > (double)data_len) {
      cx_fail(e, "%s: tensor '%s' ends at byte %.0f of the data but the file holds only %zu bytes (truncated file?)", path, m->key, en, data_len);
      goto done;
    }
    if (store_push(s, m->key, ndim, shape, e)) { cx_failctx(e, "%s", path); goto done; }
    cx_named_tensor *t = &s->t[s->count - 1];
    const uint8_t *src = data ? data + (size_t)b : NULL;
    if (src && ((uintptr_t)src % sizeof(float)) != 0) { /* misaligned: copy */
      t->owned = malloc((size_t)(en - b) ? (size_t)(en - b) : 1);
      if (!t->owned) { cx_fail(e, "out of memory copying tensor '%s'", m->key); goto done; }
      memcpy(t->owned, src, (size_t)(en - b));
      t->data = t->owned;
    } else {
      t->data = (const float *)src;
    }
  }
  rc = 0;
done:
  cx_json_free(root);
  return rc;
}

int cx_safetensors_load(const char *path, cx_tensor_store **out, cx_err *e) {
  *out = NULL;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return cx_fail(e, "cannot open weights file '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    return cx_fail(e, "weights file '%s' is not a regular file", path);
  }
  size_t len = (size_t)st.st_size;
  if (len < 8) {
    close(fd);
    return cx_fail(e, "weights file '%s' is %zu bytes: too short to be safetensors", path, len);
  }
  void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return cx_fail(e, "cannot map weights file '%s': %s", path, strerror(errno));
  const uint8_t *p = map;
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
  if (hlen == 0 || hlen > ST_MAX_HEADER || hlen > len - 8) {
    int hdf5 = len >= 4 && !memcmp(p, "\x89HDF", 4);
    munmap(map, len);
    if (hdf5)
      return cx_fail(e, "'%s' is a Keras HDF5 file, not safetensors: convert it first with 'ctxdiff convert %s OUT.safetensors'", path, path);
    return cx_fail(e, "'%s' is not a safetensors file (header length %llu does not fit in %zu bytes)", path, (unsigned long long)hlen, len);
  }
  cx_tensor_store *s = cx_store_new(e);
  if (!s) { munmap(map, len); return -1; }
  s->map = map;
  s->map_len = len;
  if (cx_safetensors_parse_header((const char *)p + 8, (size_t)hlen, p + 8 + hlen, len - 8 - hlen, s, path, e)) {
    cx_store_free(s);
    return -1;
  }
  *out = s;
  return 0;
}

static void put_json_str(FILE *f, const char *s) { cx_json_write_string(f, s); }

int cx_safetensors_save(const cx_tensor_store *s, const char *path, cx_err *e) {
  /* Header first, in memory, so its length is known. */
  char *hdr = NULL;
  size_t hlen = 0;
  FILE *h = open_memstream(&hdr, &hlen);
  if (!h) return cx_fail(e, "out of memory writing safetensors header");
  fputc('{', h);
  int first = 1;
  if (s->meta_count) {
    fputs("\"__metadata__\":{", h);
    for (int i = 0; i < s->meta_count; i++) {
      if (i) fputc(',', h);
      put_json_str(h, s->meta_keys[i]);
      fputc(':', h);
      put_json_str(h, s->meta_vals[i]);
    }
    fputc('}', h);
    first = 0;
  }
  uint64_t off = 0;
  for (int i = 0; i < s->count; i++) {
    const cx_named_tensor *t = &s->t[i];
    if (!first) fputc(',', h);
    first = 0;
    put_json_str(h, t->name);
    fputs(":{\"dtype\":\"F32\",\"shape\":[", h);
    for (int d = 0; d < t->ndim; d++) fprintf(h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    uint64_t bytes = (uint64_t)cx_tensor_numel(t) * 4;
    fprintf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + bytes));
    off += bytes;
  }
  fputc('}', h);
  fflush(h);
  while (hlen % 8) { fputc(' ', h); fflush(h); } /* pad so the data starts 8-byte aligned */
  fclose(h);

  size_t plen = strlen(path);
  char *tmp = malloc(plen + 32);
  if (!tmp) { free(hdr); return cx_fail(e, "out of memory"); }
  snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    cx_fail(e, "cannot write '%s': %s", path, strerror(errno));
    free(tmp); free(hdr);
    return -1;
  }
  uint8_t lenbuf[8];
  for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
  int ok = fwrite(lenbuf, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen;
  for (int i = 0; ok && i < s->count; i++) {
    size_t n = cx_tensor_numel(&s->t[i]);
    ok = fwrite(s->t[i].data, sizeof(float), n, f) == n; /* x86/ARM hosts are little-endian */
  }
  ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok = (fclose(f) == 0) && ok;
  free(hdr);
  if (!ok || rename(tmp, path)) {
    cx_fail(e, "cannot write '%s': %s", path, strerror(errno));
    unlink(tmp);
    free(tmp);
    return -1;
  }
  free(tmp);
  return 0;
}
