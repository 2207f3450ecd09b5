/* cuda_runtime.h of the CUDA emulator (tests/cuda/emu): lets the kernels/cuda sources compile as
 * C++ and run on the CPU, so that CI (nvcc, no GPU) executes the CUDA kernels and the GPU
 * graph instead of only compiling them. Not a simulator of timing or of the memory model:
 * a logic checker. What it does (emu.cpp has the runtime):
 *   - every thread of a block is a fiber; __syncthreads / __syncwarp / warp shuffles are
 *     barriers between fibers; blocks run one after another; CXEMU_ORDER=rev runs the
 *     threads of a block and the blocks of a grid in reverse order (a missing barrier, or
 *     a block reading what another block writes, usually changes the result under one of
 *     the two orders);
 *   - launches are checked (block <= 1024 threads, grid limits, dynamic shared memory) and,
 *     like the real runtime, queued on the stream: they run at the next synchronising call,
 *     so a host read of a pinned buffer before cudaStreamSynchronize sees stale data;
 *   - device memory is its own mapping with guard pages, filled with 0xFF (NaN) bytes, and
 *     inaccessible (PROT_NONE) while host code runs: host code that dereferences a device
 *     pointer, and kernels reading past an allocation, stop with a message naming the
 *     kernel, block and thread; kernel pointer arguments must point into device memory;
 *   - stream capture records the queued work into a graph (replayed by cudaGraphLaunch);
 *     synchronising calls, work on another stream and copies to or from pageable host
 *     memory during a capture fail as on the real runtime and invalidate the capture;
 *   - WMMA fragments hold the whole tile, and lane 0 of the warp does the warp's work
 *     (pointer alignment and ldm are checked as the hardware requires).
 * Built by CMake with -DCTXDIFF_CUDA=EMU (transform.cmake rewrites <<<...>>> launches and
 * `extern __shared__` first). Written from the CUDA programming guide's semantics. */
#ifndef CXEMU_CUDA_RUNTIME_H
#define CXEMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#endif

/* ---- runtime API (C-compatible part) ---------------------------------------------------- */
typedef enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorIllegalState = 401,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureImplicit = 906
} cudaError_t;

typedef enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
} cudaMemcpyKind;

typedef enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9
} cudaFuncAttribute;

typedef enum cudaDeviceAttr { cudaDevAttrMaxThreadsPerBlock = 1, cudaDevAttrMaxSharedMemoryPerBlock = 8,
                               cudaDevAttrWarpSize = 10, cudaDevAttrMultiProcessorCount = 16,
                               cudaDevAttrComputeCapabilityMajor = 75, cudaDevAttrComputeCapabilityMinor = 76,
                               cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 } cudaDeviceAttr;

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;
typedef enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2
} cudaStreamCaptureMode;
typedef enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2
} cudaStreamCaptureStatus;

typedef struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major, minor;
  int multiProcessorCount;
  int maxThreadsPerMultiProcessor;
  int l2CacheSize;
  int clockRate;
  int memoryClockRate;
  int memoryBusWidth;
} cudaDeviceProp;

#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaHostAllocDefault 0x00

#ifdef __cplusplus
extern "C" {
#endif
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr attr, int d);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaMemset(void *dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *st);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cxemu_func_set_attribute(const void *fn, cudaFuncAttribute attr, int value);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
/* ---- execution-space keywords ----------------------------------------------------------- */
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __constant__ static
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

/* ---- vector types ----------------------------------------------------------------------- */
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(16))) uint4 { unsigned x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned x, y; };
struct __attribute__((aligned(16))) double2 { double x, y; };
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return int2{x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
static inline double2 make_double2(double x, double y) { return double2{x, y}; }

/* ---- the emulator's interface (emu.cpp) ---------------------------------------------------- */
namespace cxemu {
extern uint3 g_thread_idx, g_block_idx;
extern dim3 g_block_dim, g_grid_dim;

void barrier_block();            /* __syncthreads */
void barrier_warp(unsigned mask); /* __syncwarp and both halves of a warp exchange */
int lane_id();
int warp_leader(); /* 1 on the lowest live lane of the calling thread's warp */
unsigned long long *warp_slots(); /* 32 exchange slots of the calling thread's warp */
constexpr int WIDE_SLOTS = 16;
unsigned long long *warp_wide_slots(); /* 32 x WIDE_SLOTS exchange words of the calling thread's warp */
void *dyn_smem();                 /* this launch's dynamic shared memory */
[[noreturn]] void device_fail(const char *fmt, ...);

struct launch_cfg {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  launch_cfg(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = 0) : grid(g), block(b), smem(s), stream(st) {}
};
/* Checks the configuration and queues body (run once per thread) on the stream; records the
 * launch error like the runtime (cudaGetLastError). */
void submit_kernel(const char *name, const void *fn, const launch_cfg &cfg, std::function<void()> body);
/* 0 when p is NULL or inside a device allocation; else writes a reason and returns -1. */
int check_device_pointer(const void *p, char *why, size_t n);
void launch_arg_error(const char *kernel, int arg, const char *why);

template <class T>
inline void check_arg(const char *kernel, int idx, const T &v) {
  if constexpr (std::is_pointer<T>::value) {
    char why[256];
    if (check_device_pointer((const void *)v, why, sizeof why)) launch_arg_error(kernel, idx, why);
  }
}

template <class... P>
struct kcall {
  const char *name;
  void (*fn)(P...);
  launch_cfg cfg;
  template <class... A>
  void operator()(A &&...a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    /* the arguments are copied at launch, as the runtime does */
    auto args = std::make_shared<std::tuple<typename std::decay<P>::type...>>(std::forward<A>(a)...);
    int idx = 0;
    std::apply([&](const auto &...v) { (check_arg(name, idx++, v), ...); }, *args);
    void (*f)(P...) = fn;
    submit_kernel(name, (const void *)fn, cfg, [f, args]() {
      auto copy = *args; /* each thread owns its parameters */
      std::apply(f, copy);
    });
  }
};
template <class... P>
inline kcall<P...> launch(const char *name, void (*fn)(P...), launch_cfg cfg) {
  return kcall<P...>{name, fn, cfg};
}

template <class T>
inline unsigned long long to_bits(T v) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  unsigned long long b = 0;
  memcpy(&b, &v, sizeof v);
  return b;
}
template <class T>
inline T from_bits(unsigned long long b) {
  T v;
  memcpy(&v, &b, sizeof v);
  return v;
}
/* One warp exchange: every lane in mask publishes v, then reads lane src(lane). */
template <class T, class F>
inline T exchange(unsigned mask, T v, F src) {
  unsigned long long *s = warp_slots();
  const int lane = lane_id();
  s[lane] = to_bits(v);
  barrier_warp(mask);
  int from = src(lane);
  if (from < 0 || from > 31 || !((mask >> from) & 1u)) from = lane; /* hardware: own value */
  const T r = from_bits<T>(s[from]);
  barrier_warp(mask);
  return r;
}
} /* namespace cxemu */

