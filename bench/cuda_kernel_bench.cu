/* cuda_kernel_bench — timings of the CUDA kernels (kernels/cuda) at Mask R-CNN shapes, next to
 * a cuBLAS baseline for the convolutions (the same GEMM M x N x K without the im2col gather,
 * i.e. an optimistic bound for an implicit GEMM): cublasSgemm in default math mode (strict
 * fp32, no TF32) and cublasGemmEx fp16 x fp16 -> fp32 with fp32 compute.
 * Each conv case is timed with both kernel versions of conv.cu (cx_cuda_set_conv_version: v1,
 * then v2 forced even where the automatic choice would keep v1) in each precision, so one run
 * shows the A/B next to cuBLAS (which one runs by default: pick_v2 in conv.cu).
 * 3x3 / stride 1 / pad 1 cases also time the fp32 Winograd F(4x4,3x3) path (winograd.cu, the
 * default for them in fp32; conv version auto for its GEMMs), reported as the direct
 * convolution's FLOP over its time ("effective" TFLOP/s) and as its speed-up over f32 v2; the
 * ms line adds its 36 tile GEMMs timed alone (the rest is the transforms' memory round trip).
 * "a16 v2" / "a16 auto" / "a16 v4": fp16 with 16-bit weights and 16-bit activations in and out
 * (cx_cuda_conv2d_io, the fp16 backbone's convs) on v2 forced, on the automatic choice (v3,
 * cp.async, where cout % 8 == 0) and with v4's 256 x 128 tiles (CTXDIFF_CUDA_CONV=v4: where
 * unsplit 128-wide v3 tiles run, else as auto); "a16 v5" / "a16 v6" the wgmma kernels there
 * (128 x 128 and 128 x 256 tiles; sm_90a builds on an H100/H200 only, else 0); 0 where
 * cin % 16 != 0.
 * A second table times split-K (automatic, as shipped) against split-K off on the shapes whose
 * grids leave SMs idle.
 * Timing only; correctness is `ctxdiff validate --device cuda`. Median of ITERS runs after
 * two warm-ups, CUDA events on the legacy default stream.
 *
 *   cuda_kernel_bench [--iters N]      exit 77 when there is no CUDA device */
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "cuda_common.cuh" /* cx_cuda_gemm_f32_batched: Winograd's tile GEMMs timed alone */

static int g_iters = 10;

#define BCHECK(call)                                                                          \
  do {                                                                                        \
    cudaError_t e_ = (call);                                                                  \
    if (e_ != cudaSuccess) {                                                                  \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      exit(1);                                                                                \
    }                                                                                         \
  } while (0)
