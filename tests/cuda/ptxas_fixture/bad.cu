/* Fixture for ptxas_check.py's own test: each kernel but `fine` breaks one rule, so the check
 * must name `spiller` (a launch bound that forces spills), `unbounded` (>64 registers, no
 * launch bound) and `stacked` (local memory). Never built into the project. */
#define N_LIVE 24

__device__ float churn(float4 *r) {
  float s = 0;
#pragma unroll
  for (int k = 0; k < 8; k++)
#pragma unroll
    for (int i = 0; i < N_LIVE; i++) {
      s = fmaf(s, r[i].x, r[(i + k) % N_LIVE].y);
      r[i].z += s * r[i].w;
    }
  return s;
}

/* the same body twice: what differs is the launch bound only */
__device__ __forceinline__ void body(const float4 *x, float *y, int n) {
  float4 r[N_LIVE];
#pragma unroll
  for (int i = 0; i < N_LIVE; i++) r[i] = x[threadIdx.x + i * n];
  const float s = churn(r);
#pragma unroll
  for (int i = 0; i < N_LIVE; i++) y[threadIdx.x + i * n] = r[i].x + r[i].y + r[i].z + r[i].w + s;
}

__global__ void __launch_bounds__(1024, 2) spiller(const float4 *x, float *y, int n) { body(x, y, n); }

__global__ void unbounded(const float4 *x, float *y, int n) { body(x, y, n); }

__global__ void __launch_bounds__(128) fine(float *y) { y[threadIdx.x] = 1; }

/* an array written and read at run-time indices lives in local memory: a stack frame, no spill */
__global__ void __launch_bounds__(128) stacked(const int *x, int *y, int l) {
  int r[64];
  for (int i = 0; i < 64; i++) r[i] = x[threadIdx.x * 64 + i];
  r[l & 63] += 1;
  y[threadIdx.x] = r[(l * 7) & 63];
}
