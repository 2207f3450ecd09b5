/* Keras .h5 reader and Mask R-CNN weight converter (see keras_h5.h). Validated by
 * tests/io/make_h5.py, which writes files in the Keras layout with h5py and checks the
 * converted tensors bit for bit against the synthetic-weights formula. */
#include "keras_h5.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "coco_classes.h"
#include "weights_table.h"

#define MAX_TENSOR_ELEMS ((long long)1 << 30)

/* ---------------------------------------------------------------------------------- */
/* String attributes (fixed or variable length, possibly empty or split)               */
/* ---------------------------------------------------------------------------------- */

typedef struct strlist {
  char **v;
  int n, cap;
} strlist;

static void strlist_free(strlist *l) {
  for (int i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = l->cap = 0;
}

static int strlist_push(strlist *l, const char *s, size_t len, cx_err *e) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 64;
    char **v = realloc(l->v, (size_t)cap * sizeof *v);
    if (!v) return cx_fail(e, "out of memory");
    l->v = v;
    l->cap = cap;
  }
  char *c = malloc(len + 1);
  if (!c) return cx_fail(e, "out of memory");
  memcpy(c, s, len);
  c[len] = 0;
  l->v[l->n++] = c;
  return 0;
}

/* Appends the strings of attribute `name` of obj. An attribute with zero elements is an
 * empty list whatever its HDF5 type (h5py writes an empty list as a float array). */
static int read_str_attr(hid_t obj, const char *objname, const char *name, strlist *out, cx_err *e) {
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return cx_fail(e, "cannot open attribute '%s' of '%s'", name, objname);
  hid_t space = H5Aget_space(a), type = H5Aget_type(a), mt = -1;
  int rc = -1;
  char *buf = NULL;
  char **vbuf = NULL;
  hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
  if (n < 0 || type < 0) {
    cx_fail(e, "cannot read attribute '%s' of '%s'", name, objname);
    goto done;
  }
  if (n == 0) {
    rc = 0;
    goto done;
  }
  if (H5Tget_class(type) != H5T_STRING) {
    cx_fail(e, "attribute '%s' of '%s' is not a list of strings", name, objname);
    goto done;
  }
  if (n > 1000000) {
    cx_fail(e, "attribute '%s' of '%s' has an implausible %lld entries", name, objname, (long long)n);
    goto done;
  }
  if (H5Tis_variable_str(type) > 0) {
    mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(type));
    vbuf = calloc((size_t)n, sizeof *vbuf);
    if (!vbuf || H5Aread(a, mt, vbuf) < 0) {
      free(vbuf);
      vbuf = NULL;
      cx_fail(e, "cannot read attribute '%s' of '%s'", name, objname);
      goto done;
    }
    rc = 0;
    for (hssize_t i = 0; i < n && rc == 0; i++)
      rc = strlist_push(out, vbuf[i] ? vbuf[i] : "", vbuf[i] ? strlen(vbuf[i]) : 0, e);
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mt, space, H5P_DEFAULT, vbuf);
#else
    H5Dvlen_reclaim(mt, space, H5P_DEFAULT, vbuf);
#endif
    free(vbuf);
  } else {
    size_t sz = H5Tget_size(type);
    if (sz == 0 || sz > 65536) {
      cx_fail(e, "attribute '%s' of '%s' has an implausible string size %zu", name, objname, sz);
      goto done;
    }
    buf = malloc((size_t)n * sz);
    if (!buf || H5Aread(a, type, buf) < 0) {
      cx_fail(e, "cannot read attribute '%s' of '%s'", name, objname);
      goto done;
    }
    rc = 0;
    for (hssize_t i = 0; i < n && rc == 0; i++) rc = strlist_push(out, buf + i * sz, strnlen(buf + i * sz, sz), e);
  }
done:
  free(buf);
  if (mt >= 0) H5Tclose(mt);
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  H5Aclose(a);
  return rc;
}

/* Reads `name`, or its split form name0, name1, ... (Keras >= 2.1 for big attributes).
 * Returns 1 when found, 0 when absent, -1 on error. */
static int read_names(hid_t obj, const char *objname, const char *name, strlist *out, cx_err *e) {
  if (H5Aexists(obj, name) > 0) return read_str_attr(obj, objname, name, out, e) ? -1 : 1;
  int found = 0;
  for (int k = 0;; k++) {
    char nm[128];
    snprintf(nm, sizeof nm, "%s%d", name, k);
    if (H5Aexists(obj, nm) <= 0) break;
    if (read_str_attr(obj, objname, nm, out, e)) return -1;
    found = 1;
  }
  return found;
}

