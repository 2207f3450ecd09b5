/* The Mask R-CNN graph on the CUDA backend (CUDA builds): the same stages, in the same order
 * and with the same ops as the CPU graph (model.c, the reference), on device memory.
 *
 *   host:   molding's checks and geometry (cx_mold_batch, as the CPU path); the uint8 images
 *           copied to page-locked memory and uploaded (3 MB per 1024x1024 image instead of 12.6
 *           MB of molded floats); on the device, resized (resize.cu, bit-identical to the CPU)
 *           and molded (graph_glue.cu mold: cx_mold_image's arithmetic). CTXDIFF_GPU_HOST_MOLD=1
 *           (read at attach; diagnosis) molds on the host with model.c's code instead.
 *   device: ResNet + FPN (implicit-GEMM convs), RPN, proposals (top-k + TF NMS of every image,
 *           all images in the same launches: a segmented sort, one scan block per image),
 *           PyramidROIAlign of all ROIs of all images in one launch, classifier, detection
 *           layer (argmax, refine, clip, per-class NMS, top-k: graph_glue.cu), mask head on
 *           the valid detections of all images packed together
 *   unmold: pixel boxes on the host (model.c's expressions); masks resampled to their boxes
 *           and thresholded on the device (unmold.cu, bit-identical to the CPU resampler),
 *           downloaded packed, pasted on the host.
 *           CTXDIFF_GPU_HOST_UNMOLD=1 (read at attach; a diagnosis aid) downloads the 28x28
 *           planes instead and unmolds with model.c's cx_unmold, exactly the CPU code.
 *
 * Host round trips: none inside the network. The proposal NMS counts and the detection counts
 * stay on the device: cx_cuda_proposals' NMS -> ROI gather, and mask_pack's total ->
 * the mask head, whose launches cover every possible detection row (n *
 * DETECTION_MAX_INSTANCES) and compute the first `total` only (the *_live kernels: whole
 * tiles past it return at once). The first wait reads the final detections; the unmold then
 * needs one more (boxes up, packed masks down). Stage timings come from CUDA events recorded
 * at the stage boundaries on the model's own non-blocking stream, read after that wait.
 *
 * CUDA graphs: the four stages between the upload and the detection download (backbone/FPN,
 * RPN/proposals, classifier/detection, mask head; ~190 launches per image) are captured once
 * per plan (batch, molded shape, precision, conv version) and slot (below) into one graph
 * each and replayed with one launch each afterwards; four graphs rather than one so that
 * events between them still time the stages. A slot's first batch runs eagerly: it sizes the
 * backend's scratch arena (growing it syncs and reallocates, impossible inside a capture) and
 * the conv kernels' one-time set-up; the second captures and launches; later ones replay. Every
 * buffer the graphs touch is a plan buffer (fixed addresses) or the scratch arena (its
 * generation is checked before a replay); per-call inputs (molded batch, clip windows)
 * are uploaded into plan buffers before the graphs run. CTXDIFF_GPU_GRAPH=0 (read at
 * attach; a diagnosis aid) runs every call eagerly.
 *
 * Pipelining (cx_detect_submit / cx_detect_collect; cx_detect is the two back to back): up
 * to NSLOT batches in flight. What a batch owns while the next one runs is per slot (gslot:
 * molded input, clip windows, mask planes, page-locked staging, the graphs captured for those
 * addresses); the rest is shared, as the compute stream runs one batch's graphs after the
 * other. submit molds on the host, uploads on a second stream (`copy`, overlapping the graphs
 * of the batch before), makes the compute stream wait for the upload's event, queues the four
 * stages and the detection download; collect waits for that batch's last event and unmolds,
 * its device part also on the copy stream (overlapping the next batch's graphs). A slot is
 * reused only after its batch was collected, i.e. after its graphs finished.
 *
 * Weights are uploaded once at attach (folded kernels, Keras layout, the CPU's arrays): in fp32
 * for an fp32 model; for fp16/bf16 models converted once to that 16-bit format
 * (cx_cuda_weights16_upload, desc.kernel16: half the memory and weight traffic, the same
 * values the kernels would round fp32 weights to); biases stay fp32. fp16 models also keep the
 * feature maps in 16 bits (act16; CTXDIFF_GPU_ACT16=0 keeps them fp32, =1 turns it on for bf16,
 * off by default there: see cx_gpu_attach): C1
 * after the pool through C5 (residuals included), P2..P6 and the RPN's shared conv output,
 * through cx_cuda_conv2d_io (epilogues in fp32, one rounding at the store), the 16-bit
 * subsample for P6, the ROI align reading 16-bit levels and writing 16-bit pooled features,
 * and the mask head's four 3x3 convs. fp32 stay: the FPN laterals' sums (Q, the upsample-add),
 * the RPN logits, the classifier after its 7x7 conv, the deconvolution's output and the mask
 * logits. An fp32 model also gets the Winograd form of
 * every kernel the CPU packed (3x3/1 SAME; cx_cuda_winograd_upload, (T+2)^2/9 times those
 * kernels' bytes: ~0.44 GB more for ResNet-101 at F(4x4,3x3)). Buffers are planned per (batch, molded
 * shape) on first use and kept (re-planned only when the shape changes); the per-image path
 * allocates nothing but its results. The dump directory (cx_model_set_dump_dir) is a CPU-path
 * testing aid and is ignored here. */
#ifdef CTXDIFF_HAVE_CUDA
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_backend.h"
#include "model_internal.h"

#define FEAT 256 /* TOP_DOWN_PYRAMID_SIZE: fixed by the weights */
#define NSTAGE 4 /* backbone/FPN, RPN/proposals, classifier/detection, mask head */
#define NSLOT 2  /* batches in flight (cx_detect_submit before cx_detect_collect) */
/* columns of the merged RPN heads: 6 per anchor (2 logits, 4 deltas), padded with zero weights
 * to a multiple of 8 (vector stores, and v3's cp.async B chunks in 16-bit models) */
#define RPN_HEADS_LD(apl) ((6 * (apl) + 7) / 8 * 8)
/* events per slot: [0]/[1] before/after the upload (copy stream), [2] graph start (compute
 * stream, after waiting for the upload), [3 + s] after stage s, [NEV - 1] after the downloads */
#define NEV (NSTAGE + 4)

/* What a batch in flight owns while the next one is uploaded and computed: its input, its
 * clip windows and mask planes on the device, its staging and results on the host, and the
 * CUDA graphs captured for these addresses. */
typedef struct gslot {
  float *molded, *d_win, *mask_sel; /* device; d_win [n, 4]: normalised clip windows */
  float *h_molded, *h_win, *h_det, *h_masks; /* page-locked host (h_molded: host molding only) */
  /* device molding: the batch's uint8 images, page-locked and on the device, their resized
   * forms and min/max (grown to the largest batch seen; not part of the graphs) */
  uint8_t *h_u8, *d_u8, *d_rs;
  double *d_range;
  size_t h_u8_cap, d_u8_cap, rs_cap, range_cap; /* bytes */
  int *h_count;
  void *graph[NSTAGE];  /* NULL: not captured yet; valid for the key below */
  int runs;             /* batches queued on this slot: 0 -> the next one runs eagerly */
  cx_precision g_prec;  /* precision, conv version and scratch generation at capture */
  int g_conv;
  unsigned g_scratch;
} gslot;

typedef struct glayer {
  cx_conv2d_desc d; /* kernel, bias and winograd (fp32 only, else NULL) are device pointers */
  int same;
} glayer;

typedef struct gblock {
  glayer a, b, c, shortcut;
  int has_shortcut;
} gblock;

/* A list of device allocations freed together. */
typedef struct dlist {
  void **p;
  int n, cap;
} dlist;

typedef struct gplan {
  int valid, n, H, W;
  int fh[5], fw[5];
  size_t A, level_off[5];
  float *anchors, *act[5], *C[4], *Q[4], *P[5];
  float *rpn_shared, *rpn_logits, *rpn_probs, *rpn_bbox;
  unsigned char *prop_ws; /* cx_cuda_proposals' workspace */
  float *rois;
  int *levels;
  float *pool7, *fc1, *fc2, *logits, *probs, *deltas;
  unsigned char *det_ws; /* cx_cuda_detection's workspace */
  float *det;
  int *det_count;
  int *mtotal; /* [1] the batch's detection count: the mask head's live rows, on the device */
  float *mboxes;
  int *mimg, *mcls;
  float *pool14, *mask_a, *mask_b, *deconv, *deconv_ws;
  dlist dev;
  gslot slot[NSLOT];
  int cur; /* the slot the stage functions read and write */
  /* unmold (within one collect call): pixel boxes and the device resampling parameters */
  float *h_rel;
  int32_t *h_boxes;
  int *h_prm, *d_prm;           /* [nD][4]: mask row, bh, bw, 0 */
  long long *h_off, *d_off;     /* [nD] byte offsets into the packed masks */
  long long *h_rowoff;          /* [nD] offset of each mask row, -1 when its box is empty */
} gplan;

/* A submitted batch (in slot order): what collect needs besides the slot's buffers. */
typedef struct gbatch {
  int n;
  cx_mold_info *mi; /* [n] */
  cx_image *dims;   /* [n] sizes of the original images (rgb NULL: not kept) */
  size_t *u8_off;   /* [n + 1] image i's bytes in the slot's uint8 buffers: [u8_off[i], u8_off[i+1]) */
  int cap;
  double t0, host_ms; /* submit start (now_ms), host time of the submit (copies or molding) */
} gbatch;

/* Per-op profile (cx_gpu_profile): while `on` (> 0), every op of the four stages is preceded by
 * a mark, an event on the compute stream with the op's name and counted FLOPs, and each stage
 * ends with an unnamed mark; op i ran from ev[i] to ev[i + 1]. -1: an event failed. */
