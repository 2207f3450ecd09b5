/* cuda_backend.cu — the CUDA backend object: device selection, memory, the sticky error,
 * stream, precision and scratch arena, and the op table of runtime/backend.h whose entries
 * forward to the launch functions of the per-op files (conv.cu, pool.cu, ...).
 * The table entries have the CPU signatures (void for most ops); their errors are reported
 * through cx_cuda_last_error(). Validated as a whole by `ctxdiff validate --device cuda`. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cuda_common.cuh"

static char g_err[1024];
static int g_has_err;
static char g_name[512];
static cudaStream_t g_stream;
static cx_precision g_prec = CX_PREC_FP32;
static void *g_scratch;
static size_t g_scratch_bytes;
static unsigned g_scratch_gen;

int cx_cuda_fail_at(const char *file, int line, const char *what, cudaError_t err) {
  if (!g_has_err) {
    snprintf(g_err, sizeof g_err, "%s:%d: %s: %s (%s)", file, line, what, cudaGetErrorString(err),
             cudaGetErrorName(err));
    g_has_err = 1;
  }
  return -1;
}

int cx_cuda_fail_msg(const char *file, int line, const char *fmt, ...) {
  if (!g_has_err) {
    int off = snprintf(g_err, sizeof g_err, "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    if (off > 0 && (size_t)off < sizeof g_err) vsnprintf(g_err + off, sizeof g_err - (size_t)off, fmt, ap);
    va_end(ap);
    g_has_err = 1;
  }
  return -1;
}

int cx_cuda_has_error(void) { return g_has_err; }
const char *cx_cuda_last_error(void) { return g_has_err ? g_err : NULL; }
void cx_cuda_clear_error(void) {
  g_has_err = 0;
  g_err[0] = 0;
  (void)cudaGetLastError(); /* also clear the runtime's non-sticky error */
}

cudaStream_t cx_cuda_stream(void) { return g_stream; }
void cx_cuda_set_stream(void *stream) { g_stream = (cudaStream_t)stream; }

void *cx_cuda_stream_create(void) {
  cudaStream_t s = NULL;
  const cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  if (e != cudaSuccess) {
    cx_cuda_fail_at(__FILE__, __LINE__, "cudaStreamCreateWithFlags", e);
    return NULL;
  }
  return (void *)s;
}

void cx_cuda_stream_destroy(void *stream) {
  if (!stream) return;
  (void)cudaStreamSynchronize((cudaStream_t)stream);
  (void)cudaStreamDestroy((cudaStream_t)stream);
}

void *cx_cuda_event_create(void) {
  cudaEvent_t ev = NULL;
  const cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDefault); /* timing enabled */
  if (e != cudaSuccess) {
    cx_cuda_fail_at(__FILE__, __LINE__, "cudaEventCreateWithFlags", e);
    return NULL;
  }
  return (void *)ev;
}

void cx_cuda_event_destroy(void *ev) {
  if (ev) (void)cudaEventDestroy((cudaEvent_t)ev);
}

int cx_cuda_event_record(void *ev) {
  CX_CUDA_CHECK(cudaEventRecord((cudaEvent_t)ev, g_stream));
  return 0;
}

int cx_cuda_stream_wait_event(void *ev) {
  CX_CUDA_CHECK(cudaStreamWaitEvent(g_stream, (cudaEvent_t)ev, 0));
  return 0;
}
int cx_cuda_event_sync(void *ev) {
  CX_CUDA_CHECK(cudaEventSynchronize((cudaEvent_t)ev));
  CX_CUDA_CHECK(cudaGetLastError());
  return 0;
}
double cx_cuda_event_elapsed_ms(void *start, void *end) {
  float ms = 0.0f;
  const cudaError_t e = cudaEventElapsedTime(&ms, (cudaEvent_t)start, (cudaEvent_t)end);
  if (e != cudaSuccess) return cx_cuda_fail_at(__FILE__, __LINE__, "cudaEventElapsedTime", e);
  return ms;
}

