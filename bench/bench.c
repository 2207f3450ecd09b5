/* ctxdiff bench: segmentation throughput on synthetic weights and the synthetic image.
 * One JSON line per configuration (backbone x size x batch): images/s and per-stage
 * milliseconds (median over iterations), with DETECTION_MIN_CONFIDENCE = 0 so that a full
 * set of detections flows through the mask head and the unmolding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "cpu_kernels.h"
#include "mrcnn.h"
#include "synth.h"
#ifdef CTXDIFF_HAVE_CUDA
#include "cuda_backend.h"
#endif

#define BENCH_SKIP 77 /* --device cuda where there is no CUDA device (or no CUDA build) */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Throughput with cx_detect_submit / _collect keeping two batches in flight (host molding,
 * copies, GPU graphs and the unmold of neighbouring batches overlap): images/s over `timed`
 * (>= 2) batches after `warm` warm-up batches (4: both slots have captured their graphs), or
 * -1 on error. */
static double pipelined_ips(cx_model *m, const cx_image *ims, int B, int warm, int timed, cx_detections *d0,
                            cx_detections *d1, cx_err *e) {
  const int total = warm + timed;
  cx_detections *dq[2] = {d0, d1};
  double t0 = now_ms();
  if (cx_detect_submit(m, ims, B, e) || cx_detect_submit(m, ims, B, e)) return -1;
  for (int k = 0; k < total; k++) {
    if (cx_detect_collect(m, B, dq[k % 2], e)) return -1;
    cx_detections_free(dq[k % 2], B);
    if (k == warm - 1) t0 = now_ms();
    if (k + 2 < total && cx_detect_submit(m, ims, B, e)) return -1;
  }
  return B * timed * 1000.0 / (now_ms() - t0);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int parse_list(const char *s, int *out, int max, int lo, int hi) {
  int n = 0;
  char *dup = strdup(s), *save = NULL;
  if (!dup) return -1;
  for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *end;
    long v = strtol(tok, &end, 10);
    if (*end || v < lo || v > hi || n == max) { free(dup); return -1; }
    out[n++] = (int)v;
  }
  free(dup);
  return n ? n : -1;
}

static int cmp_op_ms(const void *a, const void *b) {
  const double x = ((const cx_op_time *)a)->ms, y = ((const cx_op_time *)b)->ms;
  return x < y ? 1 : x > y ? -1 : 0;
}

static double tflops(double flops, double ms) { return ms > 0 ? flops / (ms * 1e-3) / 1e12 : 0; }