/* ---------------------------------------------------------------------------------- */
/* Reading                                                                             */
/* ---------------------------------------------------------------------------------- */

static int is_model_layer(const char *layer) {
  static cx_weight_spec *tab;
  static int n;
  if (!tab) {
    cx_err e;
    if (cx_weight_table(CX_BACKBONE_RESNET101, 81, &tab, &n, &e)) return 0;
  }
  for (int i = 0; i < n; i++)
    if (!strcmp(tab[i].layer, layer)) return 1;
  return 0;
}

/* "<scope>/.../<var>:0" inside group `group` -> "<layer>/<var>". */
static int tensor_name(const char *group, const char *wname, char *out, size_t outlen, cx_err *e) {
  const char *last = strrchr(wname, '/');
  const char *var = last ? last + 1 : wname;
  size_t varlen = strcspn(var, ":");
  if (varlen == 0) return cx_fail(e, "layer '%s' has a weight with an empty name ('%s')", group, wname);
  char scope[256] = "";
  if (last) {
    const char *prev = last;
    while (prev > wname && prev[-1] != '/') prev--;
    size_t sl = (size_t)(last - prev);
    if (sl >= sizeof scope) sl = sizeof scope - 1;
    memcpy(scope, prev, sl);
    scope[sl] = 0;
  }
  /* A nested model (rpn_model) names its weights by sub-layer; a wrapper or an ordinary
   * layer by its own name, whatever scope TF gave the variable. */
  const char *layer = group;
  if (scope[0] && strcmp(scope, group) && !is_model_layer(group) && is_model_layer(scope)) layer = scope;
  if ((size_t)snprintf(out, outlen, "%s/%.*s", layer, (int)varlen, var) >= outlen)
    return cx_fail(e, "layer '%s': weight name '%s' is too long", group, wname);
  return 0;
}

static int read_dataset(hid_t g, const char *group, const char *wname, const char *tname, cx_tensor_store *s,
                        cx_err *e) {
  if (H5Lexists(g, wname, H5P_DEFAULT) <= 0)
    return cx_fail(e, "layer '%s' lists weight '%s' but the file has no such dataset", group, wname);
  hid_t d = H5Dopen2(g, wname, H5P_DEFAULT);
  if (d < 0) return cx_fail(e, "layer '%s': cannot open weight dataset '%s'", group, wname);
  hid_t type = H5Dget_type(d), space = H5Dget_space(d);
  int rc = -1;
  float *data = NULL;
  if (type < 0 || space < 0) {
    cx_fail(e, "layer '%s': cannot read weight '%s'", group, wname);
    goto done;
  }
  if (H5Tget_class(type) != H5T_FLOAT) {
    cx_fail(e, "layer '%s': weight '%s' is not floating point", group, wname);
    goto done;
  }
  int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0 || rank > CX_MAX_DIMS) {
    cx_fail(e, "layer '%s': weight '%s' has %d dimensions (at most %d expected)", group, wname, rank, CX_MAX_DIMS);
    goto done;
  }
  hsize_t dims[CX_MAX_DIMS] = {0};
  H5Sget_simple_extent_dims(space, dims, NULL);
  int64_t shape[CX_MAX_DIMS];
  long long numel = 1;
  for (int i = 0; i < rank; i++) {
    shape[i] = (int64_t)dims[i];
    numel *= (long long)dims[i];
    if (numel > MAX_TENSOR_ELEMS) {
      cx_fail(e, "layer '%s': weight '%s' is implausibly large", group, wname);
      goto done;
    }
  }
  data = malloc((size_t)(numel ? numel : 1) * sizeof(float));
  if (!data) {
    cx_fail(e, "out of memory reading layer '%s' weight '%s'", group, wname);
    goto done;
  }
  if (numel && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    free(data);
    data = NULL;
    cx_fail(e, "layer '%s': cannot read weight '%s' (damaged file?)", group, wname);
    goto done;
  }
  rc = cx_store_add(s, tname, rank, shape, data, e); /* takes ownership, also on failure */
  if (rc) cx_failctx(e, "layer '%s'", group);
done:
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  H5Dclose(d);
  return rc;
}