/* ---- CUDA graphs ---------------------------------------------------------------------- */

int cx_cuda_capture_begin(void) {
  if (!g_stream)
    return CX_CUDA_FAIL("stream capture needs a stream of its own (cx_cuda_set_stream), not the legacy default one");
  /* global mode: a forbidden call from any thread (a sync, a legacy-stream copy) fails the capture */
  CX_CUDA_CHECK(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeGlobal));
  return 0;
}

void *cx_cuda_capture_end(void) {
  cudaGraph_t graph = NULL;
  cudaError_t e = cudaStreamEndCapture(g_stream, &graph);
  if (e != cudaSuccess || g_has_err) {
    /* a table function that failed inside the capture returned early: the graph is incomplete */
    if (graph) (void)cudaGraphDestroy(graph);
    if (e != cudaSuccess) cx_cuda_fail_at(__FILE__, __LINE__, "cudaStreamEndCapture", e);
    return NULL;
  }
  cudaGraphExec_t exec = NULL;
  e = cudaGraphInstantiate(&exec, graph, 0);
  (void)cudaGraphDestroy(graph); /* the executable graph is independent of it */
  if (e != cudaSuccess) {
    cx_cuda_fail_at(__FILE__, __LINE__, "cudaGraphInstantiate", e);
    return NULL;
  }
  return (void *)exec;
}

int cx_cuda_graph_launch(void *graph_exec) {
  if (!graph_exec) return CX_CUDA_FAIL("internal: launch of a graph that was not captured");
  CX_CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)graph_exec, g_stream));
  return 0;
}

void cx_cuda_graph_destroy(void *graph_exec) {
  if (graph_exec) (void)cudaGraphExecDestroy((cudaGraphExec_t)graph_exec);
}
void cx_cuda_set_precision(cx_precision p) { g_prec = p; }
cx_precision cx_cuda_precision(void) { return g_prec; }
const char *cx_precision_name(cx_precision p) {
  return p == CX_PREC_FP16 ? "fp16" : p == CX_PREC_BF16 ? "bf16" : "fp32";
}

int cx_cuda_device_count(void) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError(); /* no driver / no device: not an error for the caller */
    return 0;
  }
  return n;
}

int cx_cuda_init(int device) {
  /* the kernels cache per-device facts (SM count, the wgmma check, shared-memory attributes) */
  static int in_use = -1;
  if (in_use >= 0 && device != in_use)
    return CX_CUDA_FAIL("this process already uses CUDA device %d; one GPU per process (run another process for "
                        "device %d)", in_use, device);
  int n = cx_cuda_device_count();
  if (device < 0 || device >= n) return CX_CUDA_FAIL("CUDA device %d requested but %d device(s) present", device, n);
  CX_CUDA_CHECK(cudaSetDevice(device));
  in_use = device;
  cudaDeviceProp p;
  CX_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  snprintf(g_name, sizeof g_name, "%s (sm_%d%d, %d SMs, %.1f GiB)", p.name, p.major, p.minor, p.multiProcessorCount,
           (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
  if (p.major < 8) {
    /* the kernels use cp.async and bf16 tensor cores (sm_80); the build carries sm_80/sm_90 SASS */
    return CX_CUDA_FAIL("device %s: compute capability %d.%d is below 8.0 (Ampere), the oldest this build runs on",
                        p.name, p.major, p.minor);
  }
  return 0;
}

const char *cx_cuda_device_name(void) { return g_name; }

int cx_cuda_mem_used(size_t *used, size_t *total) {
  size_t f = 0, t = 0;
  CX_CUDA_CHECK(cudaMemGetInfo(&f, &t));
  *used = t - f;
  *total = t;
  return 0;
}

void *cx_cuda_malloc(size_t bytes) {
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    cx_cuda_fail_at(__FILE__, __LINE__, "cudaMalloc", e);
    return NULL;
  }
  return p;
}

void cx_cuda_free(void *p) {
  if (p) (void)cudaFree(p);
}

void *cx_cuda_malloc_host(size_t bytes) {
  void *p = NULL;
  cudaError_t e = cudaMallocHost(&p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    cx_cuda_fail_at(__FILE__, __LINE__, "cudaMallocHost", e);
    return NULL;
  }
  return p;
}

void cx_cuda_free_host(void *p) {
  if (p) (void)cudaFreeHost(p);
}

int cx_cuda_upload(void *dst, const void *src, size_t bytes) {
  if (cx_cuda_upload_async(dst, src, bytes)) return -1;
  CX_CUDA_CHECK(cudaStreamSynchronize(g_stream));
  return 0;
}

int cx_cuda_upload_async(void *dst, const void *src, size_t bytes) {
  CX_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g_stream));
  return 0;
}

