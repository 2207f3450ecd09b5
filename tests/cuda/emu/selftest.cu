/* selftest.cu — the CUDA emulator's own test: small kernels with a known answer (warp
 * shuffles, ballots, WMMA, ldmatrix + mma.sync and wgmma against a double-precision product, the
 * kernels' index split), and kernels with the bugs the
 * emulator exists to catch (missing barrier, host dereference of device memory, reads past an
 * allocation, host pointers as kernel arguments, divergent barriers, bad launch
 * configurations, reading a pinned buffer before the stream is synchronised, misaligned
 * vector loads, shared-array overruns, reading asynchronous copies or wgmma accumulators before
 * waiting for them, returning with wgmma groups pending). selftest.sh runs each case and checks
 * the verdict.
 * Real CUDA: the "good" cases run under nvcc too (they are plain CUDA).
 *
 *   cuda_emu_selftest CASE      prints a verdict line; exit 0 when the case behaved */
#include <cuda_fp16.h>
#include <cuda_pipeline.h>
#include <cuda_runtime.h>
#include <math.h>
#include <mma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_common.cuh"
#include "mma_ptx.cuh"

/* Asynchronous copies (cuda_pipeline.h): each thread copies 16 bytes of `in` into shared memory
 * with __pipeline_memcpy_async (the second half of the block zero-filled), then every thread
 * reads its neighbour's chunk. With the wait and the barrier the result is exact; without the
 * wait the copies have not landed when read (the emulator holds them until the wait). */
__global__ void pipe_kernel(const float4 *in, float4 *out, int wait) {
  __shared__ float4 buf[64];
  const int t = threadIdx.x;
  __pipeline_memcpy_async(&buf[t], &in[t], 16, t < 32 ? 0 : 16);
  __pipeline_commit();
  if (wait) __pipeline_wait_prior(0);
  __syncthreads();
  out[t] = buf[(t + 1) % 64];
}

/* kernels/cuda helpers with a known answer: cx_divmod (cuda_common.cuh) on both of its paths
 * (32-bit below 2^32, 64-bit above), and ldmatrix + mma.sync m16n8k16 (mma_ptx.cuh) — the
 * emulator's two fragment layouts must compose to the plain product of a 16x16 A and B */
__global__ void divmod_kernel(const long long *i, const int *d, long long *q, int *r, int n) {
  const int t = threadIdx.x;
  if (t < n) q[t] = cx_divmod(i[t], d[t], &r[t]);
}