#define MARK_CONV 1 /* the kernel's name comes from conv.cu when the next mark is set */
#define MARK_ROWS 2 /* flops are per mask-head row (the row count is known after the run) */
typedef struct gprof {
  int on, n, cap, stage;
  void **ev;
  cx_op_time *op;
  unsigned char *flags;
} gprof;

struct cx_gpu_model {
  cx_precision prec;
  glayer conv1;
  gblock blocks[4][23];
  glayer fpn_lat[4], fpn_out[4];
  glayer rpn_shared;
  glayer rpn_heads; /* rpn_class_raw and rpn_bbox_pred as one 1x1 conv: RPN_HEADS_LD columns */
  int rpn_apl;      /* anchors per position (rpn_class_raw's cout / 2) */
  glayer cls_conv1, cls_conv2, cls_logits, cls_bbox;
  glayer mask_conv[4];
  float *mask_out_k, *mask_out_b; /* mrcnn_mask [256][nc] and [nc], fp32 in every precision */
  float *deconv_packed, *deconv_bias; /* deconv_packed NULL in 16-bit models: deconv16 */
  void *deconv16;
  dlist weights;
  gplan plan;
  int host_unmold;
  int host_mold; /* CTXDIFF_GPU_HOST_MOLD=1: model.c's molding on the host, 12.6 MB of floats up per image */
  int use_graph; /* CTXDIFF_GPU_GRAPH != 0 */
  int act16;     /* feature maps in 16 bits (see the top; fp16 by default, CTXDIFF_GPU_ACT16) */
  void *stream;     /* our non-blocking compute stream (capturable) */
  void *copy;       /* uploads of the next batch and the unmold of the last: overlap the graphs */
  void *ev[NSLOT][NEV];
  gbatch batch[NSLOT];
  int head, npending; /* the oldest pending slot, batches submitted and not collected */
  /* packed thresholded box masks of one batch: grow-only (their size depends on the boxes) */
  unsigned char *d_packed, *h_packed;
  size_t packed_cap;
  gprof prof;
};

static void prof_free(gprof *P);

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Turns the backend's sticky error into e (and clears it so the model stays usable). */
static int cuda_fail(cx_err *e, const char *what) {
  const char *msg = cx_cuda_last_error();
  cx_fail(e, "CUDA %s: %s", what, msg ? msg : "unknown error");
  cx_cuda_clear_error();
  return -1;
}

/* Adds device memory allocated elsewhere to the list; 0, or -1 (p not added). */
static int dl_add(dlist *l, void *p, cx_err *e) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 64;
    void **np = realloc(l->p, (size_t)cap * sizeof *np);
    if (!np) return cx_fail(e, "out of host memory tracking GPU buffers");
    l->p = np;
    l->cap = cap;
  }
  l->p[l->n++] = p;
  return 0;
}

static void *dl_alloc(dlist *l, size_t bytes, cx_err *e, const char *what) {
  void *p = cx_cuda_malloc(bytes ? bytes : 1);
  if (!p) {
    cx_fail(e, "cannot allocate %.1f MiB of GPU memory for %s: %s", bytes / 1048576.0, what,
            cx_cuda_last_error() ? cx_cuda_last_error() : "cudaMalloc failed");
    cx_cuda_clear_error();
    return NULL;
  }
  if (dl_add(l, p, e)) {
    cx_cuda_free(p);
    return NULL;
  }
  return p;
}

static void dl_free(dlist *l) {
  for (int i = 0; i < l->n; i++) cx_cuda_free(l->p[i]);
  free(l->p);
  memset(l, 0, sizeof *l);
}

/* ---- weights ---------------------------------------------------------------------------- */

static int up_floats(cx_gpu_model *g, const float *host, size_t count, float **out, cx_err *e, const char *what) {
  *out = NULL;
  if (!host) return 0;
  float *d = dl_alloc(&g->weights, count * sizeof(float), e, what);
  if (!d) return -1;
  if (cx_cuda_upload(d, host, count * sizeof(float))) return cuda_fail(e, "weight upload");
  *out = d;
  return 0;
}

/* Weights of a 16-bit model: rounded once here (the kernels read them as they are). */
static int up_16(cx_gpu_model *g, const float *host, size_t count, void **out, cx_err *e) {
  *out = cx_cuda_weights16_upload(g->prec, host, count);
  if (!*out) return cuda_fail(e, "16-bit weight upload");
  if (dl_add(&g->weights, *out, e)) {
    cx_cuda_free(*out);
    *out = NULL;
    return -1;
  }
  return 0;
}

static int up_layer(cx_gpu_model *g, const cx_layer *L, glayer *G, cx_err *e);

/* rpn_class_raw (2*apl columns) and rpn_bbox_pred (4*apl) side by side in one [cin][ld] kernel,
 * zero columns after them: one GEMM over all images of a level instead of two per image, and
 * the 64-wide tile a head would fill to 6 or 12 columns filled to 18 */
static int up_rpn_heads(const cx_model *m, cx_gpu_model *g, cx_err *e) {
  const int apl = m->rpn_class.d.cout / 2;
  cx_layer L;
  if (cx_rpn_heads_layer(m, RPN_HEADS_LD(apl), &L, e)) return -1;
  g->rpn_apl = apl;
  const int rc = up_layer(g, &L, &g->rpn_heads, e);
  free(L.kernel);
  free(L.bias);
  return rc;
}

static int up_layer(cx_gpu_model *g, const cx_layer *L, glayer *G, cx_err *e) {
  G->d = L->d;
  G->same = L->same;
  G->d.winograd = NULL;
  G->d.winograd_tile = 0;
  G->d.kernel16 = NULL;
  G->d.kernel16_prec = 0;
  const size_t kn = (size_t)L->d.kh * L->d.kw * L->d.cin * L->d.cout;
  float *k = NULL, *b;
  void *k16 = NULL;
  if (!L->kernel) return cx_fail(e, "internal: a convolution layer has no kernel");
  /* fp32 models keep fp32 kernels; fp16/bf16 ones only the 16-bit copy (half the memory and
   * half the weight traffic of the GEMMs) */
  if ((g->prec == CX_PREC_FP32 ? up_floats(g, L->kernel, kn, &k, e, "a convolution kernel") : up_16(g, L->kernel, kn, &k16, e)) ||
      up_floats(g, L->bias, (size_t)L->d.cout, &b, e, "a convolution bias"))
    return -1;
  G->d.kernel = k;
  G->d.kernel16 = k16;
  G->d.kernel16_prec = k16 ? (int)g->prec : 0;
  G->d.bias = b;
  /* fp32 convs take winograd.cu's path when the layer has a Winograd form; 16-bit ones never do */
  if (L->d.winograd && g->prec == CX_PREC_FP32) {
    float *u = cx_cuda_winograd_upload(L->d.winograd_tile, L->kernel, L->d.cin, L->d.cout);
    if (!u) return cuda_fail(e, "Winograd kernel upload");
    if (dl_add(&g->weights, u, e)) {
      cx_cuda_free(u);
      return -1;
    }
    G->d.winograd = u;
    G->d.winograd_tile = L->d.winograd_tile;
  }
  return 0;
}

static void graphs_free(gslot *S) {
  for (int s = 0; s < NSTAGE; s++) {
    cx_cuda_graph_destroy(S->graph[s]);
    S->graph[s] = NULL;
  }
  S->runs = 0;
}

static void plan_free(gplan *p) {
  for (int i = 0; i < NSLOT; i++) {
    gslot *S = &p->slot[i];
    graphs_free(S);
    cx_cuda_free_host(S->h_molded);
    cx_cuda_free_host(S->h_u8);
    cx_cuda_free(S->d_u8);
    cx_cuda_free(S->d_rs);
    cx_cuda_free(S->d_range);
    S->h_u8 = S->d_u8 = S->d_rs = NULL;
    S->d_range = NULL;
    S->h_u8_cap = S->d_u8_cap = S->rs_cap = S->range_cap = 0;
    cx_cuda_free_host(S->h_det);
    cx_cuda_free_host(S->h_masks);
    cx_cuda_free_host(S->h_count);
    cx_cuda_free_host(S->h_win);
  }
  dl_free(&p->dev);
  cx_cuda_free_host(p->h_prm);
  cx_cuda_free_host(p->h_off);
  free(p->h_rel);
  free(p->h_boxes);
  free(p->h_rowoff);
  memset(p, 0, sizeof *p);
}

void cx_gpu_detach(cx_model *m) {
  cx_gpu_model *g = m->gpu;
  if (!g) return;
  cx_cuda_set_stream(g->copy);
  (void)cx_cuda_sync();
  cx_cuda_set_stream(g->stream);
  (void)cx_cuda_sync();
  plan_free(&g->plan);
  dl_free(&g->weights);
  cx_cuda_free(g->d_packed);
  cx_cuda_free_host(g->h_packed);
  cx_cuda_release_scratch();
  prof_free(&g->prof);
  for (int i = 0; i < NSLOT; i++) {
    for (int k = 0; k < NEV; k++) cx_cuda_event_destroy(g->ev[i][k]);
    free(g->batch[i].mi);
    free(g->batch[i].dims);
    free(g->batch[i].u8_off);
  }
  cx_cuda_set_stream(NULL);
  cx_cuda_stream_destroy(g->copy);
  cx_cuda_stream_destroy(g->stream);
  cx_cuda_clear_error();
  free(g);
  m->gpu = NULL;
}

