/* ctxdiff segment: Mask R-CNN on image files. Per image, DIR/<stem>.json (seg_json.h) and
 * DIR/<stem>.overlay.png (overlay.h; not with --no-overlay), both written atomically. A failed image is
 * reported and skipped; the exit status is 0 only when every image was processed. Batches go
 * through cx_detect_submit/collect (two in flight), so on the GPU decoding and writing
 * overlap the network. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "coco_classes.h"
#include "commands.h"
#include "config.h"
#include "image_io.h"
#include "json.h"
#include "mrcnn.h"
#include "overlay.h"
#include "seg_json.h"
#include "synth.h"
#include "weights_table.h"

#define MAX_BATCH 64

static void segment_usage(FILE *f) {
  fprintf(f,
          "usage: ctxdiff segment [options] IMAGE|FOLDER...\n\n"
          "Detects objects in PNG/JPEG/WebP images; writes DIR/<name>.json (boxes, classes, scores,\n"
          "COCO RLE masks) and DIR/<name>.overlay.png for each image. A FOLDER stands for the\n"
          ".png/.jpg/.jpeg/.webp files in it, by name (hidden files left out).\n\n"
          "  --weights FILE     converted weights (.safetensors); default: $CTXDIFF_WEIGHTS, then\n"
          "                     ./coco.safetensors, else synthetic test weights (with a warning)\n"
          "  --device D         where to run: cpu (default), cuda (GPU 0) or cuda:N (needs a CUDA build and a GPU)\n"
          "  --precision P      GEMM arithmetic on cuda: fp32 (default, strict), fp16 or bf16\n"
          "  --config FILE      JSON object of matterport settings, e.g. {\"DETECTION_MIN_CONFIDENCE\": 0.5}\n"
          "  --set NAME=VALUE   one setting, applied after --config (repeatable)\n"
          "  --out DIR          output directory (created if missing; default: .)\n"
          "  --batch N          images per inference batch (default 1)\n"
          "  --recursive, -r    FOLDERs include their subfolders' images (symbolic links to folders\n"
          "                     are not followed)\n"
          "  --skip-existing    leave out images whose DIR/<name>.json exists: to continue an\n"
          "                     interrupted run over the same inputs\n"
          "  --coco-results F   also write F: every input's detections (from DIR/<name>.json, skipped\n"
          "                     ones included) as one COCO results list for pycocotools' loadRes /\n"
          "                     COCOeval; image_id = the file name's number (COCO's 000000397133.jpg\n"
          "                     -> 397133), category_id = the COCO id for COCO weights, else the class id\n"
          "  --no-overlay       write the JSON only (encoding the overlay PNG is the largest part\n"
          "                     of the writing: for throughput)\n"
          "  --threads N        CPU threads (default: OMP_NUM_THREADS, else every core)\n"
          "  --quiet            no progress output\n\n"
          "On cuda two batches are in flight: the next batch is decoded and submitted, and the\n"
          "previous one written, while the GPU runs the current one.\n");
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---------------------------------------------------------------------------------- */
/* Settings                                                                            */
/* ---------------------------------------------------------------------------------- */

/* A JSON value as the text cx_config_set accepts: numbers verbatim, lists as tuples. */
static int json_value_text(const cx_json *v, FILE *out) {
  switch (v->type) {
  case CX_JSON_NUMBER: fwrite(v->raw, 1, v->raw_len, out); return 0;
  case CX_JSON_STRING: fputs(v->string, out); return 0;
  case CX_JSON_TRUE: fputs("True", out); return 0;
  case CX_JSON_FALSE: fputs("False", out); return 0;
  case CX_JSON_ARRAY:
    fputc('(', out);
    for (const cx_json *c = v->child; c; c = c->next) {
      if (c != v->child) fputs(", ", out);
      if (c->type == CX_JSON_ARRAY || c->type == CX_JSON_OBJECT || c->type == CX_JSON_NULL) return -1;
      if (json_value_text(c, out)) return -1;
    }
    fputc(')', out);
    return 0;
  default: return -1;
  }
}

/* The whole of file `path` (what: "config file " etc., for the messages), at most max_mb MB */
static char *read_text(const char *path, const char *what, size_t max_mb, size_t *len, cx_err *e) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    cx_fail(e, "cannot open %s'%s': %s", what, path, strerror(errno));
    return NULL;
  }
  char *t = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n == cap) {
      if (cap >= max_mb << 20) {
        cx_fail(e, "%s'%s' is larger than %zu MB", what, path, max_mb);
        break;
      }
      cap = cap ? 2 * cap : 4096;
      char *nt = realloc(t, cap);
      if (!nt) {
        cx_fail(e, "out of memory reading '%s'", path);
        break;
      }
      t = nt;
    }
    const size_t r = fread(t + n, 1, cap - n, f);
    if (r == 0) {
      fclose(f);
      *len = n;
      return t ? t : calloc(1, 1);
    }
    n += r;
  }
  fclose(f);
  free(t);
  return NULL;
}

/* DIR/<stem>.json (malloc'd) */
static char *json_path_of(const char *dir, const char *stem) {
  char *p = malloc(strlen(dir) + strlen(stem) + 8);
  if (p) sprintf(p, "%s/%s.json", dir, stem);
  return p;
}

