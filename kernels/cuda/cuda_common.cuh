/* cuda_common.cuh — internal helpers shared by the kernels/cuda .cu files (not a public
 * header): error recording with file and line, the backend's stream and precision, the
 * scratch arena, grid sizing, and the launch functions each op file exports to
 * cuda_backend.cu. */
#ifndef CX_CUDA_COMMON_CUH
#define CX_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda_backend.h"

/* Records the first error (sticky) with file and line; returns -1 so callers can
 * `return cx_cuda_fail(...)`. */
int cx_cuda_fail_at(const char *file, int line, const char *what, cudaError_t err);
int cx_cuda_fail_msg(const char *file, int line, const char *fmt, ...);
int cx_cuda_has_error(void);

/* cudaCheck: evaluates a CUDA runtime call; on failure records it and returns -1 from the
 * enclosing function (which must return int). */
#define CX_CUDA_CHECK(call)                                                        \
  do {                                                                             \
    cudaError_t cx_e_ = (call);                                                    \
    if (cx_e_ != cudaSuccess) return cx_cuda_fail_at(__FILE__, __LINE__, #call, cx_e_); \
  } while (0)
/* After a kernel launch: catches launch-configuration errors (asynchronous faults show up at
 * the next synchronising call). */
#define CX_CUDA_LAUNCH_CHECK() CX_CUDA_CHECK(cudaGetLastError())
#define CX_CUDA_FAIL(...) cx_cuda_fail_msg(__FILE__, __LINE__, __VA_ARGS__)

cudaStream_t cx_cuda_stream(void);

/* Scratch arena: one device buffer, grown (never shrunk) when a call needs more; valid until
 * the next cx_cuda_scratch call. Returns NULL (error recorded) on failure. */
void *cx_cuda_scratch(size_t bytes);

/* Element index decomposition (q = i / d, *r = i % d, d > 0) for the one-thread-per-element
 * kernels: in 32-bit arithmetic while i fits (always, below 2^32 elements; the branch is
 * warp-uniform), as a 64-bit division is a ~70-instruction subroutine and these kernels would
 * otherwise spend more time on their index than on their memory traffic. */
#if defined(__CUDACC__) || defined(CTXDIFF_CUDA_EMU)
__device__ inline long long cx_divmod(long long i, int d, int *r) {
  if ((unsigned long long)i <= 0xffffffffull) {
    const unsigned q = (unsigned)i / (unsigned)d;
    *r = (int)((unsigned)i - q * (unsigned)d);
    return q;
  }
  const long long q = i / d;
  *r = (int)(i - q * d);
  return q;
}
#endif

static inline unsigned cx_blocks(size_t work, unsigned threads) {
  size_t b = (work + threads - 1) / threads;
  if (b > 1048576u) b = 1048576u; /* kernels use grid-stride loops beyond this */
  return b ? (unsigned)b : 1u;
}

/* ---- launch functions, one group per op file; all return 0 or -1 (error recorded) ---- */
/* conv.cu */
int cx_cuda_conv2d(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y,
                   const float *residual, int relu);
/* cx_cuda_conv2d_live with `per` images of this call per live item (deconv2x2 runs its GEMM as
 * n*h*w 1x1 images: per = h*w); live NULL: all n. */
int cx_cuda_conv2d_rows(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y,
                        const float *residual, int relu, const int *live, int per);
/* C_z[M][N] = A_z[M][K] x B_z[K][N] for z < batch, X_z = X + z * sX (elements), row-major,
 * strict fp32 with the conv kernels' arithmetic (v1/v2 as for a convolution), no epilogue.
 * live (device, or NULL): only rows m < *live * live_per - live_off are needed. */
int cx_cuda_gemm_f32_batched(const float *A, long long sA, const float *B, long long sB, float *C,
                             long long sC, int batch, int M, int K, int N, const int *live,
                             long long live_per, long long live_off);
/* winograd.cu: cx_cuda_conv2d's path for descriptors with a packed Winograd kernel (device);
 * live/per as cx_cuda_conv2d_rows */
int cx_cuda_conv3x3_winograd(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y,
                             const float *residual, int relu, const int *live, int per);
/* pool.cu */
int cx_cuda_maxpool_same(const float *x, int n, int h, int w, int c, int k, int s, float *y);
int cx_cuda_subsample2(const float *x, int n, int h, int w, int c, float *y);
/* elementwise.cu */
int cx_cuda_upsample2_add(const float *x, int n, int h, int w, int c, float *y);
int cx_cuda_softmax_rows(const float *x, size_t rows, int cols, float *y);
int cx_cuda_sigmoid(float *x, size_t count);
int cx_cuda_fill_nan_impl(float *x, size_t count);
/* deconv.cu */
int cx_cuda_deconv2x2(const float *x, int n, int h, int w, int cin, const float *packed,
                      const float *bias, int cout, int relu, float *y, float *ws);
/* crop_resize.cu */
int cx_cuda_crop_and_resize(const float *feat, int hf, int wf, int c, const float *boxes, int nb,
                            int ph, int pw, float *out);
int cx_cuda_roi_levels(const float *boxes, int nb, int image_h, int image_w, int *levels);
/* boxes.cu */
int cx_cuda_apply_box_deltas(const float *boxes, const float *deltas, int nb, float *out);
int cx_cuda_clip_boxes(float *boxes, int nb, const float window[4]);
/* sort.cu: stable descending order of n float scores (ties by ascending index, NaN last,
 * -0 == +0): writes the first k indices of that order into idx_out (device). ws: device
 * memory of cx_cuda_sort_ws(n) bytes, 256-byte aligned (callers carve it from the scratch). */
size_t cx_cuda_sort_ws(int n);
int cx_cuda_sort_desc_stable(const float *scores, int n, int k, int *idx_out, void *ws);
/* The same for nseg segments of n scores each ([nseg][n] -> [nseg][k] indices within each
 * segment) in one sort; ws of cx_cuda_sort_seg_ws(nseg, n) bytes. */
size_t cx_cuda_sort_seg_ws(int nseg, int n);
int cx_cuda_sort_desc_stable_seg(const float *scores, int nseg, int n, int k, int *idx_out, void *ws);
static inline size_t cx_align256(size_t v) { return (v + 255u) & ~(size_t)255u; }
/* topk.cu / nms.cu return the count, or -1 */
int cx_cuda_topk_stable(const float *scores, int n, int k, int *idx_out);
int cx_cuda_nms(const float *boxes, const float *scores, int n, int max_out, float iou_threshold,
                int *sel_out);
/* resize.cu */
int cx_cuda_resize_u8(const uint8_t *in, int ih, int iw, int c, int oh, int ow, uint8_t *out);
int cx_cuda_resize_mask(const float *in, int ih, int iw, int oh, int ow, double *out);

/* Descending-score sort key of kernels/cpu/sortkeys.h (cx_desc_key), on the device. */
static __device__ inline uint32_t cx_desc_key_dev(float v) {
  if (v != v) return 0xFFFFFFFFu;
  if (v == 0.0f) v = 0.0f;
  uint32_t u = __float_as_uint(v);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return ~u;
}

/* Minimum and maximum (as doubles) of in[0..count) over one thread block, for the
 * scikit-image clip range; every thread returns them. slo/shi: __shared__ scratch of
 * blockDim.x doubles each; blockDim.x must be a power of two. */
template <typename T>
static __device__ inline void cx_block_minmax(const T *__restrict__ in, size_t count, double *slo, double *shi,
                                              double *lo_out, double *hi_out) {
  double lo = (double)in[0], hi = lo;
  for (size_t q = threadIdx.x; q < count; q += blockDim.x) {
    const double v = (double)in[q];
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  slo[threadIdx.x] = lo;
  shi[threadIdx.x] = hi;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) {
      slo[threadIdx.x] = slo[threadIdx.x + s] < slo[threadIdx.x] ? slo[threadIdx.x + s] : slo[threadIdx.x];
      shi[threadIdx.x] = shi[threadIdx.x + s] > shi[threadIdx.x] ? shi[threadIdx.x + s] : shi[threadIdx.x];
    }
    __syncthreads();
  }
  *lo_out = slo[0];
  *hi_out = shi[0];
}

#endif
