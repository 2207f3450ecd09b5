/* The CUDA backend: the op table of runtime/backend.h on device pointers, plus the small
 * device API its callers need (device selection, memory, precision, stream, errors).
 *
 * Every table function is host-callable, takes device pointers for all tensor arguments
 * (window[4] of clip_boxes is a host array, as a parameter), launches on the backend's
 * stream and returns without synchronising, except topk_stable and nms, which must return a
 * count and therefore wait for the stream. Semantics are exactly those of the CPU kernels
 * (kernels/cpu/cpu_kernels.h); `ctxdiff validate --device cuda` compares every op with them.
 *
 * Workspaces: conv2d ignores `ws` (implicit GEMM, no im2col buffer); deconv2x2 uses `ws`
 * (n*h*w*4*cout floats of device memory) as the CPU kernel does; topk_stable and nms ignore
 * their `ws` and use a scratch arena owned by the backend, grown on first use for a shape
 * and then reused (call them once at start-up with the largest n to keep allocation off
 * the per-image path; cx_cuda_release_scratch() frees it).
 *
 * Errors: library code never exits. The first CUDA error (with file and line) is kept as a
 * sticky message readable through cx_cuda_last_error(); table functions return early once an
 * error is set (topk_stable/nms then return -1). */
#ifndef CX_CUDA_BACKEND_H
#define CX_CUDA_BACKEND_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" { /* backend.h and cpu_kernels.h are plain C headers */
#endif

#include "backend.h"

/* Number of usable CUDA devices; 0 when there is no device or no driver (never fails). */
int cx_cuda_device_count(void);
/* Selects the device and creates nothing else; 0 on success, -1 (message in
 * cx_cuda_last_error()) on failure. Call before any other function. */
int cx_cuda_init(int device);
/* "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)" after cx_cuda_init, else "". */
const char *cx_cuda_device_name(void);

/* Device memory. cx_cuda_malloc returns NULL on failure (error recorded). */
void *cx_cuda_malloc(size_t bytes);
void cx_cuda_free(void *p);
/* Page-locked host memory (faster, truly asynchronous copies); NULL on failure (error recorded). */
void *cx_cuda_malloc_host(size_t bytes);
void cx_cuda_free_host(void *p);
int cx_cuda_upload(void *dst_dev, const void *src_host, size_t bytes);   /* synchronous */
int cx_cuda_download(void *dst_host, const void *src_dev, size_t bytes); /* synchronous */
int cx_cuda_memset(void *dst_dev, int byte, size_t bytes);               /* on the stream */
/* Fills count floats with NaN (poisoning outputs before a validation run). */
int cx_cuda_fill_nan(float *dst_dev, size_t count);
int cx_cuda_sync(void); /* waits for the stream, reports asynchronous kernel errors */

/* Arithmetic of the GEMM ops (conv2d, dense, deconv2x2). FP32 is strict fp32 on CUDA cores
 * (no TF32); FP16/BF16 round the operands to 16 bits and accumulate in fp32 on tensor cores.
 * Every other op is fp32 (or double where the CPU kernel is) whatever this says. */
typedef enum cx_precision { CX_PREC_FP32 = 0, CX_PREC_FP16 = 1, CX_PREC_BF16 = 2 } cx_precision;
void cx_cuda_set_precision(cx_precision p);
cx_precision cx_cuda_precision(void);
const char *cx_precision_name(cx_precision p);

/* The stream all table functions launch on: a cudaStream_t passed as void * so that C callers
 * need no CUDA headers. NULL (default) is the legacy default stream. */
void cx_cuda_set_stream(void *stream);

/* First error since the last clear ("file:line: call: message"), or NULL. */
const char *cx_cuda_last_error(void);
void cx_cuda_clear_error(void);

void cx_cuda_release_scratch(void);

/* Graph glue (graph_glue.cu): the host loops of runtime/model.c as device kernels, for the
 * GPU graph (runtime/model_gpu.c). All pointers are device memory except sd[4], p[4], fh[4],
 * fw[4] (host arrays passed by value); all launch on the stream without synchronising and
 * return 0, or -1 with cx_cuda_last_error() set. See graph_glue.cu for each one's loop. */
int cx_cuda_column(const float *x, int rows, int stride, int col, float *y);
int cx_cuda_gather_proposals(const int *topk, int k, const float *scores, const float *bbox, const float *anchors,
                             const float sd[4], float *pre_scores, float *pre_deltas, float *pre_boxes);
int cx_cuda_gather_rois(const float *boxes, const int *sel, int kept, int r, float *rois);
/* p[l]: level P(l+2) [n, fh[l], fw[l], c]; box i samples image img_of[i] (img_of != NULL) or
 * i / rows_per_image; levels [nb] from roi_levels (2..5); out [nb, pool, pool, c]. */
int cx_cuda_pyramid_roi_align(const float *const p[4], const int fh[4], const int fw[4], int c, const float *boxes,
                              const int *levels, const int *img_of, int rows_per_image, int nb, int pool,
                              float *out);
int cx_cuda_det_select(const float *probs, const float *deltas, int rows, int nc, const float sd[4], int *cls,
                       float *score, float *d);
/* refined/cls/score: [n, r] rows; alive [n, r] bytes (cleared here); ws: cx_cuda_class_nms_ws bytes. */
size_t cx_cuda_class_nms_ws(int n, int r, int nc);
int cx_cuda_class_nms(const float *refined, const int *cls, const float *score, int n, int r, int nc, int max_out,
                      int use_min, float min_conf, float thr, int *ws, unsigned char *alive);
/* det [n, max_out, 6] (zero padded), det_count [n]; list_ws [n, r] ints. */
int cx_cuda_det_finalize(const float *refined, const int *cls, const float *score, const unsigned char *alive, int n,
                         int r, int max_out, int *list_ws, float *det, int *det_count);
/* boxes [sum count, 4], img_of / cls_of [sum count] */
int cx_cuda_mask_pack(const float *det, const int *det_count, int n, int d, float *boxes, int *img_of, int *cls_of);
/* masks [rows, 28, 28, nc] -> out [rows, 28, 28] = sigmoid(masks[..., cls_of[row]]) */
int cx_cuda_mask_select(const float *masks, const int *cls_of, int rows, int nc, float *out);
/* unmold.cu: masks [rows, 28, 28] (sigmoid, own class) -> for mask k: row prm[4k], resampled to
 * prm[4k+1] x prm[4k+2] (skimage order 1, as resize_mask) and thresholded at 0.5, 0/1 bytes at
 * out + off[k]; max_area = the largest bh*bw (grid size). */
int cx_cuda_mask_unmold(const float *masks, const int *prm, const long long *off, int nm, long long max_area,
                        unsigned char *out);

/* The op table. Supports every op of backend.h. */
const cx_backend *cx_backend_cuda(void);

#ifdef __cplusplus
}
#endif

#endif
