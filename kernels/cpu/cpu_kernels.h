/* CPU kernels of the matterport Mask R-CNN op set (NHWC float32, batch-major).
 *
 * One source file per op family (conv.c, pool.c, elementwise.c, deconv.c, crop_resize.c,
 * boxes.c, nms.c, topk.c, resize.c). Each kernel reproduces the TensorFlow / Keras /
 * scikit-image semantics stated in shared/spec/maskrcnn-matterport.md and is validated
 * by tests/test_kernels against PyTorch/NumPy or shared/reference/tf_ops.py.
 * Parallelised with OpenMP; no kernel allocates on the per-image path unless noted
 * (callers pass workspaces). */
#ifndef CX_CPU_KERNELS_H
#define CX_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* ---- gemm.c: C[M][N] = A[M][K] * B[K][N] + beta * C, row-major, beta 0 or 1 ----------
 * OpenBLAS when built with it, else (or after cx_gemm_select("own")) our own kernel. */
void cx_sgemm(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
int cx_gemm_select(const char *name); /* "blas" or "own"; -1 when not available */
const char *cx_gemm_name(void);
/* Threads of the CPU kernels and of OpenBLAS (one pool in its OpenMP flavour): n >= 1. Default:
 * OpenMP's (OMP_NUM_THREADS, else every core). cx_threads: the count in force. */
void cx_set_threads(int n);
int cx_threads(void);

/* ---- conv.c: 2-D convolution (cross-correlation), implicit-im2col GEMM ----------------
 * x [n, h, w, cin]; kernel in Keras layout (kh, kw, cin, cout), which is the row-major
 * GEMM matrix [kh*kw*cin, cout]; bias [cout] (may be NULL).
 * Explicit padding (pad_t, pad_l, pad_b, pad_r) with zeros; output size
 * ho = (h + pad_t + pad_b - kh) / stride + 1 (same for w).
 * Epilogue, in this order: + bias, + residual (same shape as y, may be NULL), ReLU.
 * ws: workspace of cx_conv2d_workspace() floats (may be NULL when that is 0). */
typedef struct cx_conv2d_desc {
  int kh, kw, cin, cout, stride;
  int pad_t, pad_l, pad_b, pad_r;
  const float *kernel; /* (kh, kw, cin, cout) */
  const float *bias;   /* (cout) or NULL */
  /* Optional Winograd form of a 3x3 kernel (cx_winograd_pack) and its output tile (2 or
   * 4); when set, 3x3 stride-1 convolutions padded by 1 everywhere use winograd.c. */
  const float *winograd;
  int winograd_tile;
  /* CUDA fp16/bf16 runs: the kernel rounded once to 16 bits (device memory, from
   * cx_cuda_weights16_upload) and its format (1 fp16, 2 bf16, as cx_precision); NULL: the
   * 16-bit GEMMs round `kernel` while staging it. Ignored by the CPU. */
  const void *kernel16;
  int kernel16_prec;
} cx_conv2d_desc;

/* TensorFlow SAME padding for one axis: out = ceil(in / s), extra pixel at bottom/right. */
void cx_same_pads(int in, int k, int s, int *before, int *after);
int cx_conv2d_out(int in, int k, int s, int pad_before, int pad_after);
size_t cx_conv2d_workspace(const cx_conv2d_desc *d, int n, int h, int w);
/* 2 x multiply-adds of d (pads resolved) on n images of h x w: the count bench and the profiles use */
double cx_conv2d_flops(const cx_conv2d_desc *d, double n, int h, int w);
/* The path cx_conv2d takes for d (pads resolved) on an h x w input, for the profile:
 * "winograd F(4x4,3x3)", "winograd F(2x2,3x3)", "GEMM (1x1)", "GEMM (whole input)", "im2col + GEMM" */
const char *cx_conv2d_path(const cx_conv2d_desc *d, int h, int w);
void cx_conv2d(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y,
               const float *residual, int relu, float *ws);

/* ---- winograd.c: the same 3x3 / stride 1 / pad 1 convolution in Winograd form ----------
 * F(4x4, 3x3) (default; 4x fewer multiplications) or F(2x2, 3x3) (2.25x): GEMMs over
 * channels of transformed tiles replace the im2col GEMM. The tile is fixed when a kernel
 * is packed (desc.winograd_tile); cx_conv_select picks the tile for kernels packed later
 * ("winograd4", "winograd2") or turns the Winograd path off ("im2col"). */
size_t cx_winograd_packed_floats(int tile, int cin, int cout);
void cx_winograd_pack(int tile, const float *kernel, int cin, int cout, float *packed);
int cx_winograd_applies(const cx_conv2d_desc *d);
size_t cx_winograd_workspace(const cx_conv2d_desc *d, int n, int h, int w);
void cx_conv3x3_winograd(const cx_conv2d_desc *d, const float *x, int n, int h, int w, float *y,
                         const float *residual, int relu, float *ws);
int cx_conv_select(const char *name);
const char *cx_conv_name(void);
int cx_winograd_default_tile(void); /* 4, 2, or 0 (im2col) */

/* The mask head's last layer as unmolding uses it (matterport's mrcnn_mask, a 1x1 conv with
 * sigmoid, read only at the detection's class): y[r, p] = sigmoid(bias[c] + sum_k x[r, p, k] *
 * kernel[k, c]) with c = cls[r] clamped to [0, nc); x [rows, pix, cin], kernel (1, 1, cin, nc),
 * y [rows, pix]. One column instead of nc: ~nc x fewer multiply-adds than the full conv. */
void cx_mask_class_sigmoid(const float *x, int rows, int pix, int cin, const float *kernel, const float *bias,
                           int nc, const int *cls, float *y);

/* Dense: y[rows, out] = x[rows, in] * k[in, out] + bias, optional ReLU. */
void cx_dense(const float *x, int rows, int in, const float *k, const float *bias, int out,
              int relu, float *y);

/* ---- pool.c ---------------------------------------------------------------------------
 * TF max-pool, SAME padding (padded cells never win): y [n, ceil(h/s), ceil(w/s), c]. */
void cx_maxpool_same(const float *x, int n, int h, int w, int c, int k, int s, float *y);
/* MaxPooling2D(pool_size=1, strides=2): y[n, ceil(h/2), ceil(w/2), c] = x[.., 2i, 2j, ..]. */
void cx_subsample2(const float *x, int n, int h, int w, int c, float *y);

/* ---- elementwise.c -------------------------------------------------------------------- */
void cx_relu(float *x, size_t count);
void cx_sigmoid(float *x, size_t count);
/* y [n, 2h, 2w, c] += nearest-upsample-2x(x [n, h, w, c])  (Keras UpSampling2D + Add). */
void cx_upsample2_add(const float *x, int n, int h, int w, int c, float *y);
/* Row-wise softmax over `cols` (max-subtracted), rows independent; y may equal x. */
void cx_softmax_rows(const float *x, size_t rows, int cols, float *y);
/* Inference batch norm in Keras order: inv = rsqrt(var + eps) * gamma; shift = beta - mean*inv. */
void cx_bn_coeffs(const float *gamma, const float *beta, const float *mean, const float *var,
                  int c, float eps, float *inv, float *shift);

/* ---- deconv.c: Conv2DTranspose 2x2, stride 2, VALID -----------------------------------
 * out[2i+a][2j+b][o] = bias[o] + sum_c x[i][j][c] * K[a][b][o][c]; K in Keras layout
 * (2, 2, cout, cin). cx_deconv2x2_pack repacks K once (at load) into `packed`
 * (cin * 4 * cout floats) for the GEMM form; the kernel takes the packed form.
 * y [n, 2h, 2w, cout]; optional ReLU. ws: n*h*w*4*cout floats. */
void cx_deconv2x2_pack(const float *keras_kernel, int cin, int cout, float *packed);
void cx_deconv2x2(const float *x, int n, int h, int w, int cin, const float *packed,
                  const float *bias, int cout, int relu, float *y, float *ws);

/* ---- crop_resize.c: TensorFlow crop_and_resize (bilinear, extrapolation 0), float32 ----
 * feat [hf, wf, c] (one image); boxes [nb, 4] normalized (y1, x1, y2, x2);
 * out [nb, ph, pw, c]; ph, pw > 1. Exact spec §9.2 arithmetic (a + (b - a) * t, no FMA). */
void cx_crop_and_resize(const float *feat, int hf, int wf, int c, const float *boxes, int nb,
                        int ph, int pw, float *out);
/* Pyramid level (2..5) of each box, spec §9.1 (float32, half-even, zero boxes -> 2). */
void cx_roi_levels(const float *boxes, int nb, int image_h, int image_w, int *levels);

/* ---- boxes.c --------------------------------------------------------------------------
 * apply_box_deltas_graph (spec §8 step 4), float32, in place on `out` (may alias boxes). */
void cx_apply_box_deltas(const float *boxes, const float *deltas, int nb, float *out);
/* clip_boxes_graph: each coordinate clamped to window (wy1, wx1, wy2, wx2). */
void cx_clip_boxes(float *boxes, int nb, const float window[4]);
/* norm_boxes / denorm_boxes of spec §6.4 (double arithmetic, then float / int32). */
void cx_norm_boxes(const double *boxes_px, int nb, int h, int w, float *out);
void cx_denorm_boxes(const float *boxes, int nb, int h, int w, int32_t *out);
/* Pyramid anchors of spec §6 (pixels, double), count = cx_anchor_count(...). */
size_t cx_anchor_count(const int *feat_h, const int *feat_w, int levels, int ratios, int anchor_stride);
void cx_generate_anchors(const double *scales, int levels, const double *ratios, int nratios,
                         const int *feat_h, const int *feat_w, const int *strides,
                         int anchor_stride, double *out_px);

/* ---- topk.c ----------------------------------------------------------------------------
 * tf.nn.top_k(sorted=True): indices of the k largest scores, descending, ties in
 * ascending index order. idx_out [k]; ws: 2*n ints of workspace. Returns k used. */
int cx_topk_stable(const float *scores, int n, int k, int *idx_out, int *ws);

/* ---- nms.c: TensorFlow non_max_suppression semantics (spec §8.1, §16.6) ---------------
 * Candidates in descending score order with stable ties (ascending index); a candidate
 * is dropped when IoU > threshold (float32) with a selected box; zero-area boxes have
 * IoU 0 with everything. Returns the number selected; sel_out [max_out] holds indices
 * into boxes in selection order. ws: cx_nms_workspace(n) bytes. */
size_t cx_nms_workspace(int n);
int cx_nms(const float *boxes, const float *scores, int n, int max_out, float iou_threshold,
           int *sel_out, void *ws);

/* ---- resize.c: scikit-image resize (order 1, constant 0, clip with cval rule, no AA) ---
 * Double precision, channels independent; in [ih, iw, c] -> out [oh, ow, c]. The clip
 * range is the min/max of the whole input (all channels). The u8 form truncates toward
 * zero (NumPy astype), the f32 form (masks, one channel) returns the clipped doubles. */
void cx_skimage_resize_u8(const uint8_t *in, int ih, int iw, int c, int oh, int ow, uint8_t *out);
void cx_skimage_resize_f32(const float *in, int ih, int iw, int oh, int ow, double *out);

#endif
