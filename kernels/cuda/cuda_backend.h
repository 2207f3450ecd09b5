/* The CUDA backend: the op table of runtime/backend.h on device pointers, plus the small
 * device API its callers need (device selection, memory, precision, stream, errors).
 *
 * Every table function is host-callable, takes device pointers for all tensor arguments
 * (window[4] of clip_boxes is a host array, as a parameter), launches on the backend's
 * stream and returns without synchronising, except nms, which must return a count computed on
 * the device and therefore waits for the stream (cx_cuda_nms_dev keeps that count on the
 * device instead). topk_stable's count is min(k, n), known on the host: it does not wait.
 * Semantics are exactly those of the CPU kernels (kernels/cpu/cpu_kernels.h); `ctxdiff
 * validate --device cuda` compares every op with them.
 *
 * Workspaces: conv2d ignores `ws` (implicit GEMM, no im2col buffer); deconv2x2 uses `ws`
 * (n*h*w*4*cout floats of device memory) as the CPU kernel does; topk_stable, nms and the
 * Winograd conv path ignore their `ws` and use a scratch arena owned by the backend, grown
 * on first use for a shape and then reused (call them once at start-up with the largest n
 * to keep allocation off the per-image path; cx_cuda_release_scratch() frees it). Growing it synchronises and
 * reallocates, so it must already be large enough before a stream capture (it fails, instead
 * of growing, while the stream is capturing).
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
/* Device memory in use on the current device (all of it: this process's and others'), and its
 * size, in bytes (cudaMemGetInfo). 0, or -1 with the error recorded. */
int cx_cuda_mem_used(size_t *used, size_t *total);

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
/* The weights of a GEMM op rounded once to the 16-bit format of p (fp16 or bf16), for
 * cx_conv2d_desc.kernel16 / kernel16_prec: a device buffer of `count` 16-bit values (free with
 * cx_cuda_free), or NULL (error recorded). The conversion is the kernels' own (round to
 * nearest even), so a conv reading it computes exactly what it computes from fp32 weights
 * rounded while staging, with half the weight traffic. Synchronous. */
void *cx_cuda_weights16_upload(cx_precision p, const float *host, size_t count);
/* Which conv2d/dense kernels run (A/B timing, diagnosis; see kernels/cuda/conv.cu). Until it is
 * called, CTXDIFF_CUDA_CONV=v1|v2|v4|v5|v6|tune gives the initial value (read at the first conv). */
/* 0 auto (default; v3, cp.async, for 16-bit activations and weights), 1 v1 only, 2 v2 wherever
 * valid, 4 auto with v3's 256 x 128 tiles of 64 x 64 warp tiles where 128-wide unsplit tiles run,
 * 5 auto with the wgmma kernel there (sm_90a build on a compute capability 9.0 device, else as 0),
 * 6 as 5 with 128 x 256 wgmma tiles where cout > 128 and their grid fills the SMs */
void cx_cuda_set_conv_version(int v);
int cx_cuda_conv_version(void); /* the setting in force (0, 1, 2, 4, 5, 6 or 7 = tune) */
/* CTXDIFF_CUDA_CONV=tune (version 7): each conv shape gets the fastest of its candidate
 * configurations: the heuristic's; unsplit where it splits K (unless CTXDIFF_CUDA_SPLITK forces
 * a setting); the 128-wide tile where it takes 64 for an under-filled grid; v4, v5, v6 where
 * unsplit 128-wide v3 runs (those the device allows); for fp32 3x3 convs whose descriptor has
 * both forms, Winograd or the direct kernels. Timed on the conv's operands on first use outside
 * a stream capture and kept for the process.
 * cx_cuda_conv_tactics writes a summary ("12 shapes tuned: v3/v2 4, v4 3, ...; fp32 3x3
 * winograd 9, direct 3") and returns the number of shapes. */
int cx_cuda_conv_tactics(char *buf, size_t size);
/* The kernel the last conv2d / dense call queued ("v3 128x128 a16", "v2 128x64 split-K 4",
 * "winograd F(4x4,3x3)", "v1"), "" when it queued none or failed early: the per-op profile. */
const char *cx_cuda_conv_last_kernel(void);
/* 1 when the v5/v6 (wgmma) conv kernels can run here: sm_90a machine code in this build and an
 * H100/H200-class device (compute capability 9.0), always in the CPU emulator; 0 everywhere
 * with CTXDIFF_CUDA_WGMMA=0 (read once). */
int cx_cuda_conv_wgmma_available(void);
/* The SM count the conv tile and split-K choices assume (n > 0), or the device's again (0):
 * lets `ctxdiff validate` run its "v4/v5 forced" shapes on those kernels on any GPU (with the
 * device's 132 SMs they would take the narrow 64-wide tiles instead). Not for production use. */