static int read_scalar_string(hid_t obj, const char *objname, const char *name, char *out, size_t outlen) {
  out[0] = 0;
  if (H5Aexists(obj, name) <= 0) return 0;
  strlist l = {0};
  cx_err tmp;
  if (read_str_attr(obj, objname, name, &l, &tmp) == 0 && l.n > 0) snprintf(out, outlen, "%s", l.v[0]);
  strlist_free(&l);
  return 0;
}

int cx_keras_h5_read(const char *path, cx_tensor_store **out, char *keras_version, size_t kv_len, cx_err *e) {
  *out = NULL;
  if (keras_version && kv_len) keras_version[0] = 0;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported through cx_err, not printed */
  FILE *probe = fopen(path, "rb");
  if (!probe) return cx_fail(e, "cannot open '%s': %s", path, strerror(errno));
  fclose(probe);
  if (H5Fis_hdf5(path) <= 0) return cx_fail(e, "'%s' is not an HDF5 file (expected Keras .h5 weights)", path);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return cx_fail(e, "cannot open '%s' as HDF5 (damaged file?)", path);
  hid_t root = -1;
  strlist layers = {0};
  cx_tensor_store *s = NULL;
  int rc = -1;
  const char *rootname = "/";
  int found = read_names(f, "/", "layer_names", &layers, e);
  if (found < 0) goto done;
  if (found) {
    root = H5Gopen2(f, "/", H5P_DEFAULT);
  } else if (H5Lexists(f, "model_weights", H5P_DEFAULT) > 0) {
    /* Written by model.save: weights under model_weights, optimizer state elsewhere. */
    root = H5Gopen2(f, "model_weights", H5P_DEFAULT);
    rootname = "/model_weights";
    if (root < 0) {
      cx_fail(e, "'%s': cannot open group 'model_weights'", path);
      goto done;
    }
    found = read_names(root, rootname, "layer_names", &layers, e);
    if (found < 0) goto done;
  }
  if (!found || root < 0) {
    cx_fail(e, "'%s' is not a Keras weights file: no 'layer_names' attribute at the root or in 'model_weights'",
            path);
    goto done;
  }
  if (keras_version) {
    read_scalar_string(root, rootname, "keras_version", keras_version, kv_len);
    if (!keras_version[0]) read_scalar_string(f, "/", "keras_version", keras_version, kv_len);
  }
  char backend[64];
  read_scalar_string(root, rootname, "backend", backend, sizeof backend);
  if (!backend[0]) read_scalar_string(f, "/", "backend", backend, sizeof backend);
  if (backend[0] && strcmp(backend, "tensorflow")) {
    cx_fail(e, "'%s' was written with the Keras '%s' backend; only TensorFlow files are supported", path, backend);
    goto done;
  }
  s = cx_store_new(e);
  if (!s) goto done;
  for (int i = 0; i < layers.n; i++) {
    const char *ln = layers.v[i];
    if (H5Lexists(root, ln, H5P_DEFAULT) <= 0) {
      cx_fail(e, "'%s': layer_names lists '%s' but there is no such group", path, ln);
      goto done;
    }
    hid_t g = H5Gopen2(root, ln, H5P_DEFAULT);
    if (g < 0) {
      cx_fail(e, "'%s': '%s' is not a group", path, ln);
      goto done;
    }
    strlist wn = {0};
    int wf = read_names(g, ln, "weight_names", &wn, e);
    if (wf < 0) {
      H5Gclose(g);
      cx_failctx(e, "'%s'", path);
      goto done;
    }
    for (int k = 0; k < wn.n; k++) {
      char tname[512];
      if (tensor_name(ln, wn.v[k], tname, sizeof tname, e) || read_dataset(g, ln, wn.v[k], tname, s, e)) {
        strlist_free(&wn);
        H5Gclose(g);
        cx_failctx(e, "'%s'", path);
        goto done;
      }
    }
    strlist_free(&wn);
    H5Gclose(g);
  }
  *out = s;
  s = NULL;
  rc = 0;
done:
  cx_store_free(s);
  strlist_free(&layers);
  if (root >= 0) H5Gclose(root);
  H5Fclose(f);
  return rc;
}