int cx_gpu_attach(cx_model *m, const char *precision, int device_index, cx_err *e) {
  cx_precision prec;
  if (!precision || !strcmp(precision, "fp32")) prec = CX_PREC_FP32;
  else if (!strcmp(precision, "fp16")) prec = CX_PREC_FP16;
  else if (!strcmp(precision, "bf16")) prec = CX_PREC_BF16;
  else return cx_fail(e, "unknown precision '%s' (fp32, fp16 or bf16)", precision);
  if (cx_gpu_available(device_index, e)) return -1;
  if (cx_cuda_init(device_index)) return cuda_fail(e, "device");
  cx_gpu_model *g = calloc(1, sizeof *g);
  if (!g) return cx_fail(e, "out of memory");
  g->prec = prec;
  const char *hu = getenv("CTXDIFF_GPU_HOST_UNMOLD");
  g->host_unmold = hu && hu[0] && strcmp(hu, "0");
  const char *hm = getenv("CTXDIFF_GPU_HOST_MOLD");
  g->host_mold = hm && hm[0] && strcmp(hm, "0");
  const char *gr = getenv("CTXDIFF_GPU_GRAPH");
  g->use_graph = !(gr && !strcmp(gr, "0"));
  /* 16-bit feature maps: fp16 by default; bf16 only when asked (its 8-bit mantissa on every map
   * cost the emulator's resnet50 check 0.85 -> 0.55-0.70 of the detections, fp16 stays 0.9-1.0) */
  const char *a16 = getenv("CTXDIFF_GPU_ACT16");
  g->act16 = prec == CX_PREC_FP16 ? !(a16 && !strcmp(a16, "0")) : prec == CX_PREC_BF16 && a16 && !strcmp(a16, "1");
  /* a stream of our own before any upload: the legacy default stream cannot be captured */
  int rc = !(g->stream = cx_cuda_stream_create()) || !(g->copy = cx_cuda_stream_create());
  if (!rc) cx_cuda_set_stream(g->stream);
  for (int i = 0; i < NSLOT && !rc; i++)
    for (int k = 0; k < NEV && !rc; k++) rc = !(g->ev[i][k] = cx_cuda_event_create());
  if (rc) {
    cuda_fail(e, "stream and events");
    m->gpu = g;
    cx_gpu_detach(m);
    return -1;
  }
  rc = up_layer(g, &m->conv1, &g->conv1, e);
  for (int s = 0; s < 4 && !rc; s++)
    for (int b = 0; b < m->nblocks[s] && !rc; b++) {
      const cx_block *B = &m->blocks[s][b];
      gblock *G = &g->blocks[s][b];
      G->has_shortcut = B->has_shortcut;
      rc = up_layer(g, &B->a, &G->a, e) || up_layer(g, &B->b, &G->b, e) || up_layer(g, &B->c, &G->c, e) ||
           (B->has_shortcut && up_layer(g, &B->shortcut, &G->shortcut, e));
    }
  for (int l = 0; l < 4 && !rc; l++)
    rc = up_layer(g, &m->fpn_lat[l], &g->fpn_lat[l], e) || up_layer(g, &m->fpn_out[l], &g->fpn_out[l], e);
  if (!rc)
    rc = up_layer(g, &m->rpn_shared, &g->rpn_shared, e) || up_rpn_heads(m, g, e) ||
         up_layer(g, &m->cls_conv1, &g->cls_conv1, e) || up_layer(g, &m->cls_conv2, &g->cls_conv2, e) ||
         up_layer(g, &m->cls_logits, &g->cls_logits, e) || up_layer(g, &m->cls_bbox, &g->cls_bbox, e);
  for (int k = 0; k < 4 && !rc; k++) rc = up_layer(g, &m->mask_conv[k], &g->mask_conv[k], e);
  if (!rc)
    rc = up_floats(g, m->mask_out.kernel, (size_t)m->mask_out.d.cin * m->mask_out.d.cout, &g->mask_out_k, e,
                   "the mask head's last layer") ||
         up_floats(g, m->mask_out.bias, (size_t)m->mask_out.d.cout, &g->mask_out_b, e, "the mask head's last layer") ||
         (prec == CX_PREC_FP32
              ? up_floats(g, m->deconv_packed, (size_t)FEAT * 4 * FEAT, &g->deconv_packed, e, "the mask deconvolution")
              : up_16(g, m->deconv_packed, (size_t)FEAT * 4 * FEAT, &g->deconv16, e)) ||
         up_floats(g, m->deconv_bias, FEAT, &g->deconv_bias, e, "the mask deconvolution");
  if (rc) {
    m->gpu = g;
    cx_gpu_detach(m);
    return cx_failctx(e, "uploading the weights to the GPU");
  }
  m->gpu = g;
  return 0;
}

/* ---- memory plan ------------------------------------------------------------------------ */

#define MAXZ(a, b) ((a) > (b) ? (a) : (b))