__global__ void mma_kernel(const __half *a, const __half *b, float *c) {
  __shared__ __align__(16) __half sa[16 * 16], sb[16 * 16]; /* both row-major; b is [k][n] */
  const int l = threadIdx.x;
  for (int i = l; i < 256; i += 32) {
    sa[i] = a[i];
    sb[i] = b[i];
  }
  __syncthreads();
  unsigned fa[4], fb[4];
  ldsm_x4<false>(fa, sa + (l % 16) * 16 + (l / 16) * 8);
  ldsm_x4<true>(fb, sb + (l % 16) * 16 + (l / 16) * 8);
  for (int j = 0; j < 2; j++) {
    float d[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    const unsigned bj[2] = {fb[2 * j], fb[2 * j + 1]};
    mma_16816<__half>(d, fa, bj);
    const int g = l / 4, t = l % 4;
    c[g * 16 + j * 8 + 2 * t] = d[0];
    c[g * 16 + j * 8 + 2 * t + 1] = d[1];
    c[(g + 8) * 16 + j * 8 + 2 * t] = d[2];
    c[(g + 8) * 16 + j * 8 + 2 * t + 1] = d[3];
  }
}

/* One warpgroup: wgmma m64n128k16 (mma_ptx.cuh) on A [64][16] and B [16][128] (fp16, row-major in
 * global memory) laid out in shared memory as the PTX ISA's 128-byte-swizzle canonical layouts,
 * written here in element units (Swizzle<3,3,3> of the element index, i.e. bits 3-5 ^= bits 6-8)
 * rather than emu.cpp's byte form: A K-major (8-row atoms at SBO 1024 B), B N-major with its two
 * 64-column halves at LBO 2048 B and 8-k atoms at SBO 1024 B (conv.cu uses LBO 8192). c = 1 + A B
 * read back through the m64nNk16 fragment; wait = 0 reads the accumulators before the
 * wait_group (then waits, so the kernel may return); wait = 2 never waits. */
__device__ inline int swz(int e) { return e ^ (((e >> 6) & 7) << 3); }

__global__ void wgmma_kernel(const __half *a, const __half *b, float *c, int wait) {
  extern __shared__ uint4 wg_raw[];
  unsigned char *raw = reinterpret_cast<unsigned char *>(wg_raw);
  __half *sm = reinterpret_cast<__half *>(raw + ((1024u - (smem_u32(raw) & 1023u)) & 1023u));
  __half *sa = sm, *sb = sm + 4096; /* A: 8 atoms of 1 KB; B: 4 atoms */
  const int t = threadIdx.x;
  for (int i = t; i < 64 * 16; i += 128) {
    const int m = i / 16, k = i % 16;
    sa[swz((m % 8) * 64 + (m / 8) * 512 + (k / 8) * 8 + k % 8)] = a[i];
  }
  for (int i = t; i < 16 * 128; i += 128) {
    const int k = i / 128, n = i % 128;
    sb[swz(n % 8 + ((n / 8) % 8) * 8 + (n / 64) * 1024 + (k % 8) * 64 + (k / 8) * 512)] = b[i];
  }
  fence_proxy_async();
  __syncthreads();
  float d[64];
  for (int i = 0; i < 64; i++) d[i] = 1.0f;
  const unsigned ua = smem_u32(sa), ub = smem_u32(sb);
  const unsigned long long da = (unsigned long long)(ua >> 4) | (1ull << 16) | (64ull << 32) | (1ull << 62);
  const unsigned long long db = (unsigned long long)(ub >> 4) | (128ull << 16) | (64ull << 32) | (1ull << 62);
  wg_fence();
  wg_mma_n128<__half>(d, da, db);
  wg_commit();
  if (wait == 1) wg_wait<0>();
  const int w = t / 32, l = t % 32;
  for (int i = 0; i < 64; i++)
    c[(16 * w + l / 4 + 8 * ((i / 2) % 2)) * 128 + 8 * (i / 4) + 2 * (l % 4) + i % 2] = d[i];
  if (wait == 0) wg_wait<0>();
}

#define CK(call)                                                                     \
  do {                                                                               \
    cudaError_t e_ = (call);                                                         \
    if (e_ != cudaSuccess) {                                                         \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)

/* one warp of kernel k on a 16x16 A and B (fp16) into a 16x16 fp32 C, via device copies */
static void run_16x16(void (*k)(const __half *, const __half *, float *), const __half *ha, const __half *hb,
                      float *got) {
  __half *da, *db;
  float *dc;
  CK(cudaMalloc((void **)&da, 256 * sizeof(__half)));
  CK(cudaMalloc((void **)&db, 256 * sizeof(__half)));
  CK(cudaMalloc((void **)&dc, 256 * sizeof(float)));
  CK(cudaMemcpy(da, ha, 256 * sizeof(__half), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(db, hb, 256 * sizeof(__half), cudaMemcpyHostToDevice));
  k<<<1, 32>>>(da, db, dc);
  CK(cudaGetLastError());
  CK(cudaMemcpy(got, dc, 256 * sizeof(float), cudaMemcpyDeviceToHost));
}

__global__ void shfl_kernel(const int *in, int *sum, int *bcast, unsigned *ballot) {
  const int t = threadIdx.x;
  int v = in[blockIdx.x * blockDim.x + t];
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int b = __shfl_sync(0xffffffffu, in[blockIdx.x * blockDim.x + t], 5);
  const unsigned bl = __ballot_sync(0xffffffffu, (t & 3) == 0);
  sum[blockIdx.x * blockDim.x + t] = v;
  bcast[blockIdx.x * blockDim.x + t] = b;
  ballot[blockIdx.x * blockDim.x + t] = bl;
}

__global__ void wmma_kernel(const __half *a, const __half *b, float *c) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 1.0f);
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}

__global__ void race_kernel(int *out) {
  __shared__ int v;
  if (threadIdx.x == 0) v = 42;
  /* missing __syncthreads() here: the bug under test */
  out[threadIdx.x] = v;
}

__global__ void read_kernel(const float *p, int i, float *out) { out[0] = p[i]; }

__global__ void divergent_kernel(int *out) {
  int x = threadIdx.x;
  if (threadIdx.x < 16)
    __syncthreads();
  else
    x = __shfl_xor_sync(0xffffffffu, x, 1);
  out[threadIdx.x] = x;
}

__global__ void fill_kernel(float *p, int n, float v) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) p[i] = v;
}

