/* Single-precision GEMM used by convolution, dense and transposed convolution:
 * C[M][N] = A[M][K] * B[K][N] + beta * C (row-major, beta 0 or 1).
 *
 * Two implementations: OpenBLAS sgemm when the build found it (CX_HAVE_BLAS; the OpenMP
 * flavour shares our thread pool), and our own cache-blocked kernel (packed B panels of
 * 32 columns, 6x32 register tiles written so the compiler vectorises them) used when no
 * BLAS is present and selectable at run time so `ctxdiff bench --gemm` can compare them.
 * Validated by tests/test_kernels (conv and dense cases run through both). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"

#ifdef CX_HAVE_BLAS
#include <cblas.h>
static int use_blas = 1;
#else
static int use_blas = 0;
#endif

int cx_gemm_select(const char *name) {
  if (!strcmp(name, "own")) { use_blas = 0; return 0; }
#ifdef CX_HAVE_BLAS
  if (!strcmp(name, "blas")) { use_blas = 1; return 0; }
#endif
  return -1;
}

const char *cx_gemm_name(void) { return use_blas ? "openblas" : "own"; }

void cx_set_threads(int n) {
  if (n < 1) return;
  omp_set_num_threads(n);
#ifdef CX_HAVE_BLAS
  openblas_set_num_threads(n); /* the pthread flavour keeps its own pool */
#endif
}

int cx_threads(void) { return omp_get_max_threads(); }

#define NR 32  /* columns per packed panel / register tile */
#define MR 6   /* rows per register tile */
#define KC 256 /* depth of one packed block */
#define NCB 1024 /* columns per packed block */

/* acc[MR][NR] += A[rows][0..kc) * Bp[0..kc)[NR] for one tile; rows beyond mr reuse row 0. */
static void tile(int mr, int nr, int kc, const float *A, int lda, const float *Bp, float *C, int ldc, int accumulate) {
  float acc[MR][NR];
  memset(acc, 0, sizeof acc);
  const float *a[MR];
  for (int r = 0; r < MR; r++) a[r] = A + (size_t)(r < mr ? r : 0) * lda;
  for (int p = 0; p < kc; p++) {
    const float *b = Bp + (size_t)p * NR;
    for (int r = 0; r < MR; r++) {
      const float av = a[r][p];
      for (int c = 0; c < NR; c++) acc[r][c] += av * b[c];
    }
  }
  for (int r = 0; r < mr; r++) {
    float *cr = C + (size_t)r * ldc;
    if (accumulate)
      for (int c = 0; c < nr; c++) cr[c] += acc[r][c];
    else
      for (int c = 0; c < nr; c++) cr[c] = acc[r][c];
  }
}

static void own_sgemm(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  float *Bp = malloc((size_t)KC * NCB * sizeof(float));
  if (!Bp) abort(); /* 1 MB; not reachable in practice */
  for (int jc = 0; jc < N; jc += NCB) {
    int nc = N - jc < NCB ? N - jc : NCB;
    int panels = (nc + NR - 1) / NR;
    for (int pc = 0; pc < K; pc += KC) {
      int kc = K - pc < KC ? K - pc : KC;
      /* Pack B[pc:pc+kc][jc:jc+nc] as panels of NR columns, zero padded. */
#pragma omp parallel for schedule(static)
      for (int jp = 0; jp < panels; jp++) {
        float *dst = Bp + (size_t)jp * kc * NR;
        int c0 = jc + jp * NR, cn = N - c0 < NR ? N - c0 : NR;
        for (int p = 0; p < kc; p++) {
          const float *src = B + (size_t)(pc + p) * ldb + c0;
          int c = 0;
          for (; c < cn; c++) dst[p * NR + c] = src[c];
          for (; c < NR; c++) dst[p * NR + c] = 0.0f;
        }
      }
      int accumulate = pc > 0 || beta != 0.0f;
#pragma omp parallel for schedule(dynamic, 4)
      for (int i = 0; i < M; i += MR) {
        int mr = M - i < MR ? M - i : MR;
        for (int jp = 0; jp < panels; jp++) {
          int c0 = jc + jp * NR, nr = N - c0 < NR ? N - c0 : NR;
          tile(mr, nr, kc, A + (size_t)i * lda + pc, lda, Bp + (size_t)jp * kc * NR, C + (size_t)i * ldc + c0, ldc, accumulate);
        }
      }
    }
  }
  free(Bp);
}

void cx_sgemm(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (beta == 0.0f)
      for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof(float));
    return;
  }
#ifdef CX_HAVE_BLAS
  if (use_blas) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
    return;
  }
#endif
  own_sgemm(M, N, K, A, lda, B, ldb, beta, C, ldc);
}