/* --profile's tables: stages, convolution kernels, then every op slowest first. */
static void print_profile(const cx_op_time *ops, int n, const char *title, int cuda) {
  static const char *const stage[6] = {"preprocess", "backbone/FPN", "RPN/proposals", "classifier/detection", "mask head", "unmold"};
  double st_ms[6] = {0}, st_fl[6] = {0}, total = 0;
  int st_n[6] = {0};
  for (int i = 0; i < n; i++) {
    const int s = ops[i].stage >= 0 && ops[i].stage < 6 ? ops[i].stage : 0;
    st_ms[s] += ops[i].ms;
    st_fl[s] += ops[i].flops;
    st_n[s]++;
    total += ops[i].ms;
  }
  printf("profile: %s (one batch, %s; ms per batch)\n", title,
         cuda ? "ops launched one by one, CUDA events between them" : "wall clock between ops");
  printf("  %-22s %9s %6s %5s %9s %8s\n", "stage", "ms", "%", "ops", "GFLOP", "TFLOP/s");
  for (int s = 0; s < 6; s++)
    printf("  %-22s %9.3f %6.1f %5d %9.1f %8.2f\n", stage[s], st_ms[s], total > 0 ? 100 * st_ms[s] / total : 0, st_n[s],
           st_fl[s] / 1e9, tflops(st_fl[s], st_ms[s]));
  printf("  %-22s %9.3f\n", "total", total);
  /* the convolution kernels that ran, by name (conv.cu's choice per layer) */
  char kn[64][40];
  double k_ms[64] = {0}, k_fl[64] = {0};
  int k_n[64] = {0}, nk = 0;
  for (int i = 0; i < n; i++) {
    if (!ops[i].kernel[0]) continue;
    int j = 0;
    while (j < nk && strcmp(kn[j], ops[i].kernel)) j++;
    if (j == nk) {
      if (nk == 64) continue;
      snprintf(kn[nk++], sizeof kn[0], "%s", ops[i].kernel);
    }
    k_ms[j] += ops[i].ms;
    k_fl[j] += ops[i].flops;
    k_n[j] += ops[i].calls;
  }
  printf("  %-30s %5s %9s %6s %9s %8s\n", "conv kernel", "calls", "ms", "%", "GFLOP", "TFLOP/s");
  for (int j = 0; j < nk; j++)
    printf("  %-30s %5d %9.3f %6.1f %9.1f %8.2f\n", kn[j], k_n[j], k_ms[j], total > 0 ? 100 * k_ms[j] / total : 0,
           k_fl[j] / 1e9, tflops(k_fl[j], k_ms[j]));
  cx_op_time *s = malloc((size_t)n * sizeof *s);
  if (!s) return;
  memcpy(s, ops, (size_t)n * sizeof *s);
  qsort(s, (size_t)n, sizeof *s, cmp_op_ms);
  printf("  %-4s %-44s %-30s %5s %9s %6s %9s %8s\n", "#", "op", "kernel", "calls", "ms", "%", "GFLOP", "TFLOP/s");
  for (int i = 0; i < n; i++)
    printf("  %-4d %-44s %-30s %5d %9.3f %6.1f %9.3f %8.2f\n", i + 1, s[i].name, s[i].kernel[0] ? s[i].kernel : "-",
           s[i].calls, s[i].ms, total > 0 ? 100 * s[i].ms / total : 0, s[i].flops / 1e9, tflops(s[i].flops, s[i].ms));
  free(s);
}

static void usage(void) {
  printf("usage: ctxdiff bench [--device cpu|cuda|cuda:N] [--precision fp32|fp16|bf16] [--backbone resnet101|resnet50|both] [--size N[,N...]]\n"
         "                    [--batch B[,B...]] [--iters N] [--warmup N] [--num-classes N] [--set NAME=VALUE]...\n"
         "                    [--gemm blas|own] [--conv winograd4|winograd2|im2col] [--threads N] [--profile]\n\n"
         "Times the whole segmentation (preprocessing through full-size masks) on synthetic weights\n"
         "and the synthetic image (size x size, so no resize), DETECTION_MIN_CONFIDENCE = 0.\n"
         "Prints one JSON line per configuration: images/s and per-stage milliseconds per batch\n"
         "(median of --iters runs after --warmup runs). Defaults: resnet101, 1024, batch 1, 3 iters, 1 warmup.\n"
         "--gemm and --conv pick the CPU GEMM (OpenBLAS or our own) and the 3x3 convolution path\n"
         "(Winograd F(4x4,3x3), F(2x2,3x3) or im2col) so they can be compared; --threads N the CPU\n"
         "threads (default: OMP_NUM_THREADS, else every core; the JSON line's \"threads\").\n"
         "--device cuda runs the GPU graph (--precision: GEMM arithmetic, default fp32 strict); it exits\n"
         "with status 77 and a message when this machine has no CUDA device or the build has no CUDA.\n"
         "Each line also gives gflop_per_batch (convolutions and dense layers, counted from the layer\n"
         "shapes) and tflops = that / median batch time (all stages, host ones included).\n"
         "With --device cuda, pipelined_images_per_s is the throughput with two batches in flight\n"
         "(cx_detect_submit/collect: molding, copies, GPU work and unmolding of neighbouring batches\n"
         "overlap), over max(--iters, 2) batches after 4 warm-up batches (none with --warmup 0);\n"
         "images_per_s is one batch at a time; gpu_mem_used_mb is the device memory in use after the\n"
         "pipelined run (cudaMemGetInfo: the whole device, other processes included).\n"
         "--profile adds, after each JSON line, one more batch timed op by op: a table of the stages, of\n"
         "the convolution kernels that ran (ms, GFLOP, TFLOP/s) and of every op (matterport's layer\n"
         "names), slowest first. On cuda the batch runs without the CUDA graphs, a CUDA event before\n"
         "every op; small ops include launch gaps, so the total exceeds the graph-replayed stages.\n"
         "On the CPU it is the wall clock between ops.\n");
}