static int plan_make(cx_model *m, int n, int H, int W, cx_err *e) {
  cx_gpu_model *g = m->gpu;
  gplan *p = &g->plan;
  if (p->valid && p->n == n && p->H == H && p->W == W) return 0;
  if (g->npending)
    return cx_fail(e, "a batch of %d at %dx%d needs a new GPU memory plan while %d batch(es) of %d at %dx%d are pending: collect them first",
                   n, W, H, g->npending, p->n, p->W, p->H);
  if (cx_cuda_sync()) return cuda_fail(e, "before re-planning");
  plan_free(p);
  const cx_config *c = &m->cfg;
  const int NC = m->num_classes, R = c->POST_NMS_ROIS_INFERENCE, D = c->DETECTION_MAX_INSTANCES;
  const int a = c->RPN_ANCHOR_STRIDE, nr = c->RPN_ANCHOR_RATIOS_COUNT;
  p->n = n; p->H = H; p->W = W;
  /* Shapes: as model.c's plan_make. */
  const int h1 = cx_conv2d_out(H, 7, 2, 3, 3), w1 = cx_conv2d_out(W, 7, 2, 3, 3);
  int hs[5], wsz[5];
  hs[0] = (h1 + 1) / 2; wsz[0] = (w1 + 1) / 2;
  int h = hs[0], w = wsz[0];
  const int chans[4] = {256, 512, 1024, 2048};
  for (int s = 0; s < 4; s++) {
    for (int b = 0; b < m->nblocks[s]; b++) {
      int st = m->blocks[s][b].a.d.stride;
      h = (h - 1) / st + 1; w = (w - 1) / st + 1;
    }
    hs[s + 1] = h; wsz[s + 1] = w;
  }
  for (int l = 0; l < 4; l++) { p->fh[l] = hs[l + 1]; p->fw[l] = wsz[l + 1]; }
  p->fh[4] = (p->fh[3] + 1) / 2; p->fw[4] = (p->fw[3] + 1) / 2;
  for (int l = 0; l < 5; l++) {
    int eh = (H + c->BACKBONE_STRIDES[l] - 1) / c->BACKBONE_STRIDES[l], ew = (W + c->BACKBONE_STRIDES[l] - 1) / c->BACKBONE_STRIDES[l];
    if (eh != p->fh[l] || ew != p->fw[l])
      return cx_fail(e, "molded image %dx%d gives feature map P%d of %dx%d, not the %dx%d the anchors assume: use sides that are multiples of 64", W, H, l + 2, p->fw[l], p->fh[l], ew, eh);
  }
  size_t A = cx_anchor_count(p->fh, p->fw, 5, nr, a);
  p->A = A;
  size_t off = 0;
  for (int l = 0; l < 5; l++) {
    p->level_off[l] = off;
    off += (size_t)((p->fh[l] + a - 1) / a) * ((p->fw[l] + a - 1) / a) * nr;
  }
  const size_t act = MAXZ((size_t)n * h1 * w1 * 64, (size_t)n * hs[0] * wsz[0] * 256);
  const int rh = (p->fh[0] + a - 1) / a, rw = (p->fw[0] + a - 1) / a;
  const size_t nR = (size_t)n * R, nD = (size_t)n * D, mrows = nD ? nD : 1;
#define DALLOC(ptr, count)                                                                   \
  do {                                                                                       \
    (ptr) = dl_alloc(&p->dev, (size_t)(count) * sizeof(*(ptr)), e, "inference buffer " #ptr); \
    if (!(ptr)) goto fail;                                                                   \
  } while (0)
  DALLOC(p->anchors, A * 4);
  for (int i = 0; i < NSLOT; i++) {
    DALLOC(p->slot[i].molded, (size_t)n * H * W * 3);
    DALLOC(p->slot[i].d_win, (size_t)n * 4);
    DALLOC(p->slot[i].mask_sel, mrows * 784);
  }
  for (int i = 0; i < 5; i++) DALLOC(p->act[i], act);
  for (int l = 0; l < 4; l++) {
    DALLOC(p->C[l], (size_t)n * hs[l + 1] * wsz[l + 1] * chans[l]);
    DALLOC(p->Q[l], (size_t)n * p->fh[l] * p->fw[l] * FEAT);
  }
  for (int l = 0; l < 5; l++) DALLOC(p->P[l], (size_t)n * p->fh[l] * p->fw[l] * FEAT);
  DALLOC(p->rpn_shared, (size_t)n * rh * rw * 512);
  DALLOC(p->rpn_logits, (size_t)n * A * 2);
  DALLOC(p->rpn_probs, (size_t)n * A * 2);
  DALLOC(p->rpn_bbox, (size_t)n * A * 4);
  DALLOC(p->prop_ws, cx_cuda_proposals_ws(n, (int)A, c->PRE_NMS_LIMIT, R));
  DALLOC(p->rois, nR * 4);
  DALLOC(p->levels, MAXZ(nR, mrows));
  DALLOC(p->pool7, nR * 49 * FEAT);
  DALLOC(p->fc1, nR * 1024);
  DALLOC(p->fc2, nR * 1024);
  DALLOC(p->logits, nR * NC);
  DALLOC(p->probs, nR * NC);
  DALLOC(p->deltas, nR * 4 * NC);
  DALLOC(p->det_ws, cx_cuda_detection_ws(n, R, NC));
  DALLOC(p->det, nD * 6 + 1);
  DALLOC(p->det_count, n);
  DALLOC(p->mtotal, 1);
  DALLOC(p->mboxes, mrows * 4);
  DALLOC(p->mimg, mrows);
  DALLOC(p->mcls, mrows);
  DALLOC(p->pool14, mrows * 196 * FEAT);
  DALLOC(p->mask_a, mrows * 196 * FEAT);
  DALLOC(p->mask_b, mrows * 196 * FEAT);
  DALLOC(p->deconv, mrows * 784 * FEAT);
  DALLOC(p->deconv_ws, mrows * 196 * 4 * FEAT);
  DALLOC(p->d_prm, mrows * 4);
  DALLOC(p->d_off, mrows);
#undef DALLOC
  /* host staging in page-locked memory: the copies run at full PCIe speed */
  for (int i = 0; i < NSLOT; i++) {
    gslot *S = &p->slot[i];
    S->h_molded = g->host_mold ? cx_cuda_malloc_host((size_t)n * H * W * 3 * sizeof(float)) : NULL;
    S->h_det = cx_cuda_malloc_host((nD * 6 + 1) * sizeof(float));
    S->h_masks = g->host_unmold ? cx_cuda_malloc_host(mrows * 784 * sizeof(float)) : NULL;
    S->h_count = cx_cuda_malloc_host((size_t)n * sizeof(int));
    S->h_win = cx_cuda_malloc_host((size_t)n * 4 * sizeof(float));
    if ((g->host_mold && !S->h_molded) || !S->h_det || (g->host_unmold && !S->h_masks) || !S->h_count || !S->h_win) {
      cuda_fail(e, "page-locked host buffers");
      goto fail;
    }
  }
  p->h_prm = cx_cuda_malloc_host(mrows * 4 * sizeof(int));
  p->h_off = cx_cuda_malloc_host(mrows * sizeof(long long));
  if (!p->h_prm || !p->h_off) {
    cuda_fail(e, "page-locked host buffers");
    goto fail;
  }
  p->h_rel = cx_malloc(mrows * 4 * sizeof(float), e, "detections");
  p->h_boxes = cx_malloc(mrows * 4 * sizeof(int32_t), e, "detections");
  p->h_rowoff = cx_malloc(mrows * sizeof(long long), e, "detections");
  if (!p->h_rel || !p->h_boxes || !p->h_rowoff) goto fail;
  {
    /* Anchors (spec §6), once per shape, on the host as the CPU path, then uploaded. */
    double *px = cx_malloc(A * 4 * sizeof(double), e, "anchors");
    float *nrm = cx_malloc(A * 4 * sizeof(float), e, "anchors");
    if (!px || !nrm) { free(px); free(nrm); goto fail; }
    const int strides[5] = {c->BACKBONE_STRIDES[0], c->BACKBONE_STRIDES[1], c->BACKBONE_STRIDES[2], c->BACKBONE_STRIDES[3], c->BACKBONE_STRIDES[4]};
    cx_generate_anchors(c->RPN_ANCHOR_SCALES, 5, c->RPN_ANCHOR_RATIOS, nr, p->fh, p->fw, strides, a, px);
    cx_norm_boxes(px, (int)A, H, W, nrm);
    int up = cx_cuda_upload(p->anchors, nrm, A * 4 * sizeof(float));
    free(px);
    free(nrm);
    if (up) { cuda_fail(e, "anchor upload"); goto fail; }
  }
  p->valid = 1;
  return 0;
fail:
  plan_free(p);
  return cx_failctx(e, "planning GPU memory for a batch of %d at %dx%d", n, W, H);
}

/* ---- network stages (model.c's, on device pointers) -------------------------------------- */

/* ---- per-op profile marks (no-ops unless cx_gpu_profile is running) ---------------------- */

static int prof_grow(gprof *P) {
  const int cap = P->cap ? 2 * P->cap : 256;
  void **ev = realloc(P->ev, (size_t)cap * sizeof *ev);
  if (ev) P->ev = ev;
  cx_op_time *op = realloc(P->op, (size_t)cap * sizeof *op);
  if (op) P->op = op;
  unsigned char *fl = realloc(P->flags, (size_t)cap);
  if (fl) P->flags = fl;
  if (!ev || !op || !fl) return -1;
  for (; P->cap < cap; P->cap++)
    if (!(P->ev[P->cap] = cx_cuda_event_create())) return -1;
  return 0;
}

/* Marks the start of the next op (fmt NULL: the end of the stage's last op). */
static void mark(cx_gpu_model *g, double flops, int flags, const char *fmt, ...) {
  gprof *P = &g->prof;
  if (P->on <= 0) return;
  if (P->n > 0 && (P->flags[P->n - 1] & MARK_CONV))
    snprintf(P->op[P->n - 1].kernel, sizeof P->op[0].kernel, "%s", cx_cuda_conv_last_kernel());
  if ((P->n == P->cap && prof_grow(P)) || cx_cuda_event_record(P->ev[P->n])) {
    P->on = -1;
    return;
  }
  cx_op_time *o = &P->op[P->n];
  memset(o, 0, sizeof *o);
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->name, sizeof o->name, fmt, ap);
    va_end(ap);
  }
  o->stage = P->stage;
  o->flops = flops;
  o->calls = 1;
  P->flags[P->n++] = (unsigned char)flags;
}

/* The kernel name of the op just marked, for ops outside conv.cu */
static void mark_kernel(cx_gpu_model *g, const char *kernel) {
  gprof *P = &g->prof;
  if (P->on > 0 && P->n > 0) snprintf(P->op[P->n - 1].kernel, sizeof P->op[0].kernel, "%s", kernel);
}

static void prof_free(gprof *P) {
  for (int i = 0; i < P->cap; i++) cx_cuda_event_destroy(P->ev[i]);
  free(P->ev);
  free(P->op);
  free(P->flags);
  memset(P, 0, sizeof *P);
}

/* The layer's descriptor with its SAME padding resolved for an h x w input. */
static cx_conv2d_desc padded(const glayer *L, int h, int w) {
  cx_conv2d_desc d = L->d;
  if (L->same) {
    cx_same_pads(h, d.kh, d.stride, &d.pad_t, &d.pad_b);
    cx_same_pads(w, d.kw, d.stride, &d.pad_l, &d.pad_r);
  }
  return d;
}

static void gconv(cx_gpu_model *g, const cx_backend *be, const char *name, const glayer *L, const float *x, int n, int h,
                  int w, float *y, const float *res, int relu, int *ho, int *wo) {
  const cx_conv2d_desc d = padded(L, h, w);
  mark(g, cx_conv2d_flops(&d, n, h, w), MARK_CONV, "%s", name);
  be->conv2d(&d, x, n, h, w, y, res, relu, NULL);
  if (ho) *ho = cx_conv2d_out(h, d.kh, d.stride, d.pad_t, d.pad_b);
  if (wo) *wo = cx_conv2d_out(w, d.kw, d.stride, d.pad_l, d.pad_r);
}

/* A conv on feature maps whose input (x16) and/or output and residual (y16) are 16-bit under
 * act16 (cx_cuda_conv2d_io: 16-bit loads and stores, epilogue in fp32); without act16 the flags
 * are ignored and everything is fp32 (the io entry with both flags 0 is the plain conv). */
static void fconv(cx_gpu_model *g, const char *name, const glayer *L, const void *x, int x16, int n, int h, int w,
                  void *y, int y16, const void *res, int relu, int *ho, int *wo) {
  const cx_conv2d_desc d = padded(L, h, w);
  mark(g, cx_conv2d_flops(&d, n, h, w), MARK_CONV, "%s", name);
  cx_cuda_conv2d_io(&d, x, g->act16 && x16, n, h, w, y, g->act16 && y16, res, relu);
  if (ho) *ho = cx_conv2d_out(h, d.kh, d.stride, d.pad_t, d.pad_b);
  if (wo) *wo = cx_conv2d_out(w, d.kw, d.stride, d.pad_l, d.pad_r);
}