static int load_config_file(cx_config *cfg, const char *path, cx_err *e) {
  size_t len = 0;
  char *text = read_text(path, "config file ", 1, &len, e);
  if (!text) return -1;
  cx_json *j = cx_json_parse(text, len, path, e);
  if (!j) {
    free(text);
    return cx_failctx(e, "config file '%s'", path);
  }
  int rc = 0;
  if (j->type != CX_JSON_OBJECT) {
    rc = cx_fail(e, "config file '%s' must hold a JSON object of settings, e.g. {\"IMAGE_MAX_DIM\": 512}", path);
  } else {
    for (const cx_json *m = j->child; m && rc == 0; m = m->next) {
      char *buf = NULL;
      size_t blen = 0;
      FILE *mf = open_memstream(&buf, &blen);
      if (!mf) {
        rc = cx_fail(e, "out of memory");
        break;
      }
      int bad = json_value_text(m, mf);
      fclose(mf);
      if (bad)
        rc = cx_fail(e, "config file '%s': setting %s must be a number, a string or a list of those", path, m->key);
      else if (cx_config_set(cfg, m->key, buf, e))
        rc = cx_failctx(e, "config file '%s'", path);
      free(buf);
    }
  }
  cx_json_free(j);
  free(text);
  return rc;
}

/* ---------------------------------------------------------------------------------- */
/* Output                                                                              */
/* ---------------------------------------------------------------------------------- */

static int make_dirs(const char *dir, cx_err *e) {
  char *p = strdup(dir);
  if (!p) return cx_fail(e, "out of memory");
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    if (mkdir(p, 0777) && errno != EEXIST) {
      int err = errno;
      free(p);
      return cx_fail(e, "cannot create output directory '%s': %s", dir, strerror(err));
    }
    *s = '/';
  }
  if (mkdir(p, 0777) && errno != EEXIST) {
    int err = errno;
    free(p);
    return cx_fail(e, "cannot create output directory '%s': %s", dir, strerror(err));
  }
  free(p);
  struct stat st;
  if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return cx_fail(e, "output path '%s' is not a directory", dir);
  if (access(dir, W_OK | X_OK)) return cx_fail(e, "output directory '%s' is not writable: %s", dir, strerror(errno));
  return 0;
}

/* File name without directory and last extension. */
static void stem_of(const char *path, char *out, size_t len) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  snprintf(out, len, "%s", b);
  char *dot = strrchr(out, '.');
  if (dot && dot != out) *dot = 0;
  if (!out[0]) snprintf(out, len, "image");
}

/* ---- inputs: files, and folders expanded to their image files ------------------------- */

typedef struct strlist {
  char **v;
  int n, cap;
} strlist;