int cx_cmd_bench(int argc, char **argv) {
  const char *device = "cpu", *precision = NULL;
  int sizes[8] = {1024}, nsizes = 1, batches[8] = {1}, nbatches = 1, iters = 3, warmup = 1, nc = 81;
  int bbs[2] = {CX_BACKBONE_RESNET101}, nbb = 1;
  const char *sets[64];
  int nsets = 0, profile = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
    if (!strcmp(a, "--profile")) { profile = 1; continue; }
    if (!v) { fprintf(stderr, "ctxdiff bench: option '%s' needs a value (see --help)\n", a); return 2; }
    i++;
    if (!strcmp(a, "--device")) {
      int idx;
      cx_err de;
      if (cx_device_parse(v, &idx, &de) < 0) { fprintf(stderr, "ctxdiff bench: --device: %s\n", de.msg); return 2; }
      device = v;
    } else if (!strcmp(a, "--precision")) {
      if (strcmp(v, "fp32") && strcmp(v, "fp16") && strcmp(v, "bf16")) { fprintf(stderr, "ctxdiff bench: --precision must be fp32, fp16 or bf16\n"); return 2; }
      precision = v;
    } else if (!strcmp(a, "--backbone")) {
      if (!strcmp(v, "resnet101")) { bbs[0] = CX_BACKBONE_RESNET101; nbb = 1; }
      else if (!strcmp(v, "resnet50")) { bbs[0] = CX_BACKBONE_RESNET50; nbb = 1; }
      else if (!strcmp(v, "both")) { bbs[0] = CX_BACKBONE_RESNET101; bbs[1] = CX_BACKBONE_RESNET50; nbb = 2; }
      else { fprintf(stderr, "ctxdiff bench: --backbone must be resnet101, resnet50 or both\n"); return 2; }
    } else if (!strcmp(a, "--size")) {
      if ((nsizes = parse_list(v, sizes, 8, 64, 4096)) < 0) { fprintf(stderr, "ctxdiff bench: --size needs multiples of 64 in 64..4096, comma separated\n"); return 2; }
      for (int k = 0; k < nsizes; k++)
        if (sizes[k] % 64) { fprintf(stderr, "ctxdiff bench: --size %d is not a multiple of 64\n", sizes[k]); return 2; }
    } else if (!strcmp(a, "--batch")) {
      if ((nbatches = parse_list(v, batches, 8, 1, 256)) < 0) { fprintf(stderr, "ctxdiff bench: --batch needs integers in 1..256, comma separated\n"); return 2; }
    } else if (!strcmp(a, "--iters")) {
      iters = atoi(v);
      if (iters < 1 || iters > 10000) { fprintf(stderr, "ctxdiff bench: --iters needs 1..10000\n"); return 2; }
    } else if (!strcmp(a, "--warmup")) {
      warmup = atoi(v);
      if (warmup < 0 || warmup > 1000) { fprintf(stderr, "ctxdiff bench: --warmup needs 0..1000\n"); return 2; }
    } else if (!strcmp(a, "--num-classes")) {
      nc = atoi(v);
      if (nc < 2 || nc > 100000) { fprintf(stderr, "ctxdiff bench: --num-classes needs 2..100000\n"); return 2; }
    } else if (!strcmp(a, "--gemm")) {
      if (cx_gemm_select(v)) { fprintf(stderr, "ctxdiff bench: --gemm must be blas or own (blas only when built with OpenBLAS)\n"); return 2; }
    } else if (!strcmp(a, "--conv")) {
      if (cx_conv_select(v)) { fprintf(stderr, "ctxdiff bench: --conv must be winograd4, winograd2 or im2col\n"); return 2; }
    } else if (!strcmp(a, "--threads")) {
      if (cx_cli_threads("bench", v)) return 2;
    } else if (!strcmp(a, "--set")) {
      if (nsets == 64) { fprintf(stderr, "ctxdiff bench: too many --set options\n"); return 2; }
      sets[nsets++] = v;
    } else {
      fprintf(stderr, "ctxdiff bench: unknown option '%s' (see --help)\n", a);
      return 2;
    }
  }
  int cuda_index;
  cx_err pe;
  const int cuda = cx_device_parse(device, &cuda_index, &pe) == 1;
  if (precision && !cuda && strcmp(precision, "fp32")) {
    fprintf(stderr, "ctxdiff bench: --precision %s needs --device cuda (the CPU path is fp32)\n", precision);
    return 2;
  }
  const char *gpu_name = "";
  if (cuda) {
#ifdef CTXDIFF_HAVE_CUDA
    if (cx_cuda_device_count() <= 0) {
      fprintf(stderr, "ctxdiff bench: --device cuda: no CUDA device (no GPU or no driver on this machine) - skipped\n");
      return BENCH_SKIP;
    }
#else
    fprintf(stderr, "ctxdiff bench: --device cuda: this build has no CUDA backend (rebuild with nvcc, -DCTXDIFF_CUDA=ON) - skipped\n");
    return BENCH_SKIP;
#endif
  }
  cx_err e;
  for (int ib = 0; ib < nbb; ib++)
    for (int is = 0; is < nsizes; is++) {
      int size = sizes[is];
      cx_config cfg;
      cx_config_default(&cfg);
      char buf[32];
      snprintf(buf, sizeof buf, "%d", size);
      if (cx_config_set(&cfg, "DETECTION_MIN_CONFIDENCE", "0", &e) || cx_config_set(&cfg, "IMAGE_MAX_DIM", buf, &e) ||
          cx_config_set(&cfg, "IMAGE_MIN_DIM", buf, &e)) {
        fprintf(stderr, "ctxdiff bench: %s\n", e.msg);
        return 1;
      }
      for (int k = 0; k < nsets; k++)
        if (cx_config_set_kv(&cfg, sets[k], &e)) { fprintf(stderr, "ctxdiff bench: --set %s: %s\n", sets[k], e.msg); return 2; }
      cx_tensor_store *store;
      cx_model *m;
      if (cx_synth_store((cx_backbone)bbs[ib], nc, &store, &e) || cx_model_from_store(store, &cfg, &m, &e)) {
        fprintf(stderr, "ctxdiff bench: %s\n", e.msg);
        return 1;
      }
      if (cuda && cx_model_set_device(m, device, precision ? precision : "fp32", &e)) {
        fprintf(stderr, "ctxdiff bench: --device %s: %s\n", device, e.msg);
        cx_model_free(m);
        return 1;
      }
#ifdef CTXDIFF_HAVE_CUDA
      if (cuda) gpu_name = cx_cuda_device_name();
#endif
      uint8_t *img = cx_synth_image(size, size, 0, &e);
      if (!img) { fprintf(stderr, "ctxdiff bench: %s\n", e.msg); cx_model_free(m); return 1; }
      for (int ibt = 0; ibt < nbatches; ibt++) {
        int B = batches[ibt];
        cx_image *ims = calloc((size_t)B, sizeof *ims);
        cx_detections *dets = calloc((size_t)B, sizeof *dets), *dets2 = calloc((size_t)B, sizeof *dets2);
        double *st[7];
        for (int k = 0; k < 7; k++) st[k] = calloc((size_t)iters, sizeof(double));
        if (!ims || !dets || !dets2 || !st[6]) { fprintf(stderr, "ctxdiff bench: out of memory\n"); return 1; }
        for (int k = 0; k < B; k++) ims[k] = (cx_image){size, size, img};
        int ndet = 0, mask_rows = 0;
        for (int it = 0; it < warmup + iters; it++) {
          if (cx_detect(m, ims, B, dets, &e)) { fprintf(stderr, "ctxdiff bench: %s\n", e.msg); return 1; }
          ndet = dets[0].count;
          mask_rows = 0;
          for (int k = 0; k < B; k++) mask_rows += dets[k].count;
          cx_detections_free(dets, B);
          if (it < warmup) continue;
          const cx_timings *t = cx_model_timings(m);
          double v[7] = {t->preprocess, t->backbone_fpn, t->rpn_proposals, t->classifier_detection, t->mask_head, t->unmold, t->total};
          for (int k = 0; k < 7; k++) st[k][it - warmup] = v[k];
          fprintf(stderr, "ctxdiff bench: %s %d batch %d: run %d/%d %.0f ms\n", cx_backbone_name((cx_backbone)bbs[ib]), size, B,
                  it - warmup + 1, iters, t->total);
        }
        double med[7];
        for (int k = 0; k < 7; k++) med[k] = median(st[k], iters);
        const double flops = cx_model_flops(m, size, size, B, mask_rows);
        double pips = 0;
        if (cuda) {
          const int warm = warmup > 0 ? 4 : 0, timed = iters > 2 ? iters : 2;
          fprintf(stderr, "ctxdiff bench: %s %d batch %d: pipelined, %d + %d batches\n",
                  cx_backbone_name((cx_backbone)bbs[ib]), size, B, warm, timed);
          if ((pips = pipelined_ips(m, ims, B, warm, timed, dets, dets2, &e)) < 0) {
            fprintf(stderr, "ctxdiff bench: pipelined: %s\n", e.msg);
            return 1;
          }
          /* device memory after the pipelined run: both slots' buffers, the scratch arena, graphs */
          double mem_mb = 0;
          char tac[224] = ""; /* CTXDIFF_CUDA_CONV=tune: what the tuning chose */
#ifdef CTXDIFF_HAVE_CUDA
          size_t used, total;
          if (cx_cuda_mem_used(&used, &total)) cx_cuda_clear_error(); /* informative only: 0 */
          else mem_mb = (double)used / (1024.0 * 1024.0);
          if (cx_cuda_conv_version() == 7) {
            char t[192];
            cx_cuda_conv_tactics(t, sizeof t);
            snprintf(tac, sizeof tac, "\"conv_tactics\":\"%s\",", t);
          }
#endif
          printf("{\"device\":\"cuda\",\"precision\":\"%s\",\"gpu\":\"%s\",\"pipelined_images_per_s\":%.4f,"
                 "\"gpu_mem_used_mb\":%.0f,%s",
                 precision ? precision : "fp32", gpu_name, pips, mem_mb, tac);
        } else
          printf("{\"device\":\"cpu\",\"gemm\":\"%s\",\"conv3x3\":\"%s\",\"threads\":%d,", cx_gemm_name(), cx_conv_name(),
                 cx_threads());
        printf("\"backbone\":\"%s\",\"size\":%d,\"batch\":%d,\"iters\":%d,\"num_classes\":%d,"
               "\"detections_per_image\":%d,\"images_per_s\":%.4f,\"ms_per_batch\":%.1f,"
               "\"stages_ms\":{\"preprocess\":%.2f,\"backbone_fpn\":%.2f,\"rpn_proposals\":%.2f,"
               "\"classifier_detection\":%.2f,\"mask_head\":%.2f,\"unmold\":%.2f},"
               "\"gflop_per_batch\":%.1f,\"tflops\":%.3f}\n",
               cx_backbone_name((cx_backbone)bbs[ib]), size, B, iters, nc, ndet, B * 1000.0 / med[6], med[6], med[0], med[1],
               med[2], med[3], med[4], med[5], flops / 1e9, tflops(flops, med[6]));
        fflush(stdout);
        if (profile) {
          cx_op_time *ops;
          int nops;
          if (cx_model_profile(m, ims, B, &ops, &nops, &e)) { fprintf(stderr, "ctxdiff bench: --profile: %s\n", e.msg); return 1; }
          char title[160];
          if (cuda)
            snprintf(title, sizeof title, "%s %dx%d batch %d %s on %s", cx_backbone_name((cx_backbone)bbs[ib]), size, size,
                     B, precision ? precision : "fp32", gpu_name);
          else
            snprintf(title, sizeof title, "%s %dx%d batch %d fp32 on the CPU (%s, %s)",
                     cx_backbone_name((cx_backbone)bbs[ib]), size, size, B, cx_gemm_name(), cx_conv_name());
          print_profile(ops, nops, title, cuda);
          free(ops);
          fflush(stdout);
        }
        for (int k = 0; k < 7; k++) free(st[k]);
        free(ims);
        free(dets);
        free(dets2);
      }
      free(img);
      cx_model_free(m);
    }
  return 0;
}