int cx_cuda_download_async(void *dst, const void *src, size_t bytes) {
  CX_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g_stream));
  return 0;
}

int cx_cuda_download(void *dst, const void *src, size_t bytes) {
  if (cx_cuda_download_async(dst, src, bytes)) return -1;
  CX_CUDA_CHECK(cudaStreamSynchronize(g_stream));
  return 0;
}

int cx_cuda_memset(void *dst, int byte, size_t bytes) {
  CX_CUDA_CHECK(cudaMemsetAsync(dst, byte, bytes, g_stream));
  return 0;
}

int cx_cuda_fill_nan(float *dst, size_t count) { return cx_cuda_fill_nan_impl(dst, count); }

int cx_cuda_sync(void) {
  CX_CUDA_CHECK(cudaStreamSynchronize(g_stream));
  CX_CUDA_CHECK(cudaGetLastError());
  return 0;
}

void *cx_cuda_scratch(size_t bytes) {
  if (bytes <= g_scratch_bytes) return g_scratch;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  if (g_stream && cudaStreamIsCapturing(g_stream, &cap) == cudaSuccess && cap != cudaStreamCaptureStatusNone) {
    /* growing syncs and reallocates: impossible inside a capture (a bug of the caller's warm-up) */
    cx_cuda_fail_msg(__FILE__, __LINE__,
                     "scratch arena of %zu bytes must grow to %zu inside a stream capture: size it by an eager run first",
                     g_scratch_bytes, bytes);
    return NULL;
  }
  if (g_scratch) {
    /* the old buffer may still be in use by queued work */
    const cudaError_t e = cudaStreamSynchronize(g_stream);
    if (e != cudaSuccess) {
      cx_cuda_fail_at(__FILE__, __LINE__, "cudaStreamSynchronize", e);
      return NULL;
    }
    cudaFree(g_scratch);
    g_scratch = NULL;
    g_scratch_bytes = 0;
  }
  size_t want = bytes + bytes / 4 + 4096;
  g_scratch_gen++;
  g_scratch = cx_cuda_malloc(want);
  if (g_scratch) g_scratch_bytes = want;
  return g_scratch;
}

void cx_cuda_release_scratch(void) {
  if (g_scratch) {
    (void)cudaStreamSynchronize(g_stream);
    cudaFree(g_scratch);
  }
  g_scratch = NULL;
  g_scratch_bytes = 0;
  g_scratch_gen++;
}

unsigned cx_cuda_scratch_generation(void) { return g_scratch_gen; }

/* ---- the op table: CPU signatures, forwarding to the launch functions ---------------- */

static int cuda_supports(cx_op op) { return op >= 0 && op < CX_OP_COUNT; }