static int sl_push(strlist *l, char *s) {
  if (!s) return -1;
  if (l->n == l->cap) {
    const int cap = l->cap ? 2 * l->cap : 64;
    char **v = realloc(l->v, (size_t)cap * sizeof *v);
    if (!v) {
      free(s);
      return -1;
    }
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = s;
  return 0;
}

static void sl_free(strlist *l) {
  for (int i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int image_ext(const char *name) {
  const char *dot = strrchr(name, '.');
  if (!dot) return 0;
  return !strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") ||
         !strcasecmp(dot, ".webp");
}

static char *path_join(const char *dir, const char *name) {
  const size_t dl = strlen(dir), len = dl + strlen(name) + 2;
  char *p = malloc(len);
  if (p) snprintf(p, len, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", name);
  return p;
}

/* Appends the image files of folder `dir` to out, sorted by name, then (recursive) those of its
 * subfolders, each sorted by name: the same order on every run. Hidden entries are skipped;
 * symbolic links to files count, links to folders are not followed (no cycles). */
static int expand_dir(const char *dir, int recursive, int depth, strlist *out, int *subdirs_seen, cx_err *e) {
  if (depth > 64) return cx_fail(e, "'%s': folders nested more than 64 deep", dir);
  DIR *d = opendir(dir);
  if (!d) return cx_fail(e, "cannot read folder '%s': %s", dir, strerror(errno));
  strlist files = {0}, subs = {0};
  int rc = 0;
  struct dirent *de;
  while (!rc && (de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    char *p = path_join(dir, de->d_name);
    struct stat st;
    if (!p) {
      rc = cx_fail(e, "out of memory listing '%s'", dir);
    } else if (lstat(p, &st)) {
      free(p); /* vanished meanwhile */
    } else if (S_ISDIR(st.st_mode)) {
      *subdirs_seen = 1;
      if (recursive) rc = sl_push(&subs, p) ? cx_fail(e, "out of memory listing '%s'", dir) : 0;
      else free(p);
    } else if (image_ext(de->d_name) && !stat(p, &st) && S_ISREG(st.st_mode)) {
      rc = sl_push(&files, p) ? cx_fail(e, "out of memory listing '%s'", dir) : 0;
    } else {
      free(p);
    }
  }
  closedir(d);
  if (files.n) qsort(files.v, (size_t)files.n, sizeof *files.v, cmp_str);
  if (subs.n) qsort(subs.v, (size_t)subs.n, sizeof *subs.v, cmp_str);
  for (int i = 0; i < files.n && !rc; i++) {
    rc = sl_push(out, files.v[i]) ? cx_fail(e, "out of memory listing '%s'", dir) : 0;
    files.v[i] = NULL;
  }
  for (int i = 0; i < subs.n && !rc; i++) rc = expand_dir(subs.v[i], 1, depth + 1, out, subdirs_seen, e);
  sl_free(&files);
  sl_free(&subs);
  return rc;
}

/* The inputs as given, each folder replaced by its image files. A folder without any is an
 * error (its path named), as is an input that does not exist. */
static int collect_inputs(const char *const *args, int nargs, int recursive, strlist *out, cx_err *e) {
  for (int i = 0; i < nargs; i++) {
    struct stat st;
    if (stat(args[i], &st) == 0 && S_ISDIR(st.st_mode)) {
      const int before = out->n;
      int subdirs = 0;
      if (expand_dir(args[i], recursive, 0, out, &subdirs, e)) return -1;
      if (out->n == before)
        return cx_fail(e, "no .png/.jpg/.jpeg/.webp files in folder '%s'%s", args[i],
                       subdirs && !recursive ? " (it has subfolders: add --recursive to include them)" : "");
    } else if (sl_push(out, strdup(args[i]))) {
      return cx_fail(e, "out of memory");
    }
  }
  return 0;
}

/* stems->v[i]: the file stem of paths[i], made unique when an earlier input has it (name-2,
 * name-3, ...); a hash set keeps this linear for folders of many thousands of images */
static int unique_stems(char *const *paths, int n, strlist *stems) {
  size_t cap = 64;
  while (cap < 2 * (size_t)n + 2) cap <<= 1;
  int *tab = malloc(cap * sizeof *tab);
  if (!tab) return -1;
  for (size_t i = 0; i < cap; i++) tab[i] = -1;
  int rc = 0;
  for (int i = 0; i < n && !rc; i++) {
    char base[240], cand[256];
    stem_of(paths[i], base, sizeof base);
    snprintf(cand, sizeof cand, "%s", base);
    for (int k = 2;; k++) {
      uint64_t h = 1469598103934665603ULL;
      for (const char *c = cand; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
      size_t slot = (size_t)h & (cap - 1);
      while (tab[slot] >= 0 && strcmp(stems->v[tab[slot]], cand)) slot = (slot + 1) & (cap - 1);
      if (tab[slot] < 0) {
        if (sl_push(stems, strdup(cand))) rc = -1;
        else tab[slot] = i;
        break;
      }
      snprintf(cand, sizeof cand, "%s-%d", base, k);
    }
  }
  free(tab);
  return rc;
}

/* ---- --coco-results ---------------------------------------------------------------------- */

static int all_digits(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (*s < '0' || *s > '9') return 0;
  return 1;
}

/* One image's detections (its DIR/<stem>.json) appended to the COCO results list as matterport's
 * build_coco_results writes them: image_id, category_id, bbox [x, y, w, h], score,
 * segmentation (the same compressed RLE). Numbers are copied as written. */
static int coco_append(FILE *o, const char *json_path, long long image_id, const char *file_name, const int *cat_of,
                       int ncat, int *first, int *count, cx_err *e) {
  size_t len = 0;
  char *text = read_text(json_path, "", 1024, &len, e);
  if (!text) return -1;
  cx_json *j = cx_json_parse(text, len, json_path, e);
  int rc = 0;
  const cx_json *dets = j ? cx_json_get(j, "detections") : NULL;
  if (!j) rc = -1;
  else if (!dets || dets->type != CX_JSON_ARRAY) rc = cx_fail(e, "'%s' has no detections list", json_path);
  for (const cx_json *d = dets ? dets->child : NULL; d && !rc; d = d->next) {
    const cx_json *cid = cx_json_get(d, "class_id"), *sc = cx_json_get(d, "score"), *bb = cx_json_get(d, "bbox"),
                  *mk = cx_json_get(d, "mask");
    const cx_json *sz = mk ? cx_json_get(mk, "size") : NULL, *cn = mk ? cx_json_get(mk, "counts") : NULL;
    if (!cid || cid->type != CX_JSON_NUMBER || !sc || sc->type != CX_JSON_NUMBER || !bb ||
        bb->type != CX_JSON_ARRAY || cx_json_count(bb) != 4 || !sz || sz->type != CX_JSON_ARRAY || !cn ||
        cn->type != CX_JSON_STRING) {
      rc = cx_fail(e, "'%s': a detection without class_id, score, bbox or mask", json_path);
      break;
    }
    const int c = (int)cid->number;
    fprintf(o, "%s\n{\"image_id\": %lld, \"category_id\": %d, \"bbox\": %.*s, \"score\": %.*s, \"segmentation\": "
               "{\"size\": %.*s, \"counts\": ",
            *first ? "" : ",", image_id, (cat_of && c >= 0 && c < ncat) ? cat_of[c] : c, (int)bb->raw_len, bb->raw,
            (int)sc->raw_len, sc->raw, (int)sz->raw_len, sz->raw);
    cx_json_write_string(o, cn->string);
    fputc('}', o);
    if (file_name) {
      fputs(", \"file_name\": ", o);
      cx_json_write_string(o, file_name);
    }
    fputc('}', o);
    *first = 0;
    (*count)++;
  }
  cx_json_free(j);
  free(text);
  return rc;
}

/* Before hours of work: the results file can be created where it is asked for. */
static int check_results_path(const char *path, cx_err *e) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return cx_fail(e, "--coco-results %s: is a folder", path);
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
  if (!dir) return cx_fail(e, "out of memory");
  int rc = 0;
  if (stat(dir, &st) || !S_ISDIR(st.st_mode)) rc = cx_fail(e, "--coco-results %s: no folder '%s'", path, dir);
  else if (access(dir, W_OK | X_OK)) rc = cx_fail(e, "--coco-results %s: folder '%s' is not writable", path, dir);
  free(dir);
  return rc;
}

/* Writes `path` (atomically) from the results of every input that has one in out_dir. */
static int write_coco_results(const char *path, const char *out_dir, char *const *inputs, char *const *stems, int n,
                              const char *const *class_names, int nclass, int quiet, cx_err *e) {
  int numeric = 1, coco = nclass == CX_COCO_NUM_CLASSES;
  for (int i = 0; i < n && numeric; i++) numeric = all_digits(stems[i]) && strlen(stems[i]) <= 15;
  for (int i = 0; i < nclass && coco; i++) coco = class_names[i] && !strcmp(class_names[i], cx_coco_class_names[i]);
  char *buf = NULL;
  size_t len = 0;
  FILE *o = open_memstream(&buf, &len);
  if (!o) return cx_fail(e, "out of memory");
  fputc('[', o);
  int first = 1, count = 0, images = 0, rc = 0;
  for (int i = 0; i < n && !rc; i++) {
    char *jp = json_path_of(out_dir, stems[i]);
    if (!jp) {
      rc = cx_fail(e, "out of memory");
      break;
    }
    if (access(jp, F_OK) == 0) { /* no JSON: the image failed, and was reported */
      const long long id = numeric ? strtoll(stems[i], NULL, 10) : i + 1;
      rc = coco_append(o, jp, id, numeric ? NULL : inputs[i], coco ? cx_coco_category_ids : NULL, nclass, &first,
                       &count, e);
      images++;
    }
    free(jp);
  }
  fputs("\n]\n", o);
  fclose(o);
  if (!rc) rc = cx_write_file_atomic(path, buf, len, e);
  free(buf);
  if (rc) return cx_failctx(e, "--coco-results %s", path);
  if (!quiet)
    fprintf(stderr, "ctxdiff segment: %s: %d detections of %d images (image_id: %s; category_id: %s)\n", path, count,
            images, numeric ? "the file names' numbers" : "input positions from 1, file_name added",
            coco ? "COCO's ids" : "class ids");
  return 0;
}

/* Per input (folders can hold hundreds of thousands): the message only when it fails */
typedef struct job {
  const char *path, *stem;
  cx_rgb_image img;
  double decode_ms;
  int ok, failed;
  char *err; /* NULL when failed without memory for the message */
} job;

static void job_fail(job *jb, const char *prefix, const char *msg) {
  jb->failed = 1;
  free(jb->err);
  jb->err = malloc(strlen(prefix) + strlen(msg) + 1);
  if (jb->err) sprintf(jb->err, "%s%s", prefix, msg);
}

static const char *job_err(const job *jb) { return jb->err ? jb->err : "out of memory"; }

typedef struct run_ctx {
  cx_model *model;
  const char *out_dir;
  const char *weights_file;
  int synthetic;
  cx_seg_setting *settings;
  int nsettings;
  const char **class_names;
  int nclass;
  /* progress */
  int nimages, done, quiet;
  double t_start;
  int no_overlay; /* JSON only */
} run_ctx;

/* A job is finished (written, or failed): progress line, and its pixels are freed. */
static void report_job(run_ctx *rc, job *jb) {
  rc->done++;
  if (!rc->quiet && rc->nimages > 1) {
    const double s = (now_ms() - rc->t_start) / 1e3, rate = s > 0 ? rc->done / s : 0.0;
    char eta[48] = "";
    if (rc->done < rc->nimages && rate > 0) { /* time left at the rate so far */
      const long left = (long)((rc->nimages - rc->done) / rate + 0.5);
      if (left >= 3600) snprintf(eta, sizeof eta, ", %ldh%02ldm left", left / 3600, left / 60 % 60);
      else snprintf(eta, sizeof eta, ", %ldm%02lds left", left / 60, left % 60);
    }
    if (jb->ok)
      fprintf(stderr, "[%d/%d] %s -> %s/%s.json (%.2f images/s%s)\n", rc->done, rc->nimages, jb->path, rc->out_dir,
              jb->stem, rate, eta);
    else
      fprintf(stderr, "[%d/%d] %s FAILED: %s\n", rc->done, rc->nimages, jb->path, job_err(jb));
  } else if (!jb->ok && rc->nimages == 1) {
    fprintf(stderr, "ctxdiff segment: %s\n", job_err(jb));
  }
  cx_rgb_image_free(&jb->img);
}

/* DIR/<stem>.overlay.png: the image with masks, boxes and captions */
static int write_overlay(run_ctx *rc, const job *jb, const cx_detections *d, const char *png_path, cx_err *e) {
  char **labels = calloc((size_t)(d->count ? d->count : 1), sizeof *labels);
  uint8_t *canvas = malloc((size_t)jb->img.width * jb->img.height * 3);
  int ret = -1;
  if (!labels || !canvas) {
    cx_fail(e, "out of memory");
    goto done;
  }
  for (int i = 0; i < d->count; i++) {
    const char *name = cx_model_class_name(rc->model, d->class_ids[i]);
    char buf[256];
    snprintf(buf, sizeof buf, "%s %.3f", name ? name : "?", (double)d->scores[i]);
    labels[i] = strdup(buf);
  }
  memcpy(canvas, jb->img.rgb, (size_t)jb->img.width * jb->img.height * 3);
  if (!cx_overlay_draw(canvas, jb->img.width, jb->img.height, d, (const char *const *)labels, e) &&
      !cx_png_write_fast(png_path, jb->img.width, jb->img.height, 3, canvas, e))
    ret = 0;
done:
  if (labels)
    for (int i = 0; i < d->count; i++) free(labels[i]);
  free(labels);
  free(canvas);
  return ret;
}

static int write_outputs(run_ctx *rc, job *jb, const cx_detections *d, const cx_timings *t, int batch,
                         cx_err *e) {
  double t0 = now_ms();
  size_t dlen = strlen(rc->out_dir) + strlen(jb->stem) + 32;
  char *json_path = malloc(dlen), *png_path = malloc(dlen);
  int ret = -1, png_written = 0;
  if (!json_path || !png_path) {
    cx_fail(e, "out of memory");
    goto done;
  }
  snprintf(json_path, dlen, "%s/%s.json", rc->out_dir, jb->stem);
  snprintf(png_path, dlen, "%s/%s.overlay.png", rc->out_dir, jb->stem);
  if (!rc->no_overlay) {
    if (write_overlay(rc, jb, d, png_path, e)) goto done;
    png_written = 1;
  }

  char *jbuf = NULL;
  size_t jlen = 0;
  FILE *mf = open_memstream(&jbuf, &jlen);
  if (!mf) {
    cx_fail(e, "out of memory");
    goto done;
  }
  cx_seg_record r = {
      .image_file = jb->path, .width = jb->img.width, .height = jb->img.height,
      .weights_file = rc->weights_file,
      .backbone = cx_backbone_name(cx_model_config(rc->model)->BACKBONE),
      .num_classes = cx_model_config(rc->model)->NUM_CLASSES, .synthetic = rc->synthetic,
      .settings = rc->settings, .nsettings = rc->nsettings, .timings = t, .decode_ms = jb->decode_ms,
      .write_ms = now_ms() - t0, .batch_size = batch, .det = d,
      .class_names = rc->class_names, .nclass_names = rc->nclass,
  };
  int jrc = cx_seg_json_write(mf, &r, e);
  fclose(mf);
  if (jrc || cx_write_file_atomic(json_path, jbuf, jlen, e)) {
    free(jbuf);
    goto done;
  }
  free(jbuf);
  ret = 0;
done:
  if (ret && png_written) unlink(png_path); /* no half set of outputs: only what this call wrote */
  free(json_path);
  free(png_path);
  return ret;
}

/* Writes the outputs of one detected batch, one image per thread (overlay, PNG compression and
 * RLE take tens of milliseconds per image: on the GPU they would otherwise bound the
 * throughput), then reports its jobs in order. */
static void write_one(run_ctx *rc, job *jb, cx_detections *det, const cx_timings *t, int n) {
  cx_err we = {{0}};
  if (write_outputs(rc, jb, det, t, n, &we))
    job_fail(jb, "", we.msg);
  else
    jb->ok = 1;
}

static void write_batch(run_ctx *rc, job *jobs, const int *idx, int n, cx_detections *dets) {
  cx_timings t = *cx_model_timings(rc->model);
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
  for (int k = 0; k < n; k++) write_one(rc, &jobs[idx[k]], &dets[k], &t, n);
  for (int k = 0; k < n; k++) report_job(rc, &jobs[idx[k]]);
  cx_detections_free(dets, n);
}

static void batch_images(job *jobs, const int *idx, int n, cx_image *ims) {
  for (int k = 0; k < n; k++) {
    job *jb = &jobs[idx[k]];
    ims[k] = (cx_image){jb->img.width, jb->img.height, jb->img.rgb};
  }
}

/* Runs jobs[idx[0..n-1]] as one batch, synchronously; on a batch failure retries them one by
 * one. Needs no batch pending. */
static void run_batch(run_ctx *rc, job *jobs, const int *idx, int n) {
  cx_image ims[MAX_BATCH];
  cx_detections dets[MAX_BATCH];
  batch_images(jobs, idx, n, ims);
  cx_err e = {{0}};
  memset(dets, 0, sizeof dets);
  if (cx_detect(rc->model, ims, n, dets, &e)) {
    if (n > 1) {
      for (int k = 0; k < n; k++) run_batch(rc, jobs, &idx[k], 1);
      return;
    }
    job_fail(&jobs[idx[0]], "detection failed: ", e.msg);
    report_job(rc, &jobs[idx[0]]);
    return;
  }
  write_batch(rc, jobs, idx, n, dets);
}

/* Pipelining (cx_detect_submit/collect): while the GPU runs one batch, the next is decoded and
 * submitted and the one before is written (JSON, overlay PNG), so decoding and encoding
 * overlap the network. On the CPU submit computes, so this is the plain sequence. */
typedef struct pbatch {
  int idx[MAX_BATCH], n;
} pbatch;

typedef struct pqueue {
  pbatch b[CX_DETECT_DEPTH];
  int n;
} pqueue;

static pbatch pq_pop(pqueue *q) {
  pbatch b = q->b[0];
  memmove(q->b, q->b + 1, (size_t)(q->n - 1) * sizeof *q->b);
  q->n--;
  return b;
}

static void collect_batch(run_ctx *rc, job *jobs, pqueue *q);

/* Collects the oldest pending batch into *b / dets and returns 1: the caller writes it. When
 * the collect fails: finishes what the model still holds, runs again (synchronously) what it
 * dropped, then this batch, all written, and returns 0. */
static int collect_dets(run_ctx *rc, job *jobs, pqueue *q, pbatch *b_out, cx_detections *dets) {
  pbatch b = pq_pop(q);
  memset(dets, 0, MAX_BATCH * sizeof *dets);
  cx_err e = {{0}};
  if (!cx_detect_collect(rc->model, b.n, dets, &e)) {
    *b_out = b;
    return 1;
  }
  if (!rc->quiet) fprintf(stderr, "ctxdiff segment: a batch failed (%s); running it again\n", e.msg);
  while (q->n) {
    if (cx_detect_pending(rc->model)) {
      collect_batch(rc, jobs, q);
    } else {
      pbatch r = pq_pop(q);
      run_batch(rc, jobs, r.idx, r.n);
    }
  }
  run_batch(rc, jobs, b.idx, b.n);
  return 0;
}

/* Collects the oldest pending batch and writes it. */
static void collect_batch(run_ctx *rc, job *jobs, pqueue *q) {
  pbatch b;
  cx_detections dets[MAX_BATCH];
  if (collect_dets(rc, jobs, q, &b, dets)) write_batch(rc, jobs, b.idx, b.n, dets);
}

static void submit_batch(run_ctx *rc, job *jobs, pqueue *q, const int *idx, int n) {
  if (q->n == CX_DETECT_DEPTH) collect_batch(rc, jobs, q);
  cx_image ims[MAX_BATCH];
  batch_images(jobs, idx, n, ims);
  cx_err e = {{0}};
  if (cx_detect_submit(rc->model, ims, n, &e)) {
    /* e.g. a batch that needs a new memory plan while others are pending: drain, then once
     * more; failing again, the synchronous path retries image by image and reports */
    while (q->n) collect_batch(rc, jobs, q);
    if (cx_detect_submit(rc->model, ims, n, &e)) {
      run_batch(rc, jobs, idx, n);
      return;
    }
  }
  memcpy(q->b[q->n].idx, idx, (size_t)n * sizeof *idx);
  q->b[q->n].n = n;
  q->n++;
  /* on the CPU the batch is already computed: writing it now keeps one batch of full-size
   * masks in memory instead of two */
  if (!strcmp(cx_model_device(rc->model), "cpu")) collect_batch(rc, jobs, q);
}

/* ---------------------------------------------------------------------------------- */

int cx_cmd_segment(int argc, char **argv) {
  const char *weights = NULL, *config_file = NULL, *out_dir = ".", *device = "cpu", *precision = NULL;
  int batch = 1, quiet = 0, no_overlay = 0, recursive = 0, skip_existing = 0;
  const char *coco_results = NULL;
  strlist inputs = {0};
  strlist stems = {0};
  const char **sets = calloc((size_t)argc + 1, sizeof *sets);
  const char **images = calloc((size_t)argc + 1, sizeof *images);
  int nsets = 0, nimages = 0, status = 1;
  cx_model *model = NULL;
  job *jobs = NULL;
  cx_seg_setting *settings = NULL;
  const char **class_names = NULL;
  int nsettings = 0;
  char (*setting_vals)[256] = NULL;
  if (!sets || !images) {
    fprintf(stderr, "ctxdiff segment: out of memory\n");
    goto out;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
#define NEED_ARG()                                                        \
  if (i + 1 >= argc) {                                                    \
    fprintf(stderr, "ctxdiff segment: %s needs a value\n", a);           \
    status = 2;                                                           \
    goto out;                                                             \
  }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      segment_usage(stdout);
      status = 0;
      goto out;
    } else if (!strcmp(a, "--weights")) {
      NEED_ARG();
      weights = argv[++i];
    } else if (!strcmp(a, "--device")) {
      NEED_ARG();
      device = argv[++i];
    } else if (!strcmp(a, "--precision")) {
      NEED_ARG();
      precision = argv[++i];
    } else if (!strcmp(a, "--config")) {
      NEED_ARG();
      config_file = argv[++i];
    } else if (!strcmp(a, "--set")) {
      NEED_ARG();
      sets[nsets++] = argv[++i];
    } else if (!strcmp(a, "--out") || !strcmp(a, "-o")) {
      NEED_ARG();
      out_dir = argv[++i];
    } else if (!strcmp(a, "--batch")) {
      NEED_ARG();
      char *end;
      long b = strtol(argv[++i], &end, 10);
      if (*end || b < 1 || b > MAX_BATCH) {
        fprintf(stderr, "ctxdiff segment: --batch must be an integer from 1 to %d, got '%s'\n", MAX_BATCH, argv[i]);
        status = 2;
        goto out;
      }
      batch = (int)b;
    } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
      quiet = 1;
    } else if (!strcmp(a, "--no-overlay")) {
      no_overlay = 1;
    } else if (!strcmp(a, "--recursive") || !strcmp(a, "-r")) {
      recursive = 1;
    } else if (!strcmp(a, "--skip-existing")) {
      skip_existing = 1;
    } else if (!strcmp(a, "--threads")) {
      NEED_ARG();
      if ((status = cx_cli_threads("segment", argv[++i]))) goto out;
      status = 1;
    } else if (!strcmp(a, "--coco-results")) {
      NEED_ARG();
      coco_results = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "ctxdiff segment: unknown option '%s'\n\n", a);
      segment_usage(stderr);
      status = 2;
      goto out;
    } else {
      images[nimages++] = a;
    }
#undef NEED_ARG
  }
  if (nimages == 0) {
    segment_usage(stderr);
    status = 2;
    goto out;
  }
  /* Inputs: folders expanded, output names fixed (the same for the same inputs, so that
   * --skip-existing can continue a run), finished images left out with --skip-existing. */
  int ninputs = 0, nskipped = 0;
  {
    cx_err ie = {{0}};
    if (collect_inputs(images, nimages, recursive, &inputs, &ie)) {
      fprintf(stderr, "ctxdiff segment: %s\n", ie.msg);
      status = 2;
      goto out;
    }
    ninputs = inputs.n;
    jobs = calloc((size_t)ninputs, sizeof *jobs);
    if (!jobs || unique_stems(inputs.v, ninputs, &stems)) {
      fprintf(stderr, "ctxdiff segment: out of memory\n");
      goto out;
    }
    nimages = 0;
    for (int i = 0; i < ninputs; i++) {
      if (skip_existing) {
        char *jp = json_path_of(out_dir, stems.v[i]);
        if (!jp) {
          fprintf(stderr, "ctxdiff segment: out of memory\n");
          goto out;
        }
        const int done = access(jp, F_OK) == 0;
        free(jp);
        if (done) {
          nskipped++;
          continue;
        }
      }
      jobs[nimages].path = inputs.v[i];
      jobs[nimages].stem = stems.v[i];
      nimages++;
    }
    if (nskipped && !quiet)
      fprintf(stderr, "ctxdiff segment: %d of %d images skipped: their results are already in %s (--skip-existing)\n",
              nskipped, ninputs, out_dir);
    if (!nimages && !coco_results) {
      status = 0;
      goto out;
    }
  }
  {
    int idx;
    cx_err de;
    if (cx_device_parse(device, &idx, &de) < 0) {
      fprintf(stderr, "ctxdiff segment: --device: %s\n", de.msg);
      status = 2;
      goto out;
    }
    /* a missing GPU is reported before the weights are read and anything is written */
    if (cx_device_check(device, &de)) {
      fprintf(stderr, "ctxdiff segment: --device %s: %s\n", device, de.msg);
      goto out;
    }
  }

  /* Settings: defaults, then the config file, then --set in order. */
  cx_err e = {{0}};
  cx_config cfg, defaults;
  cx_config_default(&cfg);
  cx_config_default(&defaults);
  if (config_file && load_config_file(&cfg, config_file, &e)) {
    fprintf(stderr, "ctxdiff segment: %s\n", e.msg);
    status = 2;
    goto out;
  }
  for (int i = 0; i < nsets; i++)
    if (cx_config_set_kv(&cfg, sets[i], &e)) {
      fprintf(stderr, "ctxdiff segment: --set %s: %s\n", sets[i], e.msg);
      status = 2;
      goto out;
    }
  if (cx_config_validate(&cfg, &e)) {
    fprintf(stderr, "ctxdiff segment: invalid settings: %s\n", e.msg);
    status = 2;
    goto out;
  }
  if (make_dirs(out_dir, &e) || (coco_results && check_results_path(coco_results, &e))) {
    fprintf(stderr, "ctxdiff segment: %s\n", e.msg);
    goto out;
  }

  /* Weights: --weights, $CTXDIFF_WEIGHTS, ./coco.safetensors, else synthetic. */
  const char *env = getenv("CTXDIFF_WEIGHTS");
  if (!weights && env && env[0]) weights = env;
  if (!weights && access("coco.safetensors", R_OK) == 0) weights = "coco.safetensors";
  int synthetic = weights == NULL;
  if (synthetic) {
    fprintf(stderr,
            "ctxdiff segment: WARNING: no weights given (--weights, $CTXDIFF_WEIGHTS or ./coco.safetensors): "
            "using SYNTHETIC test weights (%s, %d classes); detections are meaningless. "
            "Get real weights with scripts/get-coco-weights.\n",
            cx_backbone_name(cfg.BACKBONE), cfg.NUM_CLASSES);
    cx_tensor_store *store = NULL;
    if (cx_synth_store(cfg.BACKBONE, cfg.NUM_CLASSES, &store, &e) ||
        cx_model_from_store(store, &cfg, &model, &e)) {
      fprintf(stderr, "ctxdiff segment: synthetic weights: %s\n", e.msg);
      goto out;
    }
  } else if (cx_model_open(weights, &cfg, &model, &e)) {
    fprintf(stderr, "ctxdiff segment: %s\n", e.msg);
    goto out;
  }

  if (strcmp(device, "cpu") || precision) {
    if (cx_model_set_device(model, device, precision, &e)) {
      fprintf(stderr, "ctxdiff segment: --device %s: %s\n", device, e.msg);
      goto out;
    }
  }

  /* Settings that differ from the defaults (backbone and classes come from the weights). */
  const cx_config *mc = cx_model_config(model);
  int ncfg = cx_config_count();
  settings = calloc((size_t)ncfg, sizeof *settings);
  setting_vals = calloc((size_t)ncfg, sizeof *setting_vals);
  int nclass = mc->NUM_CLASSES;
  class_names = calloc((size_t)nclass, sizeof *class_names);
  if (!settings || !setting_vals || !class_names) {
    fprintf(stderr, "ctxdiff segment: out of memory\n");
    goto out;
  }
  for (int i = 0; i < ncfg; i++) {
    const char *name = cx_config_name(i);
    char dv[256];
    if (!strcmp(name, "BACKBONE") || !strcmp(name, "NUM_CLASSES")) continue;
    if (cx_config_format(&defaults, name, dv, sizeof dv) || cx_config_format(mc, name, setting_vals[i], 256))
      continue;
    if (strcmp(dv, setting_vals[i])) settings[nsettings++] = (cx_seg_setting){name, setting_vals[i]};
  }
  for (int i = 0; i < nclass; i++) class_names[i] = cx_model_class_name(model, i);

  run_ctx rc = {model, out_dir, weights, synthetic, settings, nsettings, class_names, nclass, nimages, 0, quiet, 0,
                no_overlay};

  const double t_start = now_ms();
  rc.t_start = t_start;
  pqueue q = {.n = 0};
  for (int i = 0; i < nimages;) {
    int idx[MAX_BATCH], n = 0;
    while (i < nimages && n < batch) {
      /* the images still missing from the batch, decoded in parallel (a 1024x1024 PNG takes
       * ~20-30 ms: one thread could not feed a GPU), then taken in order; a failed one is
       * reported and the next image takes its place. With two batches in flight the oldest is
       * collected first and written in the same parallel region as this decoding: the host's
       * two big jobs per batch (decoding ~20 ms, overlay + JSON ~40 ms per 1024² image) share
       * the cores instead of taking turns while the GPU runs the other batch. */
      const int m = batch - n < nimages - i ? batch - n : nimages - i;
      pbatch wb = {.n = 0};
      cx_detections wdets[MAX_BATCH];
      cx_timings wt;
      if (q.n == CX_DETECT_DEPTH && collect_dets(&rc, jobs, &q, &wb, wdets)) wt = *cx_model_timings(model);
      else wb.n = 0;
#pragma omp parallel for schedule(dynamic, 1) if (m + wb.n > 1)
      for (int k = 0; k < wb.n + m; k++) {
        if (k < wb.n) { /* writes first: they are the longer tasks */
          write_one(&rc, &jobs[wb.idx[k]], &wdets[k], &wt, wb.n);
          continue;
        }
        job *jb = &jobs[i + k - wb.n];
        cx_err le = {{0}};
        const double t0 = now_ms();
        if (cx_image_load(jb->path, &jb->img, &le))
          job_fail(jb, "", le.msg[0] ? le.msg : "cannot load the image");
        else
          jb->decode_ms = now_ms() - t0;
      }
      if (wb.n) {
        for (int k = 0; k < wb.n; k++) report_job(&rc, &jobs[wb.idx[k]]);
        cx_detections_free(wdets, wb.n);
      }
      for (int k = 0; k < m; k++, i++) {
        if (jobs[i].failed)
          report_job(&rc, &jobs[i]);
        else
          idx[n++] = i;
      }
    }
    if (n) submit_batch(&rc, jobs, &q, idx, n);
  }
  while (q.n) collect_batch(&rc, jobs, &q);
  int failed = 0;
  for (int i = 0; i < nimages; i++) failed += !jobs[i].ok;
  if (failed && nimages > 1) {
    fprintf(stderr, "ctxdiff segment: %d of %d images failed:\n", failed, nimages);
    for (int i = 0; i < nimages; i++)
      if (!jobs[i].ok) fprintf(stderr, "  %s: %s\n", jobs[i].path, job_err(&jobs[i]));
  } else if (!quiet && nimages > 1) {
    double s = (now_ms() - t_start) / 1e3;
    fprintf(stderr, "ctxdiff segment: %d images in %.1f s (%.2f images/s), results in %s\n", nimages, s,
            s > 0 ? nimages / s : 0.0, out_dir);
  }
  status = failed ? 1 : 0;
  if (coco_results) {
    cx_err ce = {{0}};
    if (write_coco_results(coco_results, out_dir, inputs.v, stems.v, ninputs, class_names, nclass, quiet, &ce)) {
      fprintf(stderr, "ctxdiff segment: %s\n", ce.msg);
      status = 1;
    }
  }
out:
  if (jobs)
    for (int i = 0; i < nimages; i++) {
      cx_rgb_image_free(&jobs[i].img);
      free(jobs[i].err);
    }
  free(jobs);
  sl_free(&stems);
  sl_free(&inputs);
  free(settings);
  free(setting_vals);
  free(class_names);
  cx_model_free(model);
  free(sets);
  free(images);
  return status;
}