static void backbone_fpn(cx_model *m, const cx_backend *be) {
  cx_gpu_model *g = m->gpu;
  gplan *p = &g->plan;
  int n = p->n, h, w;
  gconv(g, be, "conv1", &g->conv1, p->slot[p->cur].molded, n, p->H, p->W, p->act[0], NULL, 1, &h, &w);
  mark(g, 0, 0, "pool1 (max 3x3/2)");
  be->maxpool_same(p->act[0], n, h, w, 64, 3, 2, p->act[1]);
  h = (h + 1) / 2; w = (w + 1) / 2;
  /* act16: C1 to 16 bits once (into act[0], free after the pool); from there every buffer of
   * the residual stages, C2..C5 included, holds 16-bit values (in fp32-sized buffers) */
  void *x = p->act[1];
  if (g->act16) {
    mark(g, 0, 0, "C1 to 16 bits");
    cx_cuda_to16(p->act[1], p->act[0], (size_t)n * h * w * 64);
    x = p->act[0];
  }
  for (int s = 0; s < 4; s++)
    for (int b = 0; b < m->nblocks[s]; b++) {
      const gblock *B = &g->blocks[s][b];
      void *out = (b == m->nblocks[s] - 1) ? (void *)p->C[s] : (x == p->act[0] ? p->act[1] : p->act[0]);
      int h2, w2;
      char nm[4][32]; /* matterport's layer names: res4b_branch2a, ... */
      cx_block_names(s, b, nm);
      fconv(g, nm[0], &B->a, x, 1, n, h, w, p->act[2], 1, NULL, 1, &h2, &w2);
      fconv(g, nm[1], &B->b, p->act[2], 1, n, h2, w2, p->act[3], 1, NULL, 1, NULL, NULL);
      const void *sc = x;
      if (B->has_shortcut) {
        fconv(g, nm[2], &B->shortcut, x, 1, n, h, w, p->act[4], 1, NULL, 0, NULL, NULL);
        sc = p->act[4];
      }
      fconv(g, nm[3], &B->c, p->act[3], 1, n, h2, w2, out, 1, sc, 1, NULL, NULL);
      x = out;
      h = h2; w = w2;
    }
  /* the laterals read C2..C5 and write fp32 (the upsample-add stays fp32); the output convs read
   * a 16-bit copy of the sums (below) and write P2..P5 (and the subsample P6) in 16 bits
   * again, for the RPN and the ROI align */
  char nm[32];
  for (int l = 3; l >= 0; l--) {
    snprintf(nm, sizeof nm, "fpn_c%dp%d", l + 2, l + 2);
    fconv(g, nm, &g->fpn_lat[l], p->C[l], 1, n, p->fh[l], p->fw[l], p->Q[l], 0, NULL, 0, NULL, NULL);
    if (l < 3) {
      mark(g, 0, 0, "fpn_p%dupsampled + add", l + 3);
      be->upsample2_add(p->Q[l + 1], n, p->fh[l + 1], p->fw[l + 1], FEAT, p->Q[l]);
    }
  }
  for (int l = 0; l < 4; l++) {
    /* act16: the sum to 16 bits first (into act[0], free after the backbone), so that the 3x3
     * conv reads 16-bit A through v3's cp.async path instead of v2's fp32 loads: the same values
     * v2 rounds the fp32 input to while staging (to_t), so the same outputs, half the A bytes */
    const void *q = p->Q[l];
    if (g->act16) {
      mark(g, 0, 0, "fpn_p%d input to 16 bits", l + 2);
      cx_cuda_to16(p->Q[l], p->act[0], (size_t)n * p->fh[l] * p->fw[l] * FEAT);
      q = p->act[0];
    }
    snprintf(nm, sizeof nm, "fpn_p%d", l + 2);
    fconv(g, nm, &g->fpn_out[l], q, 1, n, p->fh[l], p->fw[l], p->P[l], 1, NULL, 0, NULL, NULL);
  }
  mark(g, 0, 0, "fpn_p6 (subsample)");
  if (g->act16) cx_cuda_subsample2_16(p->P[3], n, p->fh[3], p->fw[3], FEAT, p->P[4]);
  else be->subsample2(p->P[3], n, p->fh[3], p->fw[3], FEAT, p->P[4]);
}

static void rpn(cx_model *m, const cx_backend *be) {
  cx_gpu_model *g = m->gpu;
  gplan *p = &g->plan;
  const int n = p->n, apl = g->rpn_apl, ld = RPN_HEADS_LD(apl);
  for (int l = 0; l < 5; l++) {
    int hs, ws;
    char nm[32];
    snprintf(nm, sizeof nm, "rpn_conv_shared P%d", l + 2);
    fconv(g, nm, &g->rpn_shared, p->P[l], 1, n, p->fh[l], p->fw[l], p->rpn_shared, 1, NULL, 1, &hs, &ws);
    /* both heads of all images in one GEMM into act[1] (free after the backbone: n*hs*ws*ld
     * floats fit its n*(H/4)*(W/4)*256), fp32; counted as the two heads' FLOPs (no padding) */
    const cx_conv2d_desc d = padded(&g->rpn_heads, hs, ws);
    mark(g, 2.0 * n * hs * ws * d.cin * 6 * apl, MARK_CONV, "rpn_class_raw + rpn_bbox_pred P%d", l + 2);
    cx_cuda_conv2d_io(&d, p->rpn_shared, g->act16, n, hs, ws, p->act[1], 0, NULL, 0);
    /* into the concatenated [anchors, 2] / [anchors, 4] layout of each image, as in model.c */
    mark(g, 0, 0, "rpn heads to anchor order P%d", l + 2);
    cx_cuda_rpn_split(p->act[1], ld, n, hs * ws, apl, p->A, p->level_off[l], p->rpn_logits, p->rpn_bbox);
  }
  mark(g, 0, 0, "rpn_class (softmax)");
  be->softmax_rows(p->rpn_logits, (size_t)n * p->A, 2, p->rpn_probs);
}

/* the profile's mark before each step of cx_cuda_proposals / cx_cuda_detection */
static void mark_step(void *g, const char *name) { mark((cx_gpu_model *)g, 0, 0, "%s", name); }

/* ProposalLayer for all images of the batch in the same launches (model.c runs it per image:
 * the same top-k, decoding, clipping and NMS per image, so the same ROIs): one segmented sort
 * for the top-k, one NMS whose scans run one block per image. No wait: the NMS counts go from
 * the NMS to the ROI gather on the device. */
static void proposals(cx_model *m) {
  cx_gpu_model *g = m->gpu;
  gplan *p = &g->plan;
  const cx_config *c = &m->cfg;
  cx_cuda_props a = {.n = p->n, .a = (int)p->A, .pre_nms = c->PRE_NMS_LIMIT, .r = c->POST_NMS_ROIS_INFERENCE,
                     .nms_thr = (float)c->RPN_NMS_THRESHOLD, .probs = p->rpn_probs, .bbox = p->rpn_bbox,
                     .anchors = p->anchors, .ws = p->prop_ws, .rois = p->rois};
  for (int j = 0; j < 4; j++) a.sd[j] = (float)c->RPN_BBOX_STD_DEV[j];
  cx_cuda_proposals(&a, mark_step, g);
}

static const void *const *levels_of(const gplan *p) { return (const void *const *)p->P; }

static void classifier(cx_model *m, const cx_backend *be) {
  cx_gpu_model *g = m->gpu;
  gplan *p = &g->plan;
  const int R = m->cfg.POST_NMS_ROIS_INFERENCE, NC = m->num_classes, nR = p->n * R;
  mark(g, 0, 0, "roi_align_classifier (levels + 7x7 crop_and_resize)");
  be->roi_levels(p->rois, nR, p->H, p->W, p->levels);
  /* act16: the pooled features in 16 bits too, read by the 7x7 conv (its output fc1 is fp32) */
  cx_cuda_pyramid_roi_align(levels_of(p), g->act16, p->fh, p->fw, FEAT, p->rois, p->levels, NULL, R, nR, 7, p->pool7,
                            g->act16, NULL);
  fconv(g, "mrcnn_class_conv1", &g->cls_conv1, p->pool7, 1, nR, 7, 7, p->fc1, 0, NULL, 1, NULL, NULL);
  gconv(g, be, "mrcnn_class_conv2", &g->cls_conv2, p->fc1, nR, 1, 1, p->fc2, NULL, 1, NULL, NULL);
  /* the dense layers as 1x1 convolutions over nR 1x1 images: their descriptors carry the
   * 16-bit weights of fp16/bf16 models */
  gconv(g, be, "mrcnn_class_logits", &g->cls_logits, p->fc2, nR, 1, 1, p->logits, NULL, 0, NULL, NULL);
  mark(g, 0, 0, "mrcnn_class (softmax)");
  be->softmax_rows(p->logits, (size_t)nR, NC, p->probs);
  gconv(g, be, "mrcnn_bbox_fc", &g->cls_bbox, p->fc2, nR, 1, 1, p->deltas, NULL, 0, NULL, NULL);
}

/* DetectionLayer (spec §11) for all images; their clip windows are in d_win (set_windows). */
static void detection(cx_model *m) {
  cx_gpu_model *g = m->gpu;
  gplan *p = &g->plan;
  const cx_config *c = &m->cfg;
  cx_cuda_det a = {.n = p->n, .r = c->POST_NMS_ROIS_INFERENCE, .nc = m->num_classes,
                   .max_out = c->DETECTION_MAX_INSTANCES, .use_min = c->DETECTION_MIN_CONFIDENCE != 0,
                   .min_conf = (float)c->DETECTION_MIN_CONFIDENCE, .nms_thr = (float)c->DETECTION_NMS_THRESHOLD,
                   .rois = p->rois, .probs = p->probs, .deltas = p->deltas, .windows = p->slot[p->cur].d_win,
                   .ws = p->det_ws, .det = p->det, .det_count = p->det_count};
  for (int j = 0; j < 4; j++) a.sd[j] = (float)c->BBOX_STD_DEV[j];
  cx_cuda_detection(&a, mark_step, g);
}

/* Mask head on the valid detections of all images, packed (rows in image order); leaves the
 * own-class sigmoid planes in mask_sel [total, 28, 28]. The row count `total` stays on the
 * device (mtotal, from mask_pack): every launch covers all n * DETECTION_MAX_INSTANCES rows
 * and computes the first *mtotal, so no wait precedes this stage and it is captured with the
 * others. */