static void t_conv2d(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y, const float *residual,
                     int relu, float *ws) {
  (void)ws;
  if (!g_has_err) cx_cuda_conv2d(d, x, n, h, w, y, residual, relu);
}
static void t_dense(const float *x, int rows, int in, const float *k, const float *bias, int out, int relu, float *y) {
  cx_conv2d_desc d = {1, 1, in, out, 1, 0, 0, 0, 0, k, bias, NULL, 0, NULL, 0};
  if (!g_has_err) cx_cuda_conv2d(&d, x, rows, 1, 1, y, NULL, relu);
}
static void t_maxpool(const float *x, int n, int h, int w, int c, int k, int s, float *y) {
  if (!g_has_err) cx_cuda_maxpool_same(x, n, h, w, c, k, s, y);
}
static void t_subsample2(const float *x, int n, int h, int w, int c, float *y) {
  if (!g_has_err) cx_cuda_subsample2(x, n, h, w, c, y);
}
static void t_upsample2_add(const float *x, int n, int h, int w, int c, float *y) {
  if (!g_has_err) cx_cuda_upsample2_add(x, n, h, w, c, y);
}
static void t_softmax(const float *x, size_t rows, int cols, float *y) {
  if (!g_has_err) cx_cuda_softmax_rows(x, rows, cols, y);
}
static void t_sigmoid(float *x, size_t count) {
  if (!g_has_err) cx_cuda_sigmoid(x, count);
}
static void t_deconv(const float *x, int n, int h, int w, int cin, const float *packed, const float *bias, int cout,
                     int relu, float *y, float *ws) {
  if (!g_has_err) cx_cuda_deconv2x2(x, n, h, w, cin, packed, bias, cout, relu, y, ws);
}
static void t_crop(const float *feat, int hf, int wf, int c, const float *boxes, int nb, int ph, int pw, float *out) {
  if (!g_has_err) cx_cuda_crop_and_resize(feat, hf, wf, c, boxes, nb, ph, pw, out);
}
static void t_roi_levels(const float *boxes, int nb, int image_h, int image_w, int *levels) {
  if (!g_has_err) cx_cuda_roi_levels(boxes, nb, image_h, image_w, levels);
}
static void t_deltas(const float *boxes, const float *deltas, int nb, float *out) {
  if (!g_has_err) cx_cuda_apply_box_deltas(boxes, deltas, nb, out);
}
static void t_clip(float *boxes, int nb, const float window[4]) {
  if (!g_has_err) cx_cuda_clip_boxes(boxes, nb, window);
}
static int t_topk(const float *scores, int n, int k, int *idx_out, int *ws) {
  (void)ws;
  return g_has_err ? -1 : cx_cuda_topk_stable(scores, n, k, idx_out);
}
static int t_nms(const float *boxes, const float *scores, int n, int max_out, float iou_threshold, int *sel_out,
                 void *ws) {
  (void)ws;
  return g_has_err ? -1 : cx_cuda_nms(boxes, scores, n, max_out, iou_threshold, sel_out);
}
static void t_resize_u8(const uint8_t *in, int ih, int iw, int c, int oh, int ow, uint8_t *out) {
  if (!g_has_err) cx_cuda_resize_u8(in, ih, iw, c, oh, ow, out);
}
static void t_resize_mask(const float *in, int ih, int iw, int oh, int ow, double *out) {
  if (!g_has_err) cx_cuda_resize_mask(in, ih, iw, oh, ow, out);
}

static void t_mask_class(const float *x, int rows, int pix, int cin, const float *kernel, const float *bias, int nc,
                         const int *cls, float *y) {
  if (!g_has_err) cx_cuda_mask_class(x, rows, pix, cin, kernel, bias, nc, cls, y, NULL);
}

static const cx_backend CUDA_BACKEND = {
    "cuda",       cuda_supports, t_conv2d, t_dense, t_maxpool,     t_subsample2, t_upsample2_add,
    t_softmax,    t_sigmoid,     t_deconv, t_crop,  t_roi_levels,  t_deltas,     t_clip,
    t_topk,       t_nms,         t_resize_u8, t_resize_mask, t_mask_class,
};

extern "C" const cx_backend *cx_backend_cuda(void) { return &CUDA_BACKEND; }