void cx_cuda_set_sm_count_hint(int n);
/* Split-K for v2 GEMMs whose output tiles would leave SMs idle (conv.cu, pick_splits): slices of
 * K computed by separate blocks into fp32 partials in the scratch arena, then added in k order
 * with the epilogue. 0 auto (default), 1 off, s >= 2 forces s slices wherever v2 runs and K has
 * s x 64 columns (validation, A/B timing). Initial value from CTXDIFF_CUDA_SPLITK=off|N. */
void cx_cuda_set_splitk(int s);
/* 16-bit activations (fp16/bf16 precisions; bench/cuda-notes.md v2.3): conv2d whose input x
 * (x16) and/or output y and residual (y16) hold values in the precision's 16-bit format, the
 * epilogue still in fp32 and rounded once when stored. Needs the descriptor's 16-bit weights
 * (kernel16), cin % 16 == 0, cout % 4 == 0 and 16-byte aligned buffers; always the v2
 * tensor-core kernel (split-K as usual). cx_cuda_to16 / cx_cuda_from16 convert n values device
 * to device on the stream (the kernels' rounding: round to nearest even). */
int cx_cuda_conv2d_io(const cx_conv2d_desc *d, const void *x, int x16, int n, int h, int w, void *y, int y16,
                      const void *residual, int relu);
/* the same with a device-side row limit (live, per: as cx_cuda_conv2d_live, `per` images per
 * live item; the mask head) */
int cx_cuda_conv2d_io_rows(const cx_conv2d_desc *d, const void *x, int x16, int n, int h, int w, void *y, int y16,
                           const void *residual, int relu, const int *live, int per);
int cx_cuda_to16(const float *src, void *dst, size_t n);
int cx_cuda_from16(const void *src, float *dst, size_t n);
int cx_cuda_splitk(void); /* the setting in force */

/* Winograd F(4x4,3x3) / F(2x2,3x3) for fp32 3x3 / stride 1 / pad 1 convolutions (winograd.cu):
 * conv2d takes it when the descriptor's `winograd` is a device copy of the cx_winograd_pack
 * layout (tile in winograd_tile) and cx_winograd_applies() holds; fp16/bf16 keep the direct
 * kernels. On by default; CTXDIFF_CUDA_WINOGRAD=0 (read at the first conv) or
 * cx_cuda_set_winograd(0) turns it off (A/B timing, diagnosis). Its transformed tiles live
 * in the scratch arena (grown with a sync: size it by an eager run before a stream capture). */
void cx_cuda_set_winograd(int on);
int cx_cuda_winograd_on(void);
/* Packs a Keras (3, 3, cin, cout) host kernel with cx_winograd_pack (tile 4 or 2) and uploads
 * it: a device buffer of cx_winograd_packed_floats(tile, cin, cout) floats to free with
 * cx_cuda_free, or NULL (error recorded). Synchronous. */
float *cx_cuda_winograd_upload(int tile, const float *kernel_host, int cin, int cout);

/* The stream all table functions launch on: a cudaStream_t passed as void * so that C callers
 * need no CUDA headers. NULL (default) is the legacy default stream. */
void cx_cuda_set_stream(void *stream);
/* A new non-blocking stream (no implicit ordering with the legacy default stream, and it can
 * be captured, which the legacy stream cannot); NULL on failure (error recorded). */
void *cx_cuda_stream_create(void);
void cx_cuda_stream_destroy(void *stream); /* waits for its work first */

/* Events for stage timings without stage syncs (cudaEvent_t as void *). record: on the
 * backend's stream, not while it is capturing; elapsed: milliseconds between two recorded
 * events whose work has completed (after a synchronising call), or -1 (error recorded). */
void *cx_cuda_event_create(void); /* NULL on failure (error recorded) */
void cx_cuda_event_destroy(void *ev);
int cx_cuda_event_record(void *ev);
double cx_cuda_event_elapsed_ms(void *start, void *end);
/* Cross-stream order without a host wait: work queued on the backend's stream after this call
 * starts only once ev's latest record (on any stream) has completed. */
int cx_cuda_stream_wait_event(void *ev);
/* Host wait for ev's latest record; reports asynchronous errors as cx_cuda_sync does. */
int cx_cuda_event_sync(void *ev);

/* Asynchronous upload on the stream: src must be page-locked (cx_cuda_malloc_host) and stay
 * unchanged until the stream has passed the copy. */