#define threadIdx (cxemu::g_thread_idx)
#define blockIdx (cxemu::g_block_idx)
#define blockDim (cxemu::g_block_dim)
#define gridDim (cxemu::g_grid_dim)
static constexpr int warpSize = 32;

template <class... P>
inline cudaError_t cudaFuncSetAttribute_(void (*fn)(P...), cudaFuncAttribute attr, int value) {
  return cxemu_func_set_attribute((const void *)fn, attr, value);
}
#define cudaFuncSetAttribute(fn, attr, value) cudaFuncSetAttribute_((fn), (attr), (value))

/* ---- device functions ------------------------------------------------------------------ */
static inline void __syncthreads() { cxemu::barrier_block(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { cxemu::barrier_warp(mask); }
static inline void __threadfence() {}
static inline void __threadfence_block() {}

template <class T>
static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return cxemu::exchange(mask, v, [&](int lane) { return (lane & ~(width - 1)) + (src & (width - 1)); });
}
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32) {
  return cxemu::exchange(mask, v, [&](int lane) {
    const int t = lane ^ lm;
    return (t & ~(width - 1)) == (lane & ~(width - 1)) ? t : lane;
  });
}
template <class T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
  return cxemu::exchange(mask, v, [&](int lane) {
    const int t = lane + (int)d;
    return (t & ~(width - 1)) == (lane & ~(width - 1)) ? t : lane;
  });
}
template <class T>
static inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) {
  return cxemu::exchange(mask, v, [&](int lane) {
    const int t = lane - (int)d;
    return t >= (lane & ~(width - 1)) ? t : lane;
  });
}
static inline unsigned __ballot_sync(unsigned mask, int pred) {
  unsigned long long *s = cxemu::warp_slots();
  const int lane = cxemu::lane_id();
  s[lane] = pred != 0;
  cxemu::barrier_warp(mask);
  unsigned r = 0;
  for (int l = 0; l < 32; l++)
    if (((mask >> l) & 1u) && s[l]) r |= 1u << l;
  cxemu::barrier_warp(mask);
  return r;
}
static inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
static inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == __ballot_sync(mask, 1); }

template <class T>
static inline T __ldg(const T *p) { return *p; }
static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static inline int __float_as_int(float f) { int u; memcpy(&u, &f, 4); return u; }
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static inline float __int_as_float(int u) { float f; memcpy(&f, &u, 4); return f; }
static inline long long __double_as_longlong(double d) { long long u; memcpy(&u, &d, 8); return u; }
static inline double __longlong_as_double(long long u) { double d; memcpy(&d, &u, 8); return d; }
static inline int __popc(unsigned v) { return __builtin_popcount(v); }
static inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
static inline int __ffs(int v) { return __builtin_ffs(v); }
static inline int __ffsll(long long v) { return __builtin_ffsll(v); }
static inline int __clz(int v) { return v ? __builtin_clz((unsigned)v) : 32; }
static inline int __clzll(long long v) { return v ? __builtin_clzll((unsigned long long)v) : 64; }
static inline unsigned __brev(unsigned v) {
  unsigned r = 0;
  for (int i = 0; i < 32; i++) r |= ((v >> i) & 1u) << (31 - i);
  return r;
}
static inline float __saturatef(float v) { return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float rsqrtf(float v) { return 1.0f / sqrtf(v); }

/* CUDA's global min/max overloads */
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
static inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

/* Atomics: fibers of one block never preempt each other, and blocks run one at a time, so a
 * plain read-modify-write is atomic here. */
template <class T>
static inline T atomicAdd(T *p, T v) { T o = *p; *p = o + v; return o; }
template <class T>
static inline T atomicSub(T *p, T v) { T o = *p; *p = o - v; return o; }
template <class T>
static inline T atomicMax(T *p, T v) { T o = *p; *p = o > v ? o : v; return o; }
template <class T>
static inline T atomicMin(T *p, T v) { T o = *p; *p = o < v ? o : v; return o; }
template <class T>
static inline T atomicExch(T *p, T v) { T o = *p; *p = v; return o; }
template <class T>
static inline T atomicCAS(T *p, T cmp, T v) { T o = *p; if (o == cmp) *p = v; return o; }
template <class T>
static inline T atomicOr(T *p, T v) { T o = *p; *p = o | v; return o; }
template <class T>
static inline T atomicAnd(T *p, T v) { T o = *p; *p = o & v; return o; }
#endif /* __cplusplus */

#endif