static void mask_head(cx_model *m, const cx_backend *be) {
  (void)be;
  cx_gpu_model *g = m->gpu;
  gplan *p = &g->plan;
  const int D = m->cfg.DETECTION_MAX_INSTANCES, rows = p->n * D;
  const int *live = p->mtotal;
  mark(g, 0, 0, "roi_align_mask (pack + levels + 14x14 crop_and_resize)");
  cx_cuda_mask_pack(p->det, p->det_count, p->n, D, p->mboxes, p->mimg, p->mcls, p->mtotal);
  cx_cuda_roi_levels_live(p->mboxes, rows, p->H, p->W, p->levels, live);
  /* act16: pooled features and the four 3x3 convs' outputs in 16 bits, read by the deconv's
   * GEMM (its output and the logits are fp32) */
  const int a16 = g->act16;
  cx_cuda_pyramid_roi_align(levels_of(p), a16, p->fh, p->fw, FEAT, p->mboxes, p->levels, p->mimg, 0, rows, 14,
                            p->pool14, a16, live);
  const void *x = p->pool14;
  float *bufs[2] = {p->mask_a, p->mask_b};
  for (int k = 0; k < 4; k++) {
    const cx_conv2d_desc d = padded(&g->mask_conv[k], 14, 14);
    mark(g, cx_conv2d_flops(&d, 1, 14, 14), MARK_CONV | MARK_ROWS, "mrcnn_mask_conv%d", k + 1);
    cx_cuda_conv2d_io_rows(&d, x, a16, rows, 14, 14, bufs[k & 1], a16, NULL, 1, live, 1);
    x = bufs[k & 1];
  }
  mark(g, 2.0 * 196 * FEAT * 4 * FEAT, MARK_CONV | MARK_ROWS, "mrcnn_mask_deconv");
  cx_cuda_deconv2x2_live(x, a16, rows, 14, 14, FEAT, g->deconv_packed, g->deconv16, g->deconv16 ? (int)g->prec : 0,
                         g->deconv_bias, FEAT, 1, p->deconv, p->deconv_ws, live);
  /* unmolding reads one class per detection: that column only (matterport computes all nc) */
  const cx_conv2d_desc *dout = &m->mask_out.d;
  mark(g, cx_mask_class_flops(m, 1), MARK_ROWS, "mrcnn_mask (own class) + sigmoid");
  mark_kernel(g, "1x1 conv, own class column");
  cx_cuda_mask_class(p->deconv, rows, 784, dout->cin, g->mask_out_k, g->mask_out_b, dout->cout, p->mcls,
                     p->slot[p->cur].mask_sel, live);
}

/* ---- unmolding (spec §13): model.c's cx_unmold split into boxes (host), masks (device),
 * paste (host) --------------------------------------------------------------------------- */

/* Pixel boxes of the `total` detections of the batch (rows in image order), with cx_unmold's
 * expressions; fills the device resampling parameters of the boxes with a positive area.
 * *nm: masks to resample, *bytes: their packed size, *max_area: the largest. */
static int unmold_boxes(cx_model *m, const gslot *S, const cx_image *images, const cx_mold_info *mi, int *nm,
                        long long *bytes, long long *max_area, cx_err *e) {
  gplan *p = &m->gpu->plan;
  const int D = m->cfg.DETECTION_MAX_INSTANCES;
  int row = 0, k = 0;
  long long off = 0, mx = 0;
  for (int b = 0; b < p->n; b++) {
    const int N = S->h_count[b];
    const float *det = S->h_det + (size_t)b * D * 6;
    double wpx[4] = {mi[b].window[0], mi[b].window[1], mi[b].window[2], mi[b].window[3]};
    float nw[4];
    cx_norm_boxes(wpx, 1, p->H, p->W, nw);
    const float wh = nw[2] - nw[0], ww = nw[3] - nw[1];
    float *rel = p->h_rel + (size_t)row * 4;
    int32_t *boxes = p->h_boxes + (size_t)row * 4;
    for (int i = 0; i < N; i++) {
      rel[i * 4 + 0] = (det[i * 6 + 0] - nw[0]) / wh;
      rel[i * 4 + 1] = (det[i * 6 + 1] - nw[1]) / ww;
      rel[i * 4 + 2] = (det[i * 6 + 2] - nw[0]) / wh;
      rel[i * 4 + 3] = (det[i * 6 + 3] - nw[1]) / ww;
    }
    cx_denorm_boxes(rel, N, images[b].height, images[b].width, boxes);
    for (int i = 0; i < N; i++) {
      const int32_t *bx = boxes + i * 4;
      const int bh = bx[2] - bx[0], bw = bx[3] - bx[1];
      p->h_rowoff[row + i] = -1;
      if ((int64_t)bh * bw <= 0) continue; /* dropped, as in cx_unmold */
      if (bh < 0) return cx_fail(e, "image %d: detection %d has an inverted box (%d x %d pixels)", b, i, bh, bw);
      p->h_prm[k * 4 + 0] = row + i;
      p->h_prm[k * 4 + 1] = bh;
      p->h_prm[k * 4 + 2] = bw;
      p->h_prm[k * 4 + 3] = 0;
      p->h_off[k] = off;
      p->h_rowoff[row + i] = off;
      off += (long long)bh * bw;
      if ((long long)bh * bw > mx) mx = (long long)bh * bw;
      k++;
    }
    row += N;
  }
  *nm = k;
  *bytes = off;
  *max_area = mx;
  return 0;
}

/* Grows the packed mask buffers (device and page-locked host) to `bytes`. */
static int packed_reserve(cx_gpu_model *g, size_t bytes, cx_err *e) {
  if (bytes <= g->packed_cap) return 0;
  if (cx_cuda_sync()) return cuda_fail(e, "before growing the mask buffer");
  cx_cuda_free(g->d_packed);
  cx_cuda_free_host(g->h_packed);
  g->d_packed = NULL;
  g->h_packed = NULL;
  g->packed_cap = 0;
  size_t want = bytes + bytes / 4 + 4096;
  g->d_packed = cx_cuda_malloc(want);
  g->h_packed = cx_cuda_malloc_host(want);
  if (!g->d_packed || !g->h_packed) return cuda_fail(e, "allocating the detection masks buffer");
  g->packed_cap = want;
  return 0;
}

/* cx_unmold's result for image b: rows from `row`, masks pasted from the packed boxes. */
static int unmold_finish(cx_model *m, const gslot *S, int b, int row, const cx_image *im, cx_detections *out,
                         cx_err *e) {
  cx_gpu_model *g = m->gpu;
  gplan *p = &g->plan;
  const int D = m->cfg.DETECTION_MAX_INSTANCES;
  const int N = S->h_count[b];
  const float *det = S->h_det + (size_t)b * D * 6;
  const int32_t *boxes = p->h_boxes + (size_t)row * 4;
  memset(out, 0, sizeof *out);
  out->height = im->height;
  out->width = im->width;
  int keep = 0;
  for (int i = 0; i < N; i++)
    if ((int64_t)(boxes[i * 4 + 2] - boxes[i * 4 + 0]) * (boxes[i * 4 + 3] - boxes[i * 4 + 1]) > 0) keep++;
  const size_t plane = (size_t)im->height * im->width;
  out->rois = cx_malloc((size_t)(keep ? keep : 1) * 4 * sizeof(int32_t), e, "detections");
  out->class_ids = cx_malloc((size_t)(keep ? keep : 1) * sizeof(int32_t), e, "detections");
  out->scores = cx_malloc((size_t)(keep ? keep : 1) * sizeof(float), e, "detections");
  out->masks = cx_calloc(keep ? (size_t)keep * plane : 1, 1, e, "detection masks");
  if (!out->rois || !out->class_ids || !out->scores || !out->masks) { cx_detections_free(out, 1); return -1; }
  /* detection i goes to output k = src_of's inverse: kept rows in order */
  int *src_of = cx_malloc((size_t)(keep ? keep : 1) * sizeof(int), e, "detections");
  if (!src_of) { cx_detections_free(out, 1); return -1; }
  for (int i = 0, k = 0; i < N; i++)
    if ((int64_t)(boxes[i * 4 + 2] - boxes[i * 4 + 0]) * (boxes[i * 4 + 3] - boxes[i * 4 + 1]) > 0) src_of[k++] = i;
  /* The paste touches (and page-faults in) up to 100 full-size planes: one thread per mask. */
#pragma omp parallel for schedule(dynamic, 1) if (keep > 1)
  for (int k = 0; k < keep; k++) {
    const int i = src_of[k];
    const int32_t *bx = boxes + i * 4;
    const int bh = bx[2] - bx[0], bw = bx[3] - bx[1];
    memcpy(out->rois + k * 4, bx, 4 * sizeof(int32_t));
    out->class_ids[k] = (int)det[i * 6 + 4];
    out->scores[k] = det[i * 6 + 5];
    const unsigned char *src = g->h_packed + p->h_rowoff[row + i];
    uint8_t *dst = out->masks + (size_t)k * plane;
    /* the columns of the box inside the image: x in [x0, x1) */
    const int x0 = bx[1] < 0 ? -bx[1] : 0;
    const int x1 = bx[1] + bw > im->width ? im->width - bx[1] : bw;
    for (int y = 0; y < bh && x1 > x0; y++) {
      const int iy = bx[0] + y;
      if (iy < 0 || iy >= im->height) continue;
      memcpy(dst + (size_t)iy * im->width + bx[1] + x0, src + (size_t)y * bw + x0, (size_t)(x1 - x0));
    }
  }
  free(src_of);
  out->count = keep;
  return 0;
}

/* ---- driver ----------------------------------------------------------------------------- */

static int grow(void **buf, size_t *cap, size_t need, cx_err *e, const char *what) {
  if (need <= *cap) return 0;
  void *q = realloc(*buf, need);
  if (!q) return cx_fail(e, "out of memory allocating %zu bytes for %s", need, what);
  *buf = q;
  *cap = need;
  return 0;
}

static const char *const STAGE_NAME[NSTAGE] = {"backbone/FPN", "RPN/proposals", "classifier/detection", "mask head"};