/* ---------------------------------------------------------------------------------- */
/* Validation                                                                          */
/* ---------------------------------------------------------------------------------- */

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t len) {
  size_t p = (size_t)snprintf(buf, len, "(");
  for (int i = 0; i < ndim && p < len; i++)
    p += (size_t)snprintf(buf + p, len - p, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (p < len) snprintf(buf + p, len - p, ndim == 1 ? ",)" : ")");
}

int cx_mrcnn_weights_check(const cx_tensor_store *s, const char *what, cx_backbone *bb, int *num_classes,
                           cx_err *e) {
  const cx_named_tensor *logits = cx_store_find(s, "mrcnn_class_logits/kernel");
  if (!logits) {
    char some[256] = "";
    size_t p = 0;
    for (int i = 0; i < s->count && i < 3 && p < sizeof some; i++)
      p += (size_t)snprintf(some + p, sizeof some - p, "%s'%s'", i ? ", " : "", s->t[i].name);
    if (s->count == 0)
      return cx_fail(e, "%s is not a matterport Mask R-CNN weights file: it holds no weights at all", what);
    return cx_fail(e,
                   "%s is not a matterport Mask R-CNN weights file: it has no layer 'mrcnn_class_logits' "
                   "(its %d weights start with %s)",
                   what, s->count, some);
  }
  char got[96], want[96];
  if (logits->ndim != 2 || logits->shape[0] != 1024 || logits->shape[1] < 2) {
    shape_str(logits->ndim, logits->shape, got, sizeof got);
    return cx_fail(e, "%s: layer 'mrcnn_class_logits' kernel has shape %s but (1024, NUM_CLASSES) with "
                      "NUM_CLASSES >= 2 is expected",
                   what, got);
  }
  int nc = (int)logits->shape[1];
  cx_backbone b = cx_store_find(s, "res4g_branch2a/kernel") ? CX_BACKBONE_RESNET101 : CX_BACKBONE_RESNET50;
  cx_weight_spec *tab;
  int n;
  if (cx_weight_table(b, nc, &tab, &n, e)) return -1;
  int problems = 0;
  char first[700] = "";
  for (int i = 0; i < n; i++) {
    const cx_named_tensor *t = cx_store_find(s, tab[i].name);
    char msg[700];
    msg[0] = 0;
    shape_str(tab[i].ndim, tab[i].shape, want, sizeof want);
    if (!t) {
      snprintf(msg, sizeof msg, "layer '%s' has no %s (expected shape %s)", tab[i].layer, tab[i].weight, want);
    } else {
      int same = t->ndim == tab[i].ndim;
      for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == tab[i].shape[d];
      if (!same) {
        shape_str(t->ndim, t->shape, got, sizeof got);
        snprintf(msg, sizeof msg, "layer '%s' %s has shape %s but %s is expected", tab[i].layer, tab[i].weight, got,
                 want);
      }
    }
    if (msg[0] && problems++ == 0) snprintf(first, sizeof first, "%s", msg);
  }
  for (int i = 0; i < s->count; i++) {
    int known = 0;
    for (int k = 0; k < n && !known; k++) known = !strcmp(tab[k].name, s->t[i].name);
    if (!known && problems++ == 0)
      snprintf(first, sizeof first, "unexpected weight '%s' (not part of a %s Mask R-CNN)", s->t[i].name,
               cx_backbone_name(b));
  }
  free(tab);
  if (problems)
    return cx_fail(e, "%s: %s, for a %s Mask R-CNN with %d classes (backbone and class count inferred from "
                      "the file)%s",
                   what, first, cx_backbone_name(b), nc, problems > 1 ? " (and more problems)" : "");
  *bb = b;
  *num_classes = nc;
  return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Class lists                                                                         */
/* ---------------------------------------------------------------------------------- */

void cx_class_list_free(char **names, int count) {
  if (!names) return;
  for (int i = 0; i < count; i++) free(names[i]);
  free(names);
}

int cx_class_list_read(const char *path, char ***names, int *count, cx_err *e) {
  *names = NULL;
  *count = 0;
  FILE *f = fopen(path, "r");
  if (!f) return cx_fail(e, "cannot open class list '%s': %s", path, strerror(errno));
  strlist l = {0};
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int lineno = 0, blank_at = 0;
  while ((len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    /* Trim surrounding spaces: names like "traffic light" keep their inner space. */
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    size_t pl = strlen(p);
    while (pl > 0 && (p[pl - 1] == ' ' || p[pl - 1] == '\t')) p[--pl] = 0;
    if (pl == 0) {
      if (!blank_at) blank_at = lineno;
      continue;
    }
    if (blank_at) {
      free(line);
      fclose(f);
      strlist_free(&l);
      return cx_fail(e, "class list '%s': line %d is empty (one name per line, background first)", path, blank_at);
    }
    for (size_t k = 0; k < pl; k++)
      if ((unsigned char)p[k] < 0x20) {
        free(line);
        fclose(f);
        strlist_free(&l);
        return cx_fail(e, "class list '%s': line %d contains a control character", path, lineno);
      }
    if (strlist_push(&l, p, pl, e)) {
      free(line);
      fclose(f);
      strlist_free(&l);
      return -1;
    }
  }
  free(line);
  int err = ferror(f);
  fclose(f);
  if (err) {
    strlist_free(&l);
    return cx_fail(e, "error reading class list '%s'", path);
  }
  if (l.n == 0) return cx_fail(e, "class list '%s' is empty", path);
  *names = l.v;
  *count = l.n;
  return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Conversion                                                                          */
/* ---------------------------------------------------------------------------------- */

int cx_convert_keras_h5(const char *in_path, const char *out_path, const char *classes_path,
                        cx_convert_result *res, cx_err *e) {
  char kv[64];
  cx_tensor_store *in = NULL, *out = NULL;
  char **names = NULL;
  int nnames = 0, rc = -1;
  cx_weight_spec *tab = NULL;
  char *names_json = NULL;
  if (cx_keras_h5_read(in_path, &in, kv, sizeof kv, e)) return -1;
  char what[600];
  snprintf(what, sizeof what, "'%s'", in_path);
  cx_backbone bb;
  int nc;
  if (cx_mrcnn_weights_check(in, what, &bb, &nc, e)) goto done;
  if (classes_path) {
    if (cx_class_list_read(classes_path, &names, &nnames, e)) goto done;
    if (nnames != nc) {
      cx_fail(e,
              "class list '%s' has %d names but the weights have %d classes (mrcnn_class_logits is (1024, %d)); "
              "give one name per class, background first",
              classes_path, nnames, nc, nc);
      goto done;
    }
    names_json = cx_class_names_json((const char *const *)names, nnames);
  } else {
    if (nc != CX_COCO_NUM_CLASSES) {
      cx_fail(e,
              "the weights have %d classes, not COCO's 81: give their names with --classes FILE "
              "(one name per line, background first)",
              nc);
      goto done;
    }
    names_json = cx_class_names_json(cx_coco_class_names, CX_COCO_NUM_CLASSES);
  }
  if (!names_json) {
    cx_fail(e, "out of memory");
    goto done;
  }
  /* Output in the canonical table order; the data moves from the input store. */
  int n;
  if (cx_weight_table(bb, nc, &tab, &n, e)) goto done;
  out = cx_store_new(e);
  if (!out) goto done;
  long long params = 0;
  for (int i = 0; i < n; i++) {
    cx_named_tensor *t = (cx_named_tensor *)cx_store_find(in, tab[i].name);
    float *data = t->owned;
    t->owned = NULL;
    params += (long long)cx_tensor_numel(t);
    if (cx_store_add(out, t->name, t->ndim, t->shape, data, e)) goto done;
  }
  const char *base = strrchr(in_path, '/');
  base = base ? base + 1 : in_path;
  char ncs[16];
  snprintf(ncs, sizeof ncs, "%d", nc);
  if (cx_store_set_meta(out, "format", "ctxdiff-mrcnn-1", e) ||
      cx_store_set_meta(out, "backbone", cx_backbone_name(bb), e) || cx_store_set_meta(out, "num_classes", ncs, e) ||
      cx_store_set_meta(out, "class_names", names_json, e) ||
      cx_store_set_meta(out, "keras_version", kv[0] ? kv : "unknown", e) ||
      cx_store_set_meta(out, "source", base, e))
    goto done;
  if (cx_safetensors_save(out, out_path, e)) goto done;
  if (res) {
    res->backbone = bb;
    res->num_classes = nc;
    res->tensors = n;
    res->params = params;
    snprintf(res->keras_version, sizeof res->keras_version, "%s", kv);
  }
  rc = 0;
done:
  free(tab);
  free(names_json);
  cx_class_list_free(names, nnames);
  cx_store_free(in);
  cx_store_free(out);
  return rc;
}