__global__ void vec_kernel(const float *p, float *out) {
  const float4 v = *reinterpret_cast<const float4 *>(p + 1); /* 4-byte aligned only */
  out[0] = v.x + v.y + v.z + v.w;
}

__global__ void smem_kernel(float *out) {
  __shared__ float s[32];
  s[threadIdx.x] = (float)threadIdx.x; /* 64 threads: index 32.. overruns */
  __syncthreads();
  out[threadIdx.x] = s[threadIdx.x];
}

int main(int argc, char **argv) {
  const char *c = argc > 1 ? argv[1] : "";
  if (!strcmp(c, "shfl")) {
    const int n = 64;
    int h[64], *d, *sum, *bc;
    unsigned *bl;
    for (int i = 0; i < n; i++) h[i] = i * 3 + 1;
    CK(cudaMalloc((void **)&d, sizeof h));
    CK(cudaMalloc((void **)&sum, sizeof h));
    CK(cudaMalloc((void **)&bc, sizeof h));
    CK(cudaMalloc((void **)&bl, sizeof h));
    CK(cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice));
    shfl_kernel<<<2, 32>>>(d, sum, bc, bl);
    CK(cudaGetLastError());
    int hs[64], hb[64];
    unsigned hl[64];
    CK(cudaMemcpy(hs, sum, sizeof h, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hb, bc, sizeof h, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hl, bl, sizeof h, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < n; i++) {
      int want = 0;
      for (int j = i / 32 * 32; j < i / 32 * 32 + 32; j++) want += h[j];
      bad += hs[i] != want || hb[i] != h[i / 32 * 32 + 5] || hl[i] != 0x11111111u;
    }
    printf("shfl: %d wrong of %d\n", bad, n);
    return bad != 0;
  }
  if (!strcmp(c, "wmma")) {
    __half ha[256], hb[256];
    float ref[256], got[256];
    for (int i = 0; i < 256; i++) {
      ha[i] = __float2half_rn((float)((i * 7) % 13) / 8.0f - 0.75f);
      hb[i] = __float2half_rn((float)((i * 5) % 11) / 4.0f - 1.25f);
    }
    for (int r = 0; r < 16; r++)
      for (int q = 0; q < 16; q++) {
        double s = 1.0;
        for (int k = 0; k < 16; k++) s += (double)__half2float(ha[r * 16 + k]) * (double)__half2float(hb[q * 16 + k]);
        ref[r * 16 + q] = (float)s; /* b is column-major: element (k, q) at q*16 + k */
      }
    run_16x16(wmma_kernel, ha, hb, got);
    double e = 0;
    for (int i = 0; i < 256; i++) e = fmax(e, fabs((double)got[i] - ref[i]));
    printf("wmma: max abs error %.3g\n", e);
    return e > 1e-4;
  }
  if (!strcmp(c, "race")) {
    int *d, h[64];
    CK(cudaMalloc((void **)&d, sizeof h));
    race_kernel<<<1, 64>>>(d);
    CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    int saw = 0;
    for (int i = 0; i < 64; i++) saw += h[i] == 42;
    printf("race: %d of 64 threads saw the value\n", saw);
    return 0;
  }
  if (!strcmp(c, "host_deref")) {
    float *d;
    CK(cudaMalloc((void **)&d, 1024));
    printf("host_deref: read %g\n", (double)d[3]); /* the bug under test */
    return 0;
  }
  if (!strcmp(c, "oob")) {
    float *d, *o;
    CK(cudaMalloc((void **)&d, 4096));
    CK(cudaMalloc((void **)&o, 4));
    read_kernel<<<1, 1>>>(d, 1024, o); /* one past the end */
    CK(cudaDeviceSynchronize());
    printf("oob: no fault\n");
    return 0;
  }
  if (!strcmp(c, "host_arg")) {
    float *h = (float *)calloc(16, sizeof(float)), *o;
    CK(cudaMalloc((void **)&o, 4));
    read_kernel<<<1, 1>>>(h, 0, o);
    CK(cudaDeviceSynchronize());
    printf("host_arg: launched\n");
    return 0;
  }
  if (!strcmp(c, "divergent")) {
    int *d;
    CK(cudaMalloc((void **)&d, 32 * sizeof(int)));
    divergent_kernel<<<1, 32>>>(d);
    CK(cudaDeviceSynchronize());
    printf("divergent: completed\n");
    return 0;
  }
  if (!strcmp(c, "config")) {
    float *d;
    CK(cudaMalloc((void **)&d, 4096));
    fill_kernel<<<1, 2048>>>(d, 1024, 1.0f);
    const cudaError_t e1 = cudaGetLastError();
    fill_kernel<<<dim3(1, 70000), 32>>>(d, 1024, 1.0f);
    const cudaError_t e2 = cudaGetLastError();
    fill_kernel<<<1, 32, 64 * 1024>>>(d, 1024, 1.0f);
    const cudaError_t e3 = cudaGetLastError();
    printf("config: %s / %s / %s\n", cudaGetErrorName(e1), cudaGetErrorName(e2), cudaGetErrorName(e3));
    return !(e1 == cudaErrorInvalidConfiguration && e2 == cudaErrorInvalidConfiguration &&
             e3 == cudaErrorInvalidConfiguration);
  }
  if (!strcmp(c, "stale")) {
    float *d, *h;
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    CK(cudaMalloc((void **)&d, 4096));
    CK(cudaMallocHost((void **)&h, 4096));
    memset(h, 0, 4096);
    fill_kernel<<<1, 128, 0, s>>>(d, 1024, 7.0f);
    CK(cudaMemcpyAsync(h, d, 4096, cudaMemcpyDeviceToHost, s));
    const float before = h[100]; /* the bug under test: no cudaStreamSynchronize yet */
    CK(cudaStreamSynchronize(s));
    const float after = h[100];
    printf("stale: before sync %g, after sync %g\n", (double)before, (double)after);
    return !(before != 7.0f && after == 7.0f);
  }
  if (!strcmp(c, "misaligned")) {
    float *d, *o;
    CK(cudaMalloc((void **)&d, 4096));
    CK(cudaMalloc((void **)&o, 4));
    vec_kernel<<<1, 1>>>(d, o);
    CK(cudaDeviceSynchronize());
    printf("misaligned: no fault\n");
    return 0;
  }
  if (!strcmp(c, "smem")) {
    float *o;
    CK(cudaMalloc((void **)&o, 64 * sizeof(float)));
    smem_kernel<<<1, 64>>>(o);
    CK(cudaDeviceSynchronize());
    printf("smem: no fault\n");
    return 0;
  }
  if (!strcmp(c, "graph")) {
    /* capture fill + copy, replay twice; then a synchronising call inside a capture must fail */
    float *a, *b, h[256];
    cudaStream_t s;
    cudaGraph_t g;
    cudaGraphExec_t x;
    CK(cudaStreamCreate(&s));
    CK(cudaMalloc((void **)&a, sizeof h));
    CK(cudaMalloc((void **)&b, sizeof h));
    CK(cudaMemset(b, 0, sizeof h));
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    fill_kernel<<<1, 64, 0, s>>>(a, 256, 3.0f);
    CK(cudaMemcpyAsync(b, a, sizeof h, cudaMemcpyDeviceToDevice, s));
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&x, g, 0));
    CK(cudaMemcpy(h, b, sizeof h, cudaMemcpyDeviceToHost));
    const int untouched = h[0] == 0.0f; /* capturing does not run anything */
    CK(cudaGraphLaunch(x, s));
    CK(cudaGraphLaunch(x, s));
    CK(cudaStreamSynchronize(s));
    CK(cudaMemcpy(h, b, sizeof h, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < 256; i++) bad += h[i] != 3.0f;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    const cudaError_t in = cudaStreamSynchronize(s);
    cudaGraph_t g2;
    const cudaError_t end = cudaStreamEndCapture(s, &g2);
    (void)cudaGetLastError();
    printf("graph: capture ran nothing %d, replay wrong %d, sync in capture %s, end %s\n", untouched, bad,
           cudaGetErrorName(in), cudaGetErrorName(end));
    return !(untouched && !bad && in != cudaSuccess && end == cudaErrorStreamCaptureInvalidated);
  }
  if (!strcmp(c, "streams") || !strcmp(c, "streams_nowait")) {
    /* a kernel on stream A fills a buffer, stream B copies it to the host: with the event wait
     * the copy sees the fill whatever the order; without it, the emulator's CXEMU_STREAMS=first
     * runs B (created first) ahead, the copy before the fill (a missing cross-stream wait) */
    const bool wait = !strcmp(c, "streams");
    float *a, *h;
    cudaStream_t sa, sb;
    cudaEvent_t ev;
    CK(cudaStreamCreateWithFlags(&sb, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&sa, cudaStreamNonBlocking));
    CK(cudaEventCreate(&ev));
    CK(cudaMalloc((void **)&a, 256 * sizeof(float)));
    CK(cudaMallocHost((void **)&h, 256 * sizeof(float)));
    CK(cudaMemset(a, 0, 256 * sizeof(float)));
    fill_kernel<<<1, 64, 0, sa>>>(a, 256, 5.0f);
    CK(cudaEventRecord(ev, sa));
    if (wait) CK(cudaStreamWaitEvent(sb, ev, 0));
    CK(cudaMemcpyAsync(h, a, 256 * sizeof(float), cudaMemcpyDeviceToHost, sb));
    CK(cudaStreamSynchronize(sb));
    CK(cudaStreamSynchronize(sa));
    int bad = 0;
    for (int i = 0; i < 256; i++) bad += h[i] != 5.0f;
    printf("%s: %d of 256 copied before the fill\n", c, bad);
    return wait ? bad != 0 : 0;
  }
  if (!strcmp(c, "pipeline") || !strcmp(c, "pipeline_nowait")) {
    const int wait = !strcmp(c, "pipeline");
    float4 *in, *out;
    float4 h[64];
    CK(cudaMalloc((void **)&in, sizeof h));
    CK(cudaMalloc((void **)&out, sizeof h));
    for (int i = 0; i < 64; i++) h[i] = make_float4(i, i + 0.25f, i + 0.5f, i + 0.75f);
    CK(cudaMemcpy(in, h, sizeof h, cudaMemcpyHostToDevice));
    pipe_kernel<<<1, 64>>>(in, out, wait);
    CK(cudaGetLastError());
    CK(cudaMemcpy(h, out, sizeof h, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int t = 0; t < 64; t++) {
      const int s = (t + 1) % 64;
      const float4 want = s < 32 ? make_float4(s, s + 0.25f, s + 0.5f, s + 0.75f) : make_float4(0, 0, 0, 0);
      bad += h[t].x != want.x || h[t].y != want.y || h[t].z != want.z || h[t].w != want.w;
    }
    printf("%s: %d of 64 wrong\n", c, bad);
    return wait ? bad != 0 : 0;
  }
  if (!strcmp(c, "divmod")) {
    const long long hi[] = {0, 1, 255, 4294967295LL, 4294967296LL, 4294967301LL, 3LL << 40 | 7, 123456789012345LL,
                            2147483647LL, 9000000000000000000LL};
    const int hd[] = {1, 3, 7, 256, 65535, 2147483647, 13, 1000, 2, 81};
    const int n = (int)(sizeof hi / sizeof hi[0]);
    long long *di, *dq, hq[16];
    int *dd, *dr, hr[16];
    CK(cudaMalloc((void **)&di, sizeof hi));
    CK(cudaMalloc((void **)&dd, sizeof hd));
    CK(cudaMalloc((void **)&dq, sizeof hi));
    CK(cudaMalloc((void **)&dr, sizeof hd));
    CK(cudaMemcpy(di, hi, sizeof hi, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dd, hd, sizeof hd, cudaMemcpyHostToDevice));
    divmod_kernel<<<1, 32>>>(di, dd, dq, dr, n);
    CK(cudaGetLastError());
    CK(cudaMemcpy(hq, dq, sizeof hi, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hr, dr, sizeof hd, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int k = 0; k < n; k++) bad += hq[k] != hi[k] / hd[k] || hr[k] != (int)(hi[k] % hd[k]);
    printf("divmod: %d wrong of %d\n", bad, n);
    return bad != 0;
  }
  if (!strcmp(c, "mma")) {
    __half ha[256], hb[256];
    float got[256];
    double worst = 0.0;
    for (int i = 0; i < 256; i++) {
      ha[i] = __float2half_rn((float)((i * 7) % 13) / 8.0f - 0.75f);
      hb[i] = __float2half_rn((float)((i * 5) % 11) / 4.0f - 1.25f);
    }
    run_16x16(mma_kernel, ha, hb, got);
    for (int r = 0; r < 16; r++)
      for (int q = 0; q < 16; q++) {
        double s = 1.0;
        for (int k = 0; k < 16; k++) s += (double)__half2float(ha[r * 16 + k]) * (double)__half2float(hb[k * 16 + q]);
        const double e = fabs(s - got[r * 16 + q]);
        worst = e > worst ? e : worst;
      }
    printf("mma: max abs error %g\n", worst);
    return worst > 1e-3;
  }
  if (!strcmp(c, "wgmma") || !strcmp(c, "wgmma_nowait") || !strcmp(c, "wgmma_noreturn")) {
    const int wait = !strcmp(c, "wgmma") ? 1 : !strcmp(c, "wgmma_nowait") ? 0 : 2;
    static __half ha[64 * 16], hb[16 * 128];
    static float got[64 * 128];
    for (int i = 0; i < 64 * 16; i++) ha[i] = __float2half_rn((float)((i * 7) % 13) / 8.0f - 0.75f);
    for (int i = 0; i < 16 * 128; i++) hb[i] = __float2half_rn((float)((i * 5) % 11) / 4.0f - 1.25f);
    __half *da, *db;
    float *dc;
    CK(cudaMalloc((void **)&da, sizeof ha));
    CK(cudaMalloc((void **)&db, sizeof hb));
    CK(cudaMalloc((void **)&dc, sizeof got));
    CK(cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(db, hb, sizeof hb, cudaMemcpyHostToDevice));
    wgmma_kernel<<<1, 128, 13 * 1024>>>(da, db, dc, wait); /* A 8 KB + B 4 KB + alignment */
    CK(cudaGetLastError());
    CK(cudaMemcpy(got, dc, sizeof got, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int r = 0; r < 64; r++)
      for (int q = 0; q < 128; q++) {
        double s = 1.0;
        for (int k = 0; k < 16; k++) s += (double)__half2float(ha[r * 16 + k]) * (double)__half2float(hb[k * 128 + q]);
        bad += fabs(s - got[r * 128 + q]) > 1e-3;
      }
    printf("%s: %d of %d wrong\n", c, bad, 64 * 128);
    return wait == 1 ? bad != 0 : 0;
  }
  fprintf(stderr, "usage: cuda_emu_selftest shfl|wmma|mma|wgmma|wgmma_nowait|wgmma_noreturn|divmod|race|host_deref|oob|host_arg|divergent|config|stale|misaligned|smem|graph|streams|streams_nowait|pipeline|pipeline_nowait\n");
  return 2;
}