int cx_cuda_upload_async(void *dst_dev, const void *src_host, size_t bytes);
/* Asynchronous download: dst must be page-locked; read it only after a synchronising call. */
int cx_cuda_download_async(void *dst_host, const void *src_dev, size_t bytes);

/* CUDA graphs: capture_begin starts recording the backend's stream (which must not be the
 * legacy default stream); the work queued until capture_end is not run but recorded, and
 * capture_end returns it instantiated (a cudaGraphExec_t), or NULL when the capture failed or
 * any error was recorded meanwhile (capture_end always ends the capture). Inside a capture
 * nothing may synchronise, allocate or copy from/to pageable host memory, and every pointer
 * and host-side launch argument is frozen into the graph. graph_launch replays it on the
 * stream (asynchronous). */
int cx_cuda_capture_begin(void);
void *cx_cuda_capture_end(void);
int cx_cuda_graph_launch(void *graph_exec);
void cx_cuda_graph_destroy(void *graph_exec);

/* First error since the last clear ("file:line: call: message"), or NULL. */
const char *cx_cuda_last_error(void);
void cx_cuda_clear_error(void);

void cx_cuda_release_scratch(void);
/* Changes whenever the scratch arena is reallocated or released: a
 * CUDA graph captured with another value holds a stale address and must be captured again. */
unsigned cx_cuda_scratch_generation(void);

/* The table's nms without the wait: the selection goes to sel_out and the count to *count_dev
 * (device memory), nothing is read back (nms.cu). 0, or -1 (error recorded). */
int cx_cuda_nms_dev(const float *boxes, const float *scores, int n, int max_out, float iou_threshold, int *sel_out,
                    int *count_dev);
/* nms_dev for nimg images at once (a batch's proposal layer): boxes [nimg][n][4], scores
 * [nimg][n]; image b's selections (indices within the image) at sel_out + b*max_out, its count
 * at count_dev[b]. The same selections as nimg separate calls. */
int cx_cuda_nms_batched_dev(const float *boxes, const float *scores, int nimg, int n, int max_out, float iou_threshold,
                            int *sel_out, int *count_dev);
/* The table's topk_stable for nseg images' scores [nseg][n] in one sort: idx_out [nseg][k]
 * (indices within each image). Returns min(k, n), or -1. */
int cx_cuda_topk_stable_seg(const float *scores, int nseg, int n, int k, int *idx_out);

/* Graph glue (graph_glue.cu): the host loops of runtime/model.c as device kernels, for the
 * GPU graph (runtime/model_gpu.c). All pointers are device memory except sd[4], p[4], fh[4],
 * fw[4] (host arrays passed by value); all launch on the stream without synchronising and
 * return 0, or -1 with cx_cuda_last_error() set. See graph_glue.cu for each one's loop. */
/* The RPN's two heads of one pyramid level, run as one 1x1 conv over the n images (rows b*hw + q
 * of `head`, ld values each: 2*apl class logits, then 4*apl box deltas, then padding), into
 * model.c's per-image concatenation: row b*A + off + q*apl + a of logits [n*A][2] and bbox
 * [n*A][4] (a < apl anchors per position, off: the level's first anchor). */
int cx_cuda_rpn_split(const float *head, int ld, int n, int hw, int apl, size_t A, size_t off, float *logits,
                      float *bbox);
/* Molding on the device (cx_gpu_submit): the table's resize_u8 with the input's min/max in
 * `range` (2 doubles of device memory the caller owns, so it may run beside work that uses the
 * scratch arena), and cx_mold_image's canvas for one image: src [rh][rw][3] uint8 placed at
 * (top, left) of out [H][W][3] float, minus mean[3] in double, padding (float)(0 - mean).
 * Both bit-identical to the CPU code. */
int cx_cuda_resize_u8_ranged(const uint8_t *in, int ih, int iw, int c, int oh, int ow, uint8_t *out, double *range);
int cx_cuda_mold(const uint8_t *src, int rh, int rw, int H, int W, int top, int left, const double mean[3], float *out);
/* p[l]: level P(l+2) [n, fh[l], fw[l], c], fp32, or with p16 the precision's 16-bit values (16-bit
 * activations); box i samples image img_of[i] (img_of != NULL) or i / rows_per_image; levels [nb]
 * from roi_levels (2..5); out [nb, pool, pool, c], fp32 or with out16 16-bit (the sample computed
 * in fp32, rounded once); live as below (boxes i < *live only). */
int cx_cuda_pyramid_roi_align(const void *const p[4], int p16, const int fh[4], const int fw[4], int c,
                              const float *boxes, const int *levels, const int *img_of, int rows_per_image, int nb,
                              int pool, void *out, int out16, const int *live);