/* The work of graph stage s (queued, never waits). */
static void stage_work(cx_model *m, const cx_backend *be, int s) {
  m->gpu->prof.stage = s + 1; /* cx_op_time's stage: 0 is the preprocessing */
  if (s == 0) {
    backbone_fpn(m, be);
  } else if (s == 1) {
    rpn(m, be);
    if (!cx_cuda_last_error()) proposals(m);
  } else if (s == 2) {
    classifier(m, be);
    detection(m);
  } else {
    mask_head(m, be);
  }
  mark(m->gpu, 0, 0, NULL);
}

/* Queues stage s of the current slot: eagerly, or as its CUDA graph (captured on first use,
 * then replayed). */
static int stage_run(cx_model *m, const cx_backend *be, int s, int graphs, cx_err *e) {
  gplan *p = &m->gpu->plan;
  gslot *S = &p->slot[p->cur];
  if (!graphs) {
    stage_work(m, be, s);
  } else {
    if (!S->graph[s]) {
      /* captured, not run: the launch below runs it (also on this first call) */
      if (cx_cuda_capture_begin()) return cuda_fail(e, STAGE_NAME[s]);
      stage_work(m, be, s);
      if (!(S->graph[s] = cx_cuda_capture_end())) {
        cuda_fail(e, STAGE_NAME[s]);
        return cx_failctx(e, "capturing a CUDA graph (CTXDIFF_GPU_GRAPH=0 runs without graphs)");
      }
    }
    cx_cuda_graph_launch(S->graph[s]);
  }
  if (cx_cuda_last_error()) return cuda_fail(e, STAGE_NAME[s]);
  return 0;
}

/* The conv kernel choice in force (version, Winograd on/off, split-K): part of the graph key. */
static int conv_key(void) {
  return (cx_cuda_splitk() * 8 + cx_cuda_conv_version()) * 2 + (cx_cuda_winograd_on() != 0);
}

/* Whether this batch replays (or captures) the slot's stage graphs: not on the slot's first
 * batch of a plan, which sizes the scratch arena eagerly, and never with CTXDIFF_GPU_GRAPH=0.
 * When the precision, the conv kernel choice or the scratch arena (reallocated or released by
 * another caller) differ from the slot's last batch, its graphs are dropped and this batch
 * runs eagerly. */
static int graphs_ready(cx_gpu_model *g, gslot *S) {
  if (!g->use_graph) return 0;
  if (S->runs > 0 && (S->g_prec != g->prec || S->g_conv != conv_key() || S->g_scratch != cx_cuda_scratch_generation()))
    graphs_free(S);
  return S->runs > 0;
}

/* After an error with work queued (e already says what): waits for both streams, forgets
 * every pending batch (their slots may hold half-written results), leaves the model usable,
 * and adds to e how many batches were dropped. Returns -1. */
static int drop_pending(cx_gpu_model *g, cx_err *e) {
  const int pending = g->npending;
  cx_cuda_set_stream(g->copy);
  (void)cx_cuda_sync();
  cx_cuda_set_stream(g->stream);
  (void)cx_cuda_sync();
  cx_cuda_clear_error();
  g->head = 0;
  g->npending = 0;
  return pending ? cx_failctx(e, "%d pending batch(es) dropped", pending) : -1;
}

/* A CUDA error with work queued: its message, then drop_pending. */
static int queued_fail(cx_gpu_model *g, cx_err *e, const char *what) {
  cuda_fail(e, what);
  return drop_pending(g, e);
}

int cx_gpu_pending(const cx_model *m) { return m->gpu ? m->gpu->npending : 0; }

int cx_gpu_available(int device_index, cx_err *e) {
  const int n = cx_cuda_device_count();
  if (n <= 0) return cx_fail(e, "no CUDA device (no GPU or no driver on this machine)");
  if (device_index >= n)
    return cx_fail(e, "no CUDA device %d: %d device(s) visible (numbered from 0 as CUDA_VISIBLE_DEVICES orders them)",
                   device_index, n);
  return 0;
}

static int needs_resize(const cx_image *im, const cx_mold_info *mi) { return mi->rh != im->height || mi->rw != im->width; }

/* Grows a slot buffer to `need` bytes (page-locked host memory, or device memory): frees and
 * allocates, which waits for the device, so never inside a capture. 0, or -1 (error recorded). */
static int slot_grow(void **buf, size_t *cap, size_t need, int pinned) {
  if (need <= *cap) return 0;
  if (pinned) cx_cuda_free_host(*buf);
  else cx_cuda_free(*buf);
  *cap = 0;
  if (!(*buf = pinned ? cx_cuda_malloc_host(need) : cx_cuda_malloc(need))) return -1;
  *cap = need;
  return 0;
}

/* Device molding, host half: the images' places in the slot's uint8 buffers (B->u8_off), the
 * buffers grown to the batch, the pixels copied (one thread per image) into the page-locked one. */
static int mold_stage(gslot *S, gbatch *B, const cx_image *images, int n, cx_err *e) {
  size_t *off = B->u8_off, rtot = 0;
  off[0] = 0;
  for (int i = 0; i < n; i++) {
    off[i + 1] = off[i] + (size_t)images[i].width * images[i].height * 3;
    if (needs_resize(&images[i], &B->mi[i])) rtot += (size_t)B->mi[i].rh * B->mi[i].rw * 3;
  }
  if (slot_grow((void **)&S->h_u8, &S->h_u8_cap, off[n], 1) || slot_grow((void **)&S->d_u8, &S->d_u8_cap, off[n], 0) ||
      slot_grow((void **)&S->d_rs, &S->rs_cap, rtot, 0) ||
      slot_grow((void **)&S->d_range, &S->range_cap, (size_t)n * 2 * sizeof(double), 0))
    return cuda_fail(e, "molding buffers");
#pragma omp parallel for schedule(static) if (n > 1)
  for (int i = 0; i < n; i++) memcpy(S->h_u8 + off[i], images[i].rgb, off[i + 1] - off[i]);
  return 0;
}

/* Device molding, device half, queued on the current (copy) stream: the images up, then per
 * image the resize (device resize_u8, its min/max in the slot's own buffer: no scratch arena,
 * which the previous batch's graphs may be using) and cx_mold_image's canvas into the slot's
 * molded input. 0, or -1 with the CUDA error recorded. */
static int mold_device(gslot *S, const gbatch *B, const cx_image *images, int n, int H, int W, const double mean[3]) {
  const size_t *off = B->u8_off;
  if (cx_cuda_upload_async(S->d_u8, S->h_u8, off[n])) return -1;
  size_t roff = 0;
  for (int i = 0; i < n; i++) {
    const cx_image *im = &images[i];
    const cx_mold_info *mi = &B->mi[i];
    const uint8_t *src = S->d_u8 + off[i];
    if (needs_resize(im, mi)) {
      if (cx_cuda_resize_u8_ranged(src, im->height, im->width, 3, mi->rh, mi->rw, S->d_rs + roff, S->d_range + 2 * i))
        return -1;
      src = S->d_rs + roff;
      roff += (size_t)mi->rh * mi->rw * 3;
    }
    if (cx_cuda_mold(src, mi->rh, mi->rw, H, W, mi->window[0], mi->window[1], mean, S->molded + (size_t)i * H * W * 3))
      return -1;
  }
  return 0;
}

/* Molds, uploads and queues one batch on the next free slot; returns without waiting for the
 * GPU. The upload goes on the copy stream (it overlaps the previous batch's graphs), the
 * graphs wait for it on the compute stream, then the detections are downloaded there. */