#define BLASCHECK(call)                                                              \
  do {                                                                               \
    cublasStatus_t s_ = (call);                                                      \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                               \
      fprintf(stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #call, (int)s_); \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)

static void lib_check(const char *what) {
  if (cx_cuda_sync() || cx_cuda_last_error()) {
    fprintf(stderr, "%s: %s\n", what, cx_cuda_last_error());
    exit(1);
  }
}

static float *host_random(size_t n, float scale) {
  float *h = (float *)malloc(n * sizeof(float));
  if (!h) exit(1);
  unsigned s = 12345u;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    h[i] = scale * ((float)(s >> 8) / 16777216.0f * 2.0f - 1.0f);
  }
  return h;
}

static float *dev_random(size_t n, float scale) {
  float *h = host_random(n, scale);
  float *d = (float *)cx_cuda_malloc(n * sizeof(float));
  if (!d || cx_cuda_upload(d, h, n * sizeof(float))) lib_check("upload");
  free(h);
  return d;
}

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

/* median ms of fn(arg) */
template <typename F>
static float time_ms(F fn) {
  cudaEvent_t a, b;
  BCHECK(cudaEventCreate(&a));
  BCHECK(cudaEventCreate(&b));
  float t[64];
  const int iters = g_iters < 64 ? g_iters : 64;
  for (int i = 0; i < 2; i++) fn();
  for (int i = 0; i < iters; i++) {
    BCHECK(cudaEventRecord(a, 0));
    fn();
    BCHECK(cudaEventRecord(b, 0));
    BCHECK(cudaEventSynchronize(b));
    BCHECK(cudaEventElapsedTime(&t[i], a, b));
  }
  lib_check("timed op");
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  qsort(t, (size_t)iters, sizeof(float), cmp_float);
  return t[iters / 2];
}

struct conv_case {
  const char *name;
  int n, h, w, cin, cout, k, s, pad;
};

/* The case's descriptor (weights not set) and its GEMM view M x N x K */
static cx_conv2d_desc case_desc(const conv_case &c, long long *M, long long *N, long long *K) {
  cx_conv2d_desc d = {c.k, c.k, c.cin, c.cout, c.s, c.pad, c.pad, c.pad, c.pad, NULL, NULL, NULL, 0, NULL, 0};
  const int ho = cx_conv2d_out(c.h, c.k, c.s, c.pad, c.pad), wo = cx_conv2d_out(c.w, c.k, c.s, c.pad, c.pad);
  *M = (long long)c.n * ho * wo;
  *N = c.cout;
  *K = (long long)c.k * c.k * c.cin;
  return d;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--iters") && i + 1 < argc) g_iters = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: cuda_kernel_bench [--iters N]\n");
      return 2;
    }
  }
  if (g_iters < 1) g_iters = 1;
  if (cx_cuda_device_count() <= 0) {
    fprintf(stderr, "cuda_kernel_bench: no CUDA device - skipped\n");
    return 77;
  }
  if (cx_cuda_init(0)) {
    fprintf(stderr, "cuda_kernel_bench: %s\n", cx_cuda_last_error());
    return 1;
  }
  printf("cuda_kernel_bench: %s, median of %d\n", cx_cuda_device_name(), g_iters);
  const cx_backend *be = cx_backend_cuda();
  cublasHandle_t blas;
  BLASCHECK(cublasCreate(&blas));
  BLASCHECK(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH)); /* no TF32 for sgemm */

  static const conv_case cases[] = {
      {"stem 7x7/2 3->64 @1024", 1, 1024, 1024, 3, 64, 7, 2, 3},
      {"res2 3x3 64->64 @256", 1, 256, 256, 64, 64, 3, 1, 1},
      {"res4 3x3 256->256 @64", 1, 64, 64, 256, 256, 3, 1, 1},
      {"res4 1x1 1024->256 @64", 1, 64, 64, 1024, 256, 1, 1, 0},
      {"fpn P2 3x3 256->256 @256", 1, 256, 256, 256, 256, 3, 1, 1},
      {"mask 3x3 256->256 100x14x14", 100, 14, 14, 256, 256, 3, 1, 1},
      {"cls 7x7 256->1024 1000 rois", 1000, 7, 7, 256, 1024, 7, 1, 0},
      {"res5 3x3 512->512 @32", 1, 32, 32, 512, 512, 3, 1, 1},
      {"fc 1024->1024 1000 rows", 1000, 1, 1, 1024, 1024, 1, 1, 0},
      {"mask logits 1x1 256->81 100x28x28", 100, 28, 28, 256, 81, 1, 1, 0},
      {"rpn class 1x1 512->6 @256", 1, 256, 256, 512, 6, 1, 1, 0},
      {"res5 1x1 2048->512 @32", 1, 32, 32, 2048, 512, 1, 1, 0},
      {"res5 1x1 512->2048 @32", 1, 32, 32, 512, 2048, 1, 1, 0},
  };
  printf("\n%-34s %7s | %8s %8s | %8s %8s | %8s %8s | %8s %8s %8s %8s %8s %8s | %8s %8s | %8s %6s   (TFLOP/s)\n",
         "conv (implicit GEMM)", "GFLOP", "f32 v1", "f32 v2", "f16 v1", "f16 v2", "bf16 v1", "bf16 v2", "f16 w16",
         "a16 v2", "a16 auto", "a16 v4", "a16 v5", "a16 v6", "cublas32", "cublas16", "f32 wino", "vs v2");
  for (const conv_case &c : cases) {
    long long M, N, K;
    cx_conv2d_desc d = case_desc(c, &M, &N, &K);
    const double gflop = 2.0 * M * N * K * 1e-9;
    float *x = dev_random((size_t)c.n * c.h * c.w * c.cin, 1.0f);
    float *wt = dev_random((size_t)K * N, 0.05f);
    float *bias = dev_random((size_t)N, 0.1f);
    float *y = (float *)cx_cuda_malloc((size_t)M * N * sizeof(float));
    d.kernel = wt;
    d.bias = bias;
    float ms[3][2]; /* [precision][version - 1] */
    for (int p = 0; p < 3; p++) {
      cx_cuda_set_precision((cx_precision)p);
      for (int v = 1; v <= 2; v++) {
        cx_cuda_set_conv_version(v);
        ms[p][v - 1] = time_ms([&] { be->conv2d(&d, x, c.n, c.h, c.w, y, NULL, 1, NULL); });
      }
    }
    /* fp16 v2 reading weights converted once to 16 bits (what fp16 models run) */
    float ms_w16, ms_a16 = -1.0f, ms_a16v2 = -1.0f, ms_a16v4 = -1.0f, ms_a16v5 = -1.0f, ms_a16v6 = -1.0f;
    {
      float *hk = host_random((size_t)K * N, 0.05f);
      void *k16 = cx_cuda_weights16_upload(CX_PREC_FP16, hk, (size_t)K * N);
      free(hk);
      if (!k16) lib_check("16-bit weight upload");
      cx_conv2d_desc d16 = d;
      d16.kernel = NULL;
      d16.kernel16 = k16;
      d16.kernel16_prec = CX_PREC_FP16;
      cx_cuda_set_precision(CX_PREC_FP16);
      cx_cuda_set_conv_version(2);
      ms_w16 = time_ms([&] { be->conv2d(&d16, x, c.n, c.h, c.w, y, NULL, 1, NULL); });
      /* and with 16-bit activations in and out (the fp16 backbone since v3), where cin % 16 == 0 */
      if (c.cin % 16 == 0 && c.cout % 4 == 0) {
        void *x16 = cx_cuda_malloc((size_t)c.n * c.h * c.w * c.cin * 2), *y16 = cx_cuda_malloc((size_t)M * N * 2);
        if (!x16 || !y16 || cx_cuda_to16(x, x16, (size_t)c.n * c.h * c.w * c.cin)) lib_check("16-bit activations");
        cx_cuda_set_conv_version(0); /* the shipped choice (v3 where cout % 8 == 0) */
        ms_a16 = time_ms([&] { cx_cuda_conv2d_io(&d16, x16, 1, c.n, c.h, c.w, y16, 1, NULL, 1); });
        cx_cuda_set_conv_version(2); /* the same without cp.async (v2's register pipeline) */
        ms_a16v2 = time_ms([&] { cx_cuda_conv2d_io(&d16, x16, 1, c.n, c.h, c.w, y16, 1, NULL, 1); });
        cx_cuda_set_conv_version(4); /* v4's 256 x 128 tiles where unsplit 128-wide v3 runs */
        ms_a16v4 = time_ms([&] { cx_cuda_conv2d_io(&d16, x16, 1, c.n, c.h, c.w, y16, 1, NULL, 1); });
        if (cx_cuda_conv_wgmma_available()) { /* v5's wgmma kernel there instead (sm_90a build, 9.0 device) */
          cx_cuda_set_conv_version(5);
          ms_a16v5 = time_ms([&] { cx_cuda_conv2d_io(&d16, x16, 1, c.n, c.h, c.w, y16, 1, NULL, 1); });
          cx_cuda_set_conv_version(6); /* v6: its 128 x 256 tiles where cout > 128, else as v5 */
          ms_a16v6 = time_ms([&] { cx_cuda_conv2d_io(&d16, x16, 1, c.n, c.h, c.w, y16, 1, NULL, 1); });
        }
        cx_cuda_free(x16);
        cx_cuda_free(y16);
      }
      cx_cuda_free(k16);
    }
    cx_cuda_set_conv_version(0);
    cx_cuda_set_precision(CX_PREC_FP32);
    float ms_wino = -1.0f, ms_wgemm = -1.0f;
    if (c.k == 3 && c.s == 1 && c.pad == 1) {
      float *hk = host_random((size_t)K * N, 0.05f);
      float *u = cx_cuda_winograd_upload(4, hk, c.cin, c.cout);
      free(hk);
      if (!u) lib_check("winograd upload");
      cx_conv2d_desc dw = d;
      dw.winograd = u;
      dw.winograd_tile = 4;
      const int was_on = cx_cuda_winograd_on(); /* timed even under CTXDIFF_CUDA_WINOGRAD=0 */
      cx_cuda_set_winograd(1);
      ms_wino = time_ms([&] { be->conv2d(&dw, x, c.n, c.h, c.w, y, NULL, 1, NULL); });
      cx_cuda_set_winograd(was_on);
      /* its 36 tile GEMMs alone ([P][cin] x [cin][cout] per plane, P = 4x4 output tiles): the
       * rest of ms_wino is the two transforms' memory round trip, what a fused kernel removes */
      const long long P = (long long)c.n * ((c.h + 3) / 4) * ((c.w + 3) / 4);
      float *V = (float *)cx_cuda_malloc((size_t)(36 * P * c.cin) * sizeof(float));
      float *Mo = (float *)cx_cuda_malloc((size_t)(36 * P * c.cout) * sizeof(float));
      if (V && Mo) {
        BCHECK(cudaMemset(V, 0, (size_t)(36 * P * c.cin) * sizeof(float)));
        ms_wgemm = time_ms([&] {
          cx_cuda_gemm_f32_batched(V, P * c.cin, u, (long long)c.cin * c.cout, Mo, P * c.cout, 36, (int)P, c.cin, c.cout,
                                   NULL, 0, 0);
        });
      } else {
        cx_cuda_clear_error();
      }
      cx_cuda_free(V);
      cx_cuda_free(Mo);
      cx_cuda_free(u);
    }
    /* cuBLAS on the GEMM shape: row-major Y[M][N] = A[M][K] B[K][N] as column-major Y^T = B^T A^T */
    float *a = (float *)cx_cuda_malloc((size_t)M * K * sizeof(float));
    const float one = 1.0f, zero = 0.0f;
    float ms_blas32 = -1.0f, ms_blas16 = -1.0f;
    if (a) {
      BCHECK(cudaMemset(a, 0, (size_t)M * K * sizeof(float)));
      ms_blas32 = time_ms([&] {
        BLASCHECK(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, wt, (int)N, a, (int)K,
                              &zero, y, (int)N));
      });
      __half *ah = (__half *)a, *bh = (__half *)cx_cuda_malloc((size_t)K * N * sizeof(__half));
      if (bh) {
        BCHECK(cudaMemset(bh, 0, (size_t)K * N * sizeof(__half)));
        ms_blas16 = time_ms([&] {
          BLASCHECK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, bh, CUDA_R_16F, (int)N,
                                 ah, CUDA_R_16F, (int)K, &zero, y, CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
        });
        cx_cuda_free(bh);
      }
      cx_cuda_free(a);
    } else {
      cx_cuda_clear_error(); /* im2col-sized baseline buffer too large: skip the baseline */
    }
    printf("%-34s %7.2f |", c.name, gflop);
    for (int p = 0; p < 3; p++) printf(" %8.2f %8.2f |", gflop / ms[p][0], gflop / ms[p][1]);
    printf(" %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f |", gflop / ms_w16, ms_a16v2 > 0 ? gflop / ms_a16v2 : 0.0,
           ms_a16 > 0 ? gflop / ms_a16 : 0.0, ms_a16v4 > 0 ? gflop / ms_a16v4 : 0.0, ms_a16v5 > 0 ? gflop / ms_a16v5 : 0.0,
           ms_a16v6 > 0 ? gflop / ms_a16v6 : 0.0);
    printf(" %8.2f %8.2f |", ms_blas32 > 0 ? gflop / ms_blas32 : 0.0, ms_blas16 > 0 ? gflop / ms_blas16 : 0.0);
    if (ms_wino > 0) printf(" %8.2f %5.2fx\n", gflop / ms_wino, ms[0][1] / ms_wino);
    else printf(" %8s %6s\n", "-", "-");
    printf("%-34s %7s |", "", "");
    for (int p = 0; p < 3; p++) printf(" %6.3fms %6.3fms |", ms[p][0], ms[p][1]);
    printf(" %6.3fms %6.3fms %6.3fms %6.3fms %6.3fms %6.3fms |", ms_w16, ms_a16v2, ms_a16, ms_a16v4, ms_a16v5, ms_a16v6);
    printf(" %6.3fms %6.3fms |", ms_blas32, ms_blas16);
    if (ms_wino > 0 && ms_wgemm > 0) printf(" %6.3fms (GEMMs %.3fms)\n", ms_wino, ms_wgemm);
    else if (ms_wino > 0) printf(" %6.3fms\n", ms_wino);
    else printf("\n");
    cx_cuda_free(x);
    cx_cuda_free(wt);
    cx_cuda_free(bias);
    cx_cuda_free(y);
  }

  /* Split-K A/B (conv.cu pick_splits, on by default for grids under one block per SM): the
   * automatic choice against split-K off, v2 forced, fp32 (direct, no Winograd) and fp16 with
   * fp32 weights rounded while staging. Where the automatic choice does not split, the ratio is ~1. */
  static const conv_case split_cases[] = {
      {"cls 7x7 256->1024 1000 rois", 1000, 7, 7, 256, 1024, 7, 1, 0},
      {"cls 7x7 256->1024 2000 rois", 2000, 7, 7, 256, 1024, 7, 1, 0},
      {"res5 1x1 2048->512 @32", 1, 32, 32, 2048, 512, 1, 1, 0},
      {"res5 3x3 512->512 @32 (direct)", 1, 32, 32, 512, 512, 3, 1, 1},
      {"res4 3x3 256->256 @64 (direct)", 1, 64, 64, 256, 256, 3, 1, 1},
      {"cls 7x7 256->1024 8000 rois (control)", 8000, 7, 7, 256, 1024, 7, 1, 0},
  };
  printf("\n%-38s %7s | %8s %8s %6s | %8s %8s %6s   (TFLOP/s)\n", "split-K A/B (v2)", "GFLOP", "f32 auto",
         "f32 off", "gain", "f16 auto", "f16 off", "gain");
  for (const conv_case &c : split_cases) {
    long long M, N, K;
    cx_conv2d_desc d = case_desc(c, &M, &N, &K);
    const double gflop = 2.0 * M * N * K * 1e-9;
    float *x = dev_random((size_t)c.n * c.h * c.w * c.cin, 1.0f);
    d.kernel = dev_random((size_t)K * N, 0.05f);
    d.bias = dev_random((size_t)N, 0.1f);
    float *y = (float *)cx_cuda_malloc((size_t)M * N * sizeof(float));
    float ms[2][2]; /* [fp32, fp16][auto, off] */
    cx_cuda_set_conv_version(2);
    for (int p = 0; p < 2; p++) {
      cx_cuda_set_precision(p ? CX_PREC_FP16 : CX_PREC_FP32);
      for (int off = 0; off < 2; off++) {
        cx_cuda_set_splitk(off ? 1 : 0);
        ms[p][off] = time_ms([&] { be->conv2d(&d, x, c.n, c.h, c.w, y, NULL, 1, NULL); });
      }
    }
    cx_cuda_set_splitk(0);
    cx_cuda_set_conv_version(0);
    cx_cuda_set_precision(CX_PREC_FP32);
    printf("%-38s %7.2f |", c.name, gflop);
    for (int p = 0; p < 2; p++)
      printf(" %8.2f %8.2f %5.2fx |", gflop / ms[p][0], gflop / ms[p][1], ms[p][1] / ms[p][0]);
    printf("\n");
    cx_cuda_free(x);
    cx_cuda_free((void *)d.kernel);
    cx_cuda_free((void *)d.bias);
    cx_cuda_free(y);
  }

  printf("\n%-44s %10s\n", "other ops", "ms");
  {
    const int n = 261888, k = 6000;
    float *s = dev_random((size_t)n, 1.0f);
    int *idx = (int *)cx_cuda_malloc((size_t)k * sizeof(int));
    printf("%-44s %10.3f\n", "topk 261888 -> 6000", time_ms([&] { be->topk_stable(s, n, k, idx, NULL); }));
    cx_cuda_free(s);
    cx_cuda_free(idx);
    /* a batch of 8: eight sorts (before 2026-11-28) vs one segmented sort */
    float *s8 = dev_random((size_t)8 * n, 1.0f);
    int *idx8 = (int *)cx_cuda_malloc((size_t)8 * k * sizeof(int));
    printf("%-44s %10.3f\n", "topk 8 x (261888 -> 6000), one at a time", time_ms([&] {
             for (int b = 0; b < 8; b++) be->topk_stable(s8 + (size_t)b * n, n, k, idx8 + (size_t)b * k, NULL);
           }));
    printf("%-44s %10.3f\n", "topk 8 x (261888 -> 6000), one sort",
           time_ms([&] { cx_cuda_topk_stable_seg(s8, 8, n, k, idx8); }));
    cx_cuda_free(s8);
    cx_cuda_free(idx8);
  }
  {
    const int n = 6000;
    float *b = dev_random((size_t)n * 4, 0.5f), *s = dev_random((size_t)n, 1.0f);
    int *sel = (int *)cx_cuda_malloc(1000 * sizeof(int));
    printf("%-44s %10.3f\n", "nms 6000 -> 1000 (random boxes, incl. sync)",
           time_ms([&] { be->nms(b, s, n, 1000, 0.7f, sel, NULL); }));
    cx_cuda_free(b);
    cx_cuda_free(s);
    cx_cuda_free(sel);
    /* the proposal layer of a batch of 8, no sync: one image at a time vs batched */
    float *b8 = dev_random((size_t)8 * n * 4, 0.5f), *s8 = dev_random((size_t)8 * n, 1.0f);
    int *sel8 = (int *)cx_cuda_malloc((size_t)8 * 1000 * sizeof(int)), *cnt8 = (int *)cx_cuda_malloc(8 * sizeof(int));
    printf("%-44s %10.3f\n", "nms 8 x (6000 -> 1000), one at a time", time_ms([&] {
             for (int i = 0; i < 8; i++)
               cx_cuda_nms_dev(b8 + (size_t)i * n * 4, s8 + (size_t)i * n, n, 1000, 0.7f, sel8 + i * 1000, cnt8 + i);
           }));
    printf("%-44s %10.3f\n", "nms 8 x (6000 -> 1000), batched",
           time_ms([&] { cx_cuda_nms_batched_dev(b8, s8, 8, n, 1000, 0.7f, sel8, cnt8); }));
    cx_cuda_free(b8);
    cx_cuda_free(s8);
    cx_cuda_free(sel8);
    cx_cuda_free(cnt8);
  }
  {
    float *f = dev_random((size_t)256 * 256 * 256, 1.0f), *b = dev_random(4000, 0.5f);
    float *o = (float *)cx_cuda_malloc((size_t)1000 * 7 * 7 * 256 * sizeof(float));
    printf("%-44s %10.3f\n", "crop_and_resize 1000 x 7x7 x 256",
           time_ms([&] { be->crop_and_resize(f, 256, 256, 256, b, 1000, 7, 7, o); }));
    cx_cuda_free(f);
    cx_cuda_free(b);
    cx_cuda_free(o);
  }
  {
    float *x = dev_random((size_t)100 * 14 * 14 * 256, 1.0f), *p = dev_random((size_t)256 * 4 * 256, 0.05f);
    float *bias = dev_random(256, 0.1f);
    float *y = (float *)cx_cuda_malloc((size_t)100 * 28 * 28 * 256 * sizeof(float));
    float *ws = (float *)cx_cuda_malloc((size_t)100 * 14 * 14 * 4 * 256 * sizeof(float));
    printf("%-44s %10.3f\n", "deconv2x2 100x14x14x256 -> 256 (fp32)",
           time_ms([&] { be->deconv2x2(x, 100, 14, 14, 256, p, bias, 256, 1, y, ws); }));
    cx_cuda_free(x);
    cx_cuda_free(p);
    cx_cuda_free(bias);
    cx_cuda_free(y);
    cx_cuda_free(ws);
  }
  lib_check("end");
  cublasDestroy(blas);
  cx_cuda_release_scratch();
  return 0;
}