/* subsample2 (pool.cu's [::2, ::2]) of 16-bit values: a copy, exact */
int cx_cuda_subsample2_16(const void *x, int n, int h, int w, int c, void *y);
/* ProposalLayer (model.c's cx_proposal_layer, spec §8) for n images of a anchors each, with
 * the same results: top pre_nms foreground scores per image (one segmented sort), decode,
 * clip to the unit square, NMS to r rows (one launch sequence), rois zero padded. The counts
 * stay on the device. step as for cx_cuda_detection (four launch groups). */
typedef struct cx_cuda_props {
  int n, a, pre_nms, r;   /* images, anchors, PRE_NMS_LIMIT, POST_NMS_ROIS_INFERENCE */
  float nms_thr;          /* RPN_NMS_THRESHOLD */
  float sd[4];            /* RPN_BBOX_STD_DEV */
  const float *probs, *bbox, *anchors; /* [n, a, 2], [n, a, 4], [a, 4] normalised */
  void *ws;               /* cx_cuda_proposals_ws(n, a, pre_nms, r) bytes, 256-byte aligned */
  float *rois;            /* [n, r, 4] */
} cx_cuda_props;
size_t cx_cuda_proposals_ws(int n, int a, int pre_nms, int r);
int cx_cuda_proposals(const cx_cuda_props *p, void (*step)(void *ctx, const char *name), void *ctx);
/* DetectionLayer (model.c's cx_detection_layer, spec §11) for n images of r rows each, in
 * four steps on the device with the same results: argmax class and its deltas, refine, clip
 * to each image's window, per-class NMS, stable top max_out by score. step (may be NULL) is
 * called on the host before each of three launch groups with its name (the profile's marks). */
typedef struct cx_cuda_det {
  int n, r, nc, max_out;  /* images, POST_NMS_ROIS_INFERENCE, classes, DETECTION_MAX_INSTANCES */
  int use_min;            /* DETECTION_MIN_CONFIDENCE != 0 (matterport: 0 means no threshold) */
  float min_conf, nms_thr; /* DETECTION_MIN_CONFIDENCE, DETECTION_NMS_THRESHOLD */
  float sd[4];            /* BBOX_STD_DEV */
  const float *rois, *probs, *deltas; /* [n, r, 4], [n, r, nc], [n, r, nc, 4] */
  const float *windows;   /* [n, 4] normalised clip windows */
  void *ws;               /* cx_cuda_detection_ws(n, r, nc) bytes, 256-byte aligned */
  float *det;             /* [n, max_out, 6], zero padded */
  int *det_count;         /* [n] */
} cx_cuda_det;
size_t cx_cuda_detection_ws(int n, int r, int nc);
int cx_cuda_detection(const cx_cuda_det *a, void (*step)(void *ctx, const char *name), void *ctx);
/* boxes [sum count, 4], img_of / cls_of [sum count]; *total (device, may be NULL) = sum count */
int cx_cuda_mask_pack(const float *det, const int *det_count, int n, int d, float *boxes, int *img_of, int *cls_of,
                      int *total);
/* cx_mask_class_sigmoid on the device (x [rows, pix, cin], kernel [cin, nc], bias [nc], cls_of
 * [rows] -> y [rows, pix]), rows < *live */
int cx_cuda_mask_class(const float *x, int rows, int pix, int cin, const float *kernel, const float *bias, int nc,
                       const int *cls_of, float *y, const int *live);

/* Device-side row limits, so that a stage whose row count is computed on the device (the mask
 * head's detection count) runs without reading it back and can sit inside a CUDA graph: the
 * launch covers all n images (rows) of the buffers and only the first *live are computed,
 * *live read on the device when the kernels run (live NULL: all n; values above n act as n).
 * Outputs of the rows past the limit are unspecified (tiles that straddle it are computed in
 * full, whole tiles past it return at once); inputs there are never read for live outputs.
 * Same arithmetic as the table's conv2d / deconv2x2 / roi_levels on the live rows. */
int cx_cuda_conv2d_live(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y, const float *residual,
                        int relu, const int *live);
/* packed16/packed16_prec: the packed kernel in 16 bits (cx_cuda_weights16_upload), or NULL/0;
 * packed may be NULL when packed16 matches the precision */
/* x16: x holds 16-bit activations (fp16/bf16; needs packed16 and cin % 16 == 0) */
int cx_cuda_deconv2x2_live(const void *x, int x16, int n, int h, int w, int cin, const float *packed,
                           const void *packed16, int packed16_prec, const float *bias, int cout, int relu, float *y,
                           float *ws, const int *live);
int cx_cuda_roi_levels_live(const float *boxes, int nb, int image_h, int image_w, int *levels, const int *live);
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