int cx_gpu_submit(cx_model *m, const cx_image *images, int n, cx_err *e) {
  cx_gpu_model *g = m->gpu;
  const cx_config *c = &m->cfg;
  const cx_backend *be = cx_backend_cuda();
  if (g->npending == NSLOT) return cx_fail(e, "%d batches are already in flight: collect one before submitting another", NSLOT);
  cx_cuda_set_stream(g->stream);
  cx_cuda_set_precision(g->prec);
  cx_cuda_clear_error();
  const double t0 = now_ms();
  if (!g->npending) g->head = 0; /* synchronous use stays on slot 0 (and its graphs) */
  const int si = (g->head + g->npending) % NSLOT;
  gbatch *B = &g->batch[si];
  if (n > B->cap) {
    cx_mold_info *mi = realloc(B->mi, (size_t)n * sizeof *mi);
    if (mi) B->mi = mi;
    cx_image *dims = realloc(B->dims, (size_t)n * sizeof *dims);
    if (dims) B->dims = dims;
    size_t *off = realloc(B->u8_off, (size_t)(n + 1) * sizeof *off);
    if (off) B->u8_off = off;
    if (!mi || !dims || !off) return cx_fail(e, "out of memory for a batch of %d images", n);
    B->cap = n;
  }
  /* Molding: the CPU path's checks and geometry (host); the pixels are molded on the device
   * (below) from the uint8 images, or with CTXDIFF_GPU_HOST_MOLD=1 by model.c's code here. */
  cx_mold_info *mi = B->mi;
  size_t max_resized;
  if (cx_mold_batch(c, images, n, mi, &max_resized, e)) return -1;
  for (int i = 0; i < n; i++) B->dims[i] = (cx_image){images[i].width, images[i].height, NULL};
  if (plan_make(m, n, mi[0].H, mi[0].W, e)) return -1;
  gplan *p = &g->plan;
  gslot *S = &p->slot[si];
  const size_t img_floats = (size_t)p->H * p->W * 3;
  /* the slot's staging buffers are free: its previous batch was collected, and collect waited
   * for that batch's last use of them */
  if (g->host_mold) {
    cx_plan *hp = &m->plan; /* only its grow-only host scratch is used */
    if (grow((void **)&hp->resized, &hp->resized_cap, max_resized, e, "the resized image")) return -1;
    for (int i = 0; i < n; i++) cx_mold_image(m->be, c, &images[i], &mi[i], hp->resized, S->h_molded + (size_t)i * img_floats);
  } else if (mold_stage(S, B, images, n, e)) {
    return -1;
  }
  for (int b = 0; b < n; b++) cx_norm_window(mi[b].window, p->H, p->W, S->h_win + (size_t)b * 4);
  B->n = n;
  B->t0 = t0;
  B->host_ms = now_ms() - t0;

  /* Upload on the copy stream (page-locked sources, untouched until this batch is collected):
   * the previous batch's graphs may still be running on the compute stream. */
  void **ev = g->ev[si];
  cx_cuda_set_stream(g->copy);
  int up = cx_cuda_event_record(ev[0]);
  if (!up && g->host_mold) up = cx_cuda_upload_async(S->molded, S->h_molded, (size_t)n * img_floats * sizeof(float));
  else if (!up) up = mold_device(S, B, images, n, p->H, p->W, c->MEAN_PIXEL);
  up = up || cx_cuda_upload_async(S->d_win, S->h_win, (size_t)n * 4 * sizeof(float)) || cx_cuda_event_record(ev[1]);
  cx_cuda_set_stream(g->stream);
  if (up) return queued_fail(g, e, "upload of the molded batch");
  if (cx_cuda_stream_wait_event(ev[1]) || cx_cuda_event_record(ev[2])) return queued_fail(g, e, "upload of the molded batch");

  /* the whole network, mask head included: queued (or replayed), no waits */
  p->cur = si;
  const int graphs = graphs_ready(g, S);
  for (int s = 0; s < NSTAGE; s++) {
    if (stage_run(m, be, s, graphs, e)) return drop_pending(g, e); /* e set by stage_run */
    if (cx_cuda_event_record(ev[3 + s])) return queued_fail(g, e, STAGE_NAME[s]);
  }
  /* the final detections (and, for the host unmold, the 28x28 planes) to the slot's host side */
  const int D = c->DETECTION_MAX_INSTANCES;
  if (cx_cuda_download_async(S->h_count, p->det_count, (size_t)n * sizeof(int)) ||
      cx_cuda_download_async(S->h_det, p->det, (size_t)n * D * 6 * sizeof(float)) ||
      (g->host_unmold && cx_cuda_download_async(S->h_masks, S->mask_sel, (size_t)n * D * 784 * sizeof(float))) ||
      cx_cuda_event_record(ev[NEV - 1]))
    return queued_fail(g, e, "download of the detections");
  /* the key the slot's graphs were (or its next batch's will be) captured under */
  S->runs++;
  S->g_prec = g->prec;
  S->g_conv = conv_key();
  S->g_scratch = cx_cuda_scratch_generation();
  g->npending++;
  return 0;
}

/* Waits for the oldest pending batch and unmolds it into out[n]. */
int cx_gpu_collect(cx_model *m, int n, cx_detections *out, cx_err *e) {
  cx_gpu_model *g = m->gpu;
  const cx_config *c = &m->cfg;
  if (!g->npending) return cx_fail(e, "no batch is pending (submit one first)");
  const int si = g->head;
  gbatch *B = &g->batch[si];
  if (n != B->n) return cx_fail(e, "the oldest pending batch has %d image(s), not %d", B->n, n);
  memset(out, 0, (size_t)n * sizeof *out);
  cx_cuda_set_stream(g->stream);
  cx_cuda_set_precision(g->prec);
  gplan *p = &g->plan;
  gslot *S = &p->slot[si];
  void **ev = g->ev[si];
  /* the first wait: the batch's graphs and its detection download */
  if (cx_cuda_event_sync(ev[NEV - 1])) return queued_fail(g, e, "network or download of the detections");
  cx_timings t = {0};
  double st[NEV - 1]; /* the events are complete: the wait above came after them */
  for (int i = 0; i < NEV - 1; i++) st[i] = cx_cuda_event_elapsed_ms(ev[i], ev[i + 1]);
  if (cx_cuda_last_error()) return queued_fail(g, e, "stage timing events");
  t.preprocess = B->host_ms + st[0]; /* host copies (or molding) + the upload and device molding */
  t.backbone_fpn = st[2]; /* st[1]: the wait for the upload (behind the previous batch) */
  t.rpn_proposals = st[3];
  t.classifier_detection = st[4];
  t.mask_head = st[5];
  /* the batch is consumed from here, whatever happens below */
  g->head = (si + 1) % NSLOT;
  g->npending--;
  const int D = c->DETECTION_MAX_INSTANCES;
  int total = 0;
  for (int b = 0; b < n; b++) {
    if (S->h_count[b] < 0 || S->h_count[b] > D)
      return cx_fail(e, "GPU detection layer returned %d detections for image %d (max %d)", S->h_count[b], b, D);
    total += S->h_count[b];
  }
  const double t5 = now_ms();

  /* unmold: pixel boxes on the host, masks resampled on the copy stream (the next batch's
   * graphs keep the compute stream busy meanwhile), one more wait */
  int nm = 0;
  if (total > 0 && !g->host_unmold) {
    long long bytes = 0, max_area = 0;
    if (unmold_boxes(m, S, B->dims, B->mi, &nm, &bytes, &max_area, e)) return -1;
    if (nm > 0) {
      cx_cuda_set_stream(g->copy);
      int rc = packed_reserve(g, (size_t)bytes, e);
      /* page-locked sources, untouched until the wait below: no wait here */
      if (!rc && (cx_cuda_upload_async(p->d_prm, p->h_prm, (size_t)nm * 4 * sizeof(int)) ||
                  cx_cuda_upload_async(p->d_off, p->h_off, (size_t)nm * sizeof(long long)) ||
                  cx_cuda_mask_unmold(S->mask_sel, p->d_prm, p->d_off, nm, max_area, g->d_packed) ||
                  cx_cuda_download_async(g->h_packed, g->d_packed, (size_t)bytes) || cx_cuda_sync()))
        rc = queued_fail(g, e, "mask unmolding");
      cx_cuda_set_stream(g->stream);
      if (rc) return -1;
    }
  }

  int row = 0;
  for (int b = 0; b < n; b++) {
    int rc;
    if (g->host_unmold)
      rc = cx_unmold(m, p->H, p->W, S->h_det + (size_t)b * D * 6, S->h_count[b], S->h_masks + (size_t)row * 784, 1,
                     &B->dims[b], &B->mi[b], &out[b], e);
    else
      rc = unmold_finish(m, S, b, row, &B->dims[b], &out[b], e);
    if (rc) {
      cx_detections_free(out, n);
      return cx_failctx(e, "image %d", b);
    }
    row += S->h_count[b];
  }
  const double t6 = now_ms();
  t.unmold = t6 - t5; /* host boxes, device resampling, paste */
  t.total = t6 - B->t0; /* from submit: includes waiting behind the batch before it */
  m->timings = t;
  return 0;
}

/* One batch with a mark before every op, eagerly (a graph replay has no events inside it):
 * op i ran from mark i to mark i + 1 on the compute stream. Same-named ops (the RPN heads of
 * each image) are summed. Preprocessing and unmolding come from the call's stage timings. */
int cx_gpu_profile(cx_model *m, const cx_image *images, int n, cx_op_time **ops, int *count, cx_err *e) {
  cx_gpu_model *g = m->gpu;
  gprof *P = &g->prof;
  *ops = NULL;
  *count = 0;
  if (g->npending) return cx_fail(e, "profile: %d batch(es) pending (collect them first)", g->npending);
  cx_detections *out = calloc((size_t)n, sizeof *out);
  if (!out) return cx_fail(e, "out of memory");
  const int use_graph = g->use_graph;
  g->use_graph = 0;
  P->on = 1;
  P->n = 0;
  int rc = cx_gpu_detect(m, images, n, out, e);
  g->use_graph = use_graph;
  const int ok = P->on > 0;
  P->on = 0;
  int rows = 0;
  if (!rc)
    for (int i = 0; i < n; i++) rows += out[i].count;
  cx_detections_free(out, n);
  free(out);
  if (rc) return rc;
  if (!ok) return cx_fail(e, "profile: could not create or record the CUDA events");
  cx_op_time *r = calloc((size_t)P->n + 2, sizeof *r);
  if (!r) return cx_fail(e, "out of memory");
  int k = 0;
  const cx_timings *t = &m->timings;
  r[k++] = (cx_op_time){"preprocess (copies, upload, resize + mold)", "", 0, 1, t->preprocess, 0};
  for (int i = 0; i + 1 < P->n; i++) {
    cx_op_time o = P->op[i];
    if (!o.name[0]) continue; /* a stage's end */
    o.ms = cx_cuda_event_elapsed_ms(P->ev[i], P->ev[i + 1]);
    if (P->flags[i] & MARK_ROWS) o.flops *= rows;
    cx_profile_add(r, &k, &o);
  }
  r[k++] = (cx_op_time){"unmold (boxes, device resampling, download, paste)", "", NSTAGE + 1, 1, t->unmold, 0};
  if (cx_cuda_last_error()) {
    free(r);
    cx_cuda_clear_error();
    return cx_fail(e, "profile: reading the CUDA events failed");
  }
  *ops = r;
  *count = k;
  return 0;
}

/* cx_detect has checked that nothing is pending */
int cx_gpu_detect(cx_model *m, const cx_image *images, int n, cx_detections *out, cx_err *e) {
  if (cx_gpu_submit(m, images, n, e)) return -1;
  return cx_gpu_collect(m, n, out, e);
}
#endif
