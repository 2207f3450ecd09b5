/* graph_glue.cu — the small device kernels that replace the host loops of the CPU graph
 * (runtime/model.c) in the GPU graph (runtime/model_gpu.c). Each is the loop of model.c it
 * names, element for element, on device memory; none synchronises the stream.
 *
 *   column         proposals(): scores[i] = rpn_probs[i][1] (a strided column copy)
 *   gather_props   proposals(): top-k gather of scores, deltas * RPN_BBOX_STD_DEV, anchors,
 *                  for every image of the batch at once
 *   gather_rois    proposals(): rois[b][i] = boxes[b][sel[b][i]] for i < kept[b], zero rows
 *                  after (kept from device memory: the NMS counts never leave the GPU)
 *   mold           cx_gpu_submit: cx_mold_image's padding and mean subtraction (double) of one
 *                  uploaded (and, if needed, resized on the device) uint8 image
 *   clip_windows   detection(): clip_boxes of each image's rows to its window, the windows
 *                  read from device memory so that a captured graph sees each call's images
 *   roi_align      roi_align(): PyramidROIAlign for boxes of every image in one launch; each
 *                  box reads P[level-2] of its own image (img_of[i], or i / rows_per_image)
 *                  with exactly crop_resize.cu's arithmetic (bit-identical to the CPU)
 *   detection      cx_detection_layer (model.c) for all images, as four steps:
 *     det_select   argmax over classes (first maximum), its score, and its deltas *
 *                  BBOX_STD_DEV, for all n*R rows (then boxes.cu's refine, clip_windows)
 *     class_nms    per (image, class) block: the class's kept rows in ascending order (a
 *                  ballot compaction), stable descending-score rank, greedy TF NMS (nms.c's
 *                  IoU expressions, max DETECTION_MAX_INSTANCES), survivors marked alive;
 *                  its working set in shared memory for R <= 1694
 *     det_finalize per image block: survivors in ascending row order, stable top-k by
 *                  score, det [D, 6] rows (zero padded) and the count
 *   mask_pack      mask_head(): boxes/classes of the valid detections of all images packed
 *                  contiguously (image b's rows after those of images < b), with img_of, and
 *                  their total: the mask head's row count, which stays on the device
 *   mask_class     mask_head(): mrcnn_mask (the 1x1 conv) at each packed row's own class only,
 *                  sigmoid applied (the same 1 / (1 + expf(-x)) as elementwise.cu): the plane
 *                  unmolding reads, without the other nc - 1 (cx_mask_class_sigmoid of conv.c)
 * roi_align and mask_class take an optional device-side row limit (`live`): the mask head is
 * launched for every possible detection row and computes the first *live only.
 *
 * Compiled with --fmad=false (kernels/CMakeLists.txt) like crop_resize.cu, nms.cu and boxes.cu
 * so that the float expressions round exactly as on the CPU. Sort orders use the descending
 * key of kernels/cpu/sortkeys.h (cx_desc_key_dev) with the position as second key, i.e. the
 * total order of cx_topk_stable / cx_nms, so ranks (and hence selections) are identical.
 * Validated as a whole by `ctxdiff validate` (whole model, GPU vs CPU at detection level). */
#include <math.h>

#include "crop_sample.cuh"
#include "cuda_common.cuh"

namespace {

__global__ void column_kernel(const float *__restrict__ x, int rows, int stride, int col, float *__restrict__ y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < rows; i += gridDim.x * blockDim.x)
    y[i] = x[(size_t)i * stride + col];
}

/* nimg images: topk [nimg][k] (anchor indices), scores [nimg][a], bbox [nimg][a][4]; the anchors
 * are the same for every image */
__global__ void gather_props_kernel(const int *__restrict__ topk, int nimg, int k, int a,
                                    const float *__restrict__ scores, const float *__restrict__ bbox,
                                    const float *__restrict__ anchors, float sd0, float sd1, float sd2, float sd3,
                                    float *__restrict__ pre_scores, float *__restrict__ pre_deltas,
                                    float *__restrict__ pre_boxes) {
  const long long total = (long long)nimg * k;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const size_t ax = (size_t)topk[i], ix = (size_t)(i / k) * a + ax;
    pre_scores[i] = scores[ix];
    pre_deltas[i * 4 + 0] = bbox[ix * 4 + 0] * sd0;
    pre_deltas[i * 4 + 1] = bbox[ix * 4 + 1] * sd1;
    pre_deltas[i * 4 + 2] = bbox[ix * 4 + 2] * sd2;
    pre_deltas[i * 4 + 3] = bbox[ix * 4 + 3] * sd3;
    for (int j = 0; j < 4; j++) pre_boxes[i * 4 + j] = anchors[ax * 4 + j];
  }
}

/* nimg images: rois [nimg][r][4], row q of image b = boxes[b][sel[b][q]] (boxes nb rows per image,
 * sel r per image) for q < its count kept_dev[b] (device memory), zeros after */
__global__ void gather_rois_kernel(const float *__restrict__ boxes, int nb, const int *__restrict__ sel,
                                   const int *__restrict__ kept_dev, int nimg, int r, float *__restrict__ rois) {
  const long long total = (long long)nimg * r;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long b = i / r, q = i - b * r;
    const int kb = kept_dev[b];
    for (int j = 0; j < 4; j++) rois[i * 4 + j] = q < kb ? boxes[((size_t)b * nb + (size_t)sel[i]) * 4 + j] : 0.0f;
  }
}

/* cx_mold_image's loop (model.c) for one image: the (resized) uint8 image src [rh][rw][3] placed
 * at (top, left) of the [H][W][3] canvas, the mean subtracted in double and stored as float; the
 * padding is (float)(0 - mean) */
__global__ void mold_kernel(const uint8_t *__restrict__ src, int rh, int rw, int H, int W, int top, int left,
                            double m0, double m1, double m2, float *__restrict__ out) {
  const long long total = (long long)H * W * 3;
  for (long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x; o < total;
       o += (long long)gridDim.x * blockDim.x) {
    int ch, px_x; /* 32-bit index splits (cx_divmod): a 64-bit division per element would dominate */
    const long long px = cx_divmod(o, 3, &ch);
    const int iy = (int)cx_divmod(px, W, &px_x) - top, ix = px_x - left;
    const double mean = ch == 0 ? m0 : (ch == 1 ? m1 : m2);
    const bool in = iy >= 0 && iy < rh && ix >= 0 && ix < rw;
    out[o] = in ? (float)((double)src[((size_t)iy * rw + ix) * 3 + ch] - mean) : (float)(0.0 - mean);
  }
}

/* boxes.cu's clampf: min then max (tf.minimum / tf.maximum order), exact */
__device__ inline float clip1(float v, float lo, float hi) {
  v = v < hi ? v : hi;
  return v > lo ? v : lo;
}

__global__ void clip_windows_kernel(float *__restrict__ boxes, int n, int r, const float *__restrict__ windows) {
  const long long total = (long long)n * r;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const float *w = windows + (i / r) * 4;
    float *b = boxes + i * 4;
    b[0] = clip1(b[0], w[0], w[2]);
    b[1] = clip1(b[1], w[1], w[3]);
    b[2] = clip1(b[2], w[0], w[2]);
    b[3] = clip1(b[3], w[1], w[3]);
  }
}

struct pyramid {
  const void *p[4]; /* F elements */
  long long image_stride[4]; /* elements per image of each level */
  int fh[4], fw[4];
};

/* One thread per output element [nb, pool, pool, c], channel fastest. The sampling is
 * cx_crop_sample (crop_sample.cuh, shared with crop_resize.cu) on the box's own level. */
__device__ inline void put(float *o, float v) { *o = v; }
__device__ inline void put(__half *o, float v) { *o = __float2half_rn(v); }
__device__ inline void put(__nv_bfloat16 *o, float v) { *o = __float2bfloat16_rn(v); }

/* a[l] of a kernel-parameter array by selects: indexing it with a run-time l makes nvcc copy
 * the whole parameter struct to local memory (96 bytes of stack per thread) */
template <typename T>
__device__ inline T pick4(const T (&a)[4], int l) {
  return l == 0 ? a[0] : l == 1 ? a[1] : l == 2 ? a[2] : a[3];
}

/* F: the levels' element type, O: the output's (float, or F for 16-bit pooled features) */
template <typename F, typename O>
__global__ void roi_align_kernel(pyramid pyr, int c, const float *__restrict__ boxes, const int *__restrict__ levels,
                                 const int *__restrict__ img_of, int rows_per_image, int nb, int pool,
                                 O *__restrict__ out, const int *__restrict__ live) {
  if (live) nb = min(nb, __ldg(live));
  const long long total = (long long)nb * pool * pool * c;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)gridDim.x * blockDim.x) {
    int d, j, i;
    const int bi = (int)cx_divmod(cx_divmod(cx_divmod(idx, c, &d), pool, &j), pool, &i);
    int l = levels[bi] - 2;
    l = l < 0 ? 0 : (l > 3 ? 3 : l); /* roi_levels returns 2..5 */
    const int img = img_of ? img_of[bi] : bi / rows_per_image;
    const int hf = pick4(pyr.fh, l), wf = pick4(pyr.fw, l);
    const F *feat = static_cast<const F *>(pick4(pyr.p, l)) + (long long)img * pick4(pyr.image_stride, l);
    put(out + idx, cx_crop_sample(feat, hf, wf, c, boxes + (size_t)bi * 4, pool, pool, i, j, d));
  }
}

__global__ void det_select_kernel(const float *__restrict__ probs, const float *__restrict__ deltas, int rows, int nc,
                                  float sd0, float sd1, float sd2, float sd3, int *__restrict__ cls,
                                  float *__restrict__ score, float *__restrict__ d) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < rows; i += gridDim.x * blockDim.x) {
    const float *pr = probs + (size_t)i * nc;
    int best = 0;
    for (int k = 1; k < nc; k++)
      if (pr[k] > pr[best]) best = k; /* first index among equal maxima, as tf.argmax */
    cls[i] = best;
    score[i] = pr[best];
    const float *dl = deltas + ((size_t)i * nc + best) * 4;
    d[i * 4 + 0] = dl[0] * sd0;
    d[i * 4 + 1] = dl[1] * sd1;
    d[i * 4 + 2] = dl[2] * sd2;
    d[i * 4 + 3] = dl[3] * sd3;
  }
}

/* a before b in the stable descending order (position as the tie-break) */
__device__ inline bool rank_less(uint32_t ka, int pa, uint32_t kb, int pb) { return ka < kb || (ka == kb && pa < pb); }

/* Ordered compaction by the whole block (blockDim.x a multiple of 32): every i < r with
 * want(i), in ascending order, into out; returns the count to every thread. One ballot per
 * warp and 32-row step instead of one thread walking all r rows. s_warp: >= 32 ints. */
template <class Want>
__device__ int block_compact(int r, Want want, int *out, int *s_warp) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  int base = 0;
  for (int i0 = 0; i0 < r; i0 += blockDim.x) { /* uniform trip count: the barriers are safe */
    const int i = i0 + threadIdx.x;
    const bool take = i < r && want(i);
    const unsigned bal = __ballot_sync(0xffffffffu, take);
    if (lane == 0) s_warp[wid] = __popc(bal);
    __syncthreads();
    int off = base, step = 0;
    for (int q = 0; q < nw; q++) {
      off += q < wid ? s_warp[q] : 0;
      step += s_warp[q];
    }
    if (take) out[off + __popc(bal & ((1u << lane) - 1u))] = i;
    base += step;
    __syncthreads(); /* s_warp is rewritten by the next step */
  }
  return base;
}

struct class_member { /* model.c's keep list filtered by class c */
  const int *cls;
  const float *score;
  int c, use_min;
  float min_conf;
  __device__ bool operator()(int i) const { return cls[i] == c && (!use_min || score[i] >= min_conf); }
};
struct is_alive {
  const unsigned char *alive;
  __device__ bool operator()(int i) const { return alive[i] != 0; }
};

/* Per-block working set of class_nms for r rows: boxes in rank order (16 B), keys (4), members
 * (4), rank order (4), removed flags (1); in shared memory up to 48 KB (r <= 1694, the
 * default 1000), else in the global workspace. */
__host__ __device__ inline size_t class_nms_block_bytes(int r) { return ((size_t)29 * r + 15) / 16 * 16; }
#define CLASS_NMS_SMEM_MAX (48 * 1024)

/* grid (nc - 1, n): blockIdx.x + 1 = class, blockIdx.y = image. ws: NULL (shared memory) or
 * n * (nc - 1) blocks' working sets. */
__global__ void class_nms_kernel(const float *__restrict__ refined, const int *__restrict__ cls,
                                 const float *__restrict__ score, int r, int nc, int max_out, int use_min,
                                 float min_conf, float thr, unsigned char *__restrict__ ws,
                                 unsigned char *__restrict__ alive) {
  extern __shared__ uint4 nms_smem[]; /* uint4: 16-byte aligned */
  __shared__ int s_warp[32];
  unsigned char *smem = reinterpret_cast<unsigned char *>(nms_smem);
  const int c = blockIdx.x + 1, b = blockIdx.y;
  unsigned char *base = ws ? ws + ((size_t)b * (nc - 1) + blockIdx.x) * class_nms_block_bytes(r) : smem;
  float *box = reinterpret_cast<float *>(base);            /* [r][4], rank order */
  uint32_t *key = reinterpret_cast<uint32_t *>(box + (size_t)r * 4);
  int *mem = reinterpret_cast<int *>(key + r), *ord = mem + r;
  unsigned char *removed = reinterpret_cast<unsigned char *>(ord + r);
  const int *bcls = cls + (size_t)b * r;
  const float *bscore = score + (size_t)b * r;
  const float *bbox = refined + (size_t)b * r * 4;
  unsigned char *balive = alive + (size_t)b * r;
  const int cnt = block_compact(r, class_member{bcls, bscore, c, use_min, min_conf}, mem, s_warp);
  if (cnt == 0) return; /* uniform */
  for (int t = threadIdx.x; t < cnt; t += blockDim.x) {
    key[t] = cx_desc_key_dev(bscore[mem[t]]);
    removed[t] = 0;
  }
  __syncthreads();
  /* stable descending-score rank (cx_nms's order), then the boxes gathered in that order */
  for (int t = threadIdx.x; t < cnt; t += blockDim.x) {
    const uint32_t kt = key[t];
    int rank = 0;
    for (int u = 0; u < cnt; u++) rank += rank_less(key[u], u, kt, t);
    ord[rank] = mem[t];
    const float *src = bbox + (size_t)mem[t] * 4;
    for (int j = 0; j < 4; j++) box[(size_t)rank * 4 + j] = src[j];
  }
  __syncthreads();
  int kept = 0;
  for (int q = 0; q < cnt; q++) {
    if (removed[q]) continue; /* every thread reads the same flag: the loop stays uniform */
    if (threadIdx.x == 0) balive[ord[q]] = 1;
    kept++;
    if (kept == max_out) break;
    const float *bq = box + (size_t)q * 4;
    const float y0i = bq[0] < bq[2] ? bq[0] : bq[2], y1i = bq[0] < bq[2] ? bq[2] : bq[0];
    const float x0i = bq[1] < bq[3] ? bq[1] : bq[3], x1i = bq[1] < bq[3] ? bq[3] : bq[1];
    const float ai = (y1i - y0i) * (x1i - x0i);
    if (!(ai > 0.0f)) continue; /* a zero-area box suppresses nothing (uniform) */
    for (int j = q + 1 + threadIdx.x; j < cnt; j += blockDim.x) {
      if (removed[j]) continue;
      const float *bj = box + (size_t)j * 4;
      const float ymin = bj[0] < bj[2] ? bj[0] : bj[2], ymax = bj[0] < bj[2] ? bj[2] : bj[0];
      const float xmin = bj[1] < bj[3] ? bj[1] : bj[3], xmax = bj[1] < bj[3] ? bj[3] : bj[1];
      const float aj = (ymax - ymin) * (xmax - xmin);
      if (!(aj > 0.0f)) continue; /* zero-area boxes are never suppressed */
      const float ih0 = (y1i < ymax ? y1i : ymax) - (y0i > ymin ? y0i : ymin);
      const float iw0 = (x1i < xmax ? x1i : xmax) - (x0i > xmin ? x0i : xmin);
      const float ih = ih0 > 0.0f ? ih0 : 0.0f;
      const float iw = iw0 > 0.0f ? iw0 : 0.0f;
      const float inter = ih * iw;
      const float iou = inter / (ai + aj - inter);
      if (iou > thr) removed[j] = 1;
    }
    __syncthreads(); /* the flags of this round are visible before the next candidate */
  }
}

/* det_finalize's working set: the survivors' rows and keys, in shared memory up to 48 KB
 * (r <= 6144), else in the global workspace ([n] of them) */
__host__ __device__ inline size_t finalize_block_bytes(int r) { return (size_t)8 * r; }

/* one block per image: survivors in ascending row order, stable top-k by score, det rows */
__global__ void det_finalize_kernel(const float *__restrict__ refined, const int *__restrict__ cls,
                                    const float *__restrict__ score, const unsigned char *__restrict__ alive, int r,
                                    int max_out, unsigned char *__restrict__ ws, float *__restrict__ det,
                                    int *__restrict__ det_count) {
  extern __shared__ uint4 fin_smem[];
  __shared__ int s_warp[32];
  unsigned char *smem = reinterpret_cast<unsigned char *>(fin_smem);
  const int b = blockIdx.x;
  unsigned char *base = ws ? ws + (size_t)b * finalize_block_bytes(r) : smem;
  int *lst = reinterpret_cast<int *>(base);
  uint32_t *key = reinterpret_cast<uint32_t *>(lst + r);
  const float *bscore = score + (size_t)b * r;
  float *bdet = det + (size_t)b * max_out * 6;
  for (int t = threadIdx.x; t < max_out * 6; t += blockDim.x) bdet[t] = 0.0f;
  const int cnt = block_compact(r, is_alive{alive + (size_t)b * r}, lst, s_warp);
  const int num = cnt < max_out ? cnt : max_out;
  for (int t = threadIdx.x; t < cnt; t += blockDim.x) key[t] = cx_desc_key_dev(bscore[lst[t]]);
  __syncthreads(); /* also orders the zero fill above before the rows below */
  for (int t = threadIdx.x; t < cnt; t += blockDim.x) {
    const uint32_t kt = key[t];
    int rank = 0;
    for (int u = 0; u < cnt; u++) rank += rank_less(key[u], u, kt, t);
    if (rank < num) {
      const int i = lst[t];
      const float *bx = refined + ((size_t)b * r + i) * 4;
      float *o = bdet + (size_t)rank * 6;
      o[0] = bx[0];
      o[1] = bx[1];
      o[2] = bx[2];
      o[3] = bx[3];
      o[4] = (float)cls[(size_t)b * r + i];
      o[5] = bscore[i];
    }
  }
  if (threadIdx.x == 0) det_count[b] = num;
}

__global__ void mask_pack_kernel(const float *__restrict__ det, const int *__restrict__ det_count, int n, int d,
                                 float *__restrict__ boxes, int *__restrict__ img_of, int *__restrict__ cls_of,
                                 int *__restrict__ total) {
  for (int s = blockIdx.x * blockDim.x + threadIdx.x; s < n * d; s += gridDim.x * blockDim.x) {
    const int b = s / d, t = s % d;
    if (s == 0 && total) {
      int sum = 0;
      for (int q = 0; q < n; q++) sum += det_count[q];
      *total = sum;
    }
    if (t >= det_count[b]) continue;
    int row = t;
    for (int q = 0; q < b; q++) row += det_count[q];
    const float *dr = det + (size_t)s * 6;
    for (int j = 0; j < 4; j++) boxes[(size_t)row * 4 + j] = dr[j];
    img_of[row] = b;
    cls_of[row] = (int)dr[4];
  }
}

/* grid (rows, pixel chunks), 8 warps: the row's kernel column in shared memory, one warp per
 * pixel (lanes stride over cin: coalesced 128-byte reads of the pixel's features), a fixed
 * butterfly sum, so the result does not depend on the launch */
__global__ void __launch_bounds__(256) mask_class_kernel(const float *__restrict__ x, int rows, int pix, int cin,
                                                         const float *__restrict__ kernel,
                                                         const float *__restrict__ bias, int nc,
                                                         const int *__restrict__ cls_of, float *__restrict__ y,
                                                         const int *__restrict__ live) {
  extern __shared__ float col[];
  const int r = blockIdx.x;
  if (r >= rows || (live && r >= __ldg(live))) return;
  int c = cls_of[r];
  c = c < 0 ? 0 : (c >= nc ? nc - 1 : c);
  for (int k = threadIdx.x; k < cin; k += blockDim.x) col[k] = kernel[(size_t)k * nc + c];
  __syncthreads();
  const float b = bias ? bias[c] : 0.0f;
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  const int per = (pix + gridDim.y - 1) / gridDim.y, p0 = blockIdx.y * per, p1 = min(pix, p0 + per);
  for (int p = p0 + (threadIdx.x >> 5); p < p1; p += warps) {
    const float *xp = x + ((size_t)r * pix + p) * cin;
    float s = 0.0f;
    for (int k = lane; k < cin; k += 32) s = fmaf(__ldg(xp + k), col[k], s);
    for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) y[(size_t)r * pix + p] = 1.0f / (1.0f + expf(-(b + s)));
  }
}

/* One thread per (image b, position q, anchor a) of one level: the merged heads' row
 * (b*hw + q) of width ld holds 2*apl class logits then 4*apl box deltas */
__global__ void rpn_split_kernel(const float *__restrict__ head, int ld, int n, int hw, int apl, size_t A, size_t off,
                                 float *__restrict__ logits, float *__restrict__ bbox) {
  const long long total = (long long)n * hw * apl;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    int a, q; /* 32-bit index splits (cx_divmod) */
    const long long bq = cx_divmod(i, apl, &a), b = cx_divmod(bq, hw, &q);
    const float *h = head + bq * ld;
    const size_t r = (size_t)b * A + off + (size_t)q * apl + a; /* the anchor's row in the image's concatenation */
    logits[r * 2] = h[2 * a];
    logits[r * 2 + 1] = h[2 * a + 1];
    for (int j = 0; j < 4; j++) bbox[r * 4 + j] = h[2 * apl + 4 * a + j];
  }
}

} /* namespace */

int cx_cuda_rpn_split(const float *head, int ld, int n, int hw, int apl, size_t A, size_t off, float *logits,
                      float *bbox) {
  if (n <= 0 || hw <= 0 || apl <= 0) return 0;
  if (ld < 6 * apl) return CX_CUDA_FAIL("rpn_split: rows of %d values hold fewer than the 6 x %d outputs", ld, apl);
  const size_t total = (size_t)n * hw * apl;
  rpn_split_kernel<<<cx_blocks(total, 256), 256, 0, cx_cuda_stream()>>>(head, ld, n, hw, apl, A, off, logits, bbox);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

/* scores[i] = x[i][col]: a strided column copy */
static int cx_cuda_column(const float *x, int rows, int stride, int col, float *y) {
  if (rows <= 0) return 0;
  column_kernel<<<cx_blocks((size_t)rows, 256), 256, 0, cx_cuda_stream()>>>(x, rows, stride, col, y);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

/* nimg images' top-k anchors (topk [nimg][k] from cx_cuda_topk_stable_seg; scores [nimg][a], bbox
 * [nimg][a][4], anchors [a][4] shared) -> pre_scores [nimg*k], pre_deltas (times sd), pre_boxes */
static int cx_cuda_gather_proposals(const int *topk, int nimg, int k, int a, const float *scores,
                                    const float *bbox, const float *anchors, const float sd[4], float *pre_scores,
                                    float *pre_deltas, float *pre_boxes) {
  if (nimg <= 0 || k <= 0) return 0;
  gather_props_kernel<<<cx_blocks((size_t)nimg * k, 256), 256, 0, cx_cuda_stream()>>>(
      topk, nimg, k, a, scores, bbox, anchors, sd[0], sd[1], sd[2], sd[3], pre_scores, pre_deltas, pre_boxes);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

/* ProposalLayer's last step for nimg images: rois [nimg][r][4], image b's row q = its box
 * sel[b][q] (boxes nb rows per image) for q below its count kept_dev[b] (device memory, from
 * cx_cuda_nms_batched_dev), zero rows after. */
static int cx_cuda_gather_rois_dev(const float *boxes, int nb, const int *sel, const int *kept_dev, int nimg,
                                   int r, float *rois) {
  if (nimg <= 0 || r <= 0) return 0;
  gather_rois_kernel<<<cx_blocks((size_t)nimg * r, 256), 256, 0, cx_cuda_stream()>>>(boxes, nb, sel, kept_dev, nimg, r,
                                                                                      rois);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

int cx_cuda_mold(const uint8_t *src, int rh, int rw, int H, int W, int top, int left, const double mean[3], float *out) {
  if (H <= 0 || W <= 0) return 0;
  mold_kernel<<<cx_blocks((size_t)H * W * 3, 256), 256, 0, cx_cuda_stream()>>>(src, rh, rw, H, W, top, left, mean[0],
                                                                              mean[1], mean[2], out);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

/* clip_boxes of n images' [r, 4] row groups, image b to windows[b*4 .. b*4+3] (device memory,
 * so that a captured graph reads each call's windows): exactly clip_boxes' arithmetic. */
static int cx_cuda_clip_boxes_windows(float *boxes, int n, int r, const float *windows) {
  if (n <= 0 || r <= 0) return 0;
  clip_windows_kernel<<<cx_blocks((size_t)n * r, 256), 256, 0, cx_cuda_stream()>>>(boxes, n, r, windows);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

int cx_cuda_pyramid_roi_align(const void *const p[4], int p16, const int fh[4], const int fw[4], int c,
                              const float *boxes, const int *levels, const int *img_of, int rows_per_image, int nb,
                              int pool, void *out, int out16, const int *live) {
  if (nb <= 0) return 0;
  if (pool < 2) return CX_CUDA_FAIL("pyramid_roi_align: pool size %d must be at least 2", pool);
  if (!img_of && rows_per_image <= 0) return CX_CUDA_FAIL("pyramid_roi_align: rows_per_image must be positive");
  pyramid pyr;
  for (int l = 0; l < 4; l++) {
    pyr.p[l] = p[l];
    pyr.fh[l] = fh[l];
    pyr.fw[l] = fw[l];
    pyr.image_stride[l] = (long long)fh[l] * fw[l] * c;
  }
  const size_t total = (size_t)nb * pool * pool * c;
  const unsigned blocks = cx_blocks(total, 256);
  const cudaStream_t st = cx_cuda_stream();
  const cx_precision prec = cx_cuda_precision();
  if ((p16 || out16) && prec == CX_PREC_FP32)
    return CX_CUDA_FAIL("pyramid_roi_align: 16-bit levels or output need precision fp16 or bf16");
  if (out16 && !p16) return CX_CUDA_FAIL("pyramid_roi_align: a 16-bit output needs 16-bit levels");
  /* F: the levels' element type; the output is F too (out16) or fp32 */
  auto launch = [&](auto f_tag, bool o16) {
    using F = decltype(f_tag);
    if (o16)
      roi_align_kernel<F, F><<<blocks, 256, 0, st>>>(pyr, c, boxes, levels, img_of, rows_per_image, nb, pool,
                                                     static_cast<F *>(out), live);
    else
      roi_align_kernel<F, float><<<blocks, 256, 0, st>>>(pyr, c, boxes, levels, img_of, rows_per_image, nb, pool,
                                                         static_cast<float *>(out), live);
  };
  if (!p16) launch(float{}, false);
  else if (prec == CX_PREC_FP16) launch(__half{}, out16 != 0);
  else launch(__nv_bfloat16{}, out16 != 0);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

/* The proposal layer's workspace (byte offsets, 256-aligned): scores [n, a], topk [n, k],
 * pre_boxes and pre_deltas [n, k, 4], pre_scores [n, k], sel [n, r], kept counts [n] */
namespace {
struct prop_ws {
  size_t scores, topk, boxes, deltas, pre_scores, sel, kept, bytes;
};
size_t up256(size_t b) { return (b + 255) / 256 * 256; }
prop_ws prop_ws_layout(int n, int a, int k, int r) {
  prop_ws L;
  size_t o = 0;
  const size_t nk = (size_t)n * k;
  L.scores = o, o += up256((size_t)n * a * 4);
  L.topk = o, o += up256(nk * 4);
  L.boxes = o, o += up256(nk * 16);
  L.deltas = o, o += up256(nk * 16);
  L.pre_scores = o, o += up256(nk * 4);
  L.sel = o, o += up256((size_t)n * r * 4);
  L.kept = o, o += up256((size_t)n * 4);
  L.bytes = o;
  return L;
}
} // namespace

size_t cx_cuda_proposals_ws(int n, int a, int pre_nms, int r) {
  if (n <= 0 || a <= 0 || r <= 0) return 256;
  return prop_ws_layout(n, a, pre_nms < a ? pre_nms : a, r).bytes;
}

int cx_cuda_proposals(const cx_cuda_props *p, void (*step)(void *ctx, const char *name), void *ctx) {
  const int n = p->n, a = p->a, r = p->r;
  if (n <= 0 || a <= 0 || r <= 0) return 0;
  if (p->pre_nms < 1) return CX_CUDA_FAIL("proposals: PRE_NMS_LIMIT %d must be positive", p->pre_nms);
  const int k0 = p->pre_nms < a ? p->pre_nms : a;
  const prop_ws L = prop_ws_layout(n, a, k0, r);
  unsigned char *w = static_cast<unsigned char *>(p->ws);
  float *scores = reinterpret_cast<float *>(w + L.scores), *boxes = reinterpret_cast<float *>(w + L.boxes);
  float *deltas = reinterpret_cast<float *>(w + L.deltas), *pre_scores = reinterpret_cast<float *>(w + L.pre_scores);
  int *topk = reinterpret_cast<int *>(w + L.topk), *sel = reinterpret_cast<int *>(w + L.sel);
  int *kept = reinterpret_cast<int *>(w + L.kept);
  if (step) step(ctx, "proposals: top-k");
  if (cx_cuda_column(p->probs, n * a, 2, 1, scores)) return -1;
  const int k = cx_cuda_topk_stable_seg(scores, n, a, k0, topk);
  if (k < 0) return -1;
  if (step) step(ctx, "proposals: gather, decode, clip");
  const float unit[4] = {0, 0, 1, 1};
  if (cx_cuda_gather_proposals(topk, n, k, a, scores, p->bbox, p->anchors, p->sd, pre_scores, deltas, boxes) ||
      cx_cuda_apply_box_deltas(boxes, deltas, n * k, boxes) || cx_cuda_clip_boxes(boxes, n * k, unit))
    return -1;
  if (step) step(ctx, "proposals: NMS");
  if (cx_cuda_nms_batched_dev(boxes, pre_scores, n, k, r, p->nms_thr, sel, kept)) return -1;
  if (step) step(ctx, "proposals: gather ROIs");
  return cx_cuda_gather_rois_dev(boxes, k, sel, kept, n, r, p->rois);
}

/* The detection workspace's parts (byte offsets, 256-aligned): cls [nR], score [nR], chosen
 * deltas and refined boxes [nR, 4], alive flags [nR], then class_nms's and det_finalize's
 * global working sets where shared memory is too small for r (0: none) */
namespace {
struct det_ws {
  size_t cls, score, d, refined, alive, nms, fin, bytes;
};
det_ws det_ws_layout(int n, int r, int nc) {
  const size_t nR = (size_t)n * r;
  det_ws L;
  size_t o = 0;
  L.cls = o, o += up256(nR * 4);
  L.score = o, o += up256(nR * 4);
  L.d = o, o += up256(nR * 16);
  L.refined = o, o += up256(nR * 16);
  L.alive = o, o += up256(nR);
  L.nms = 0;
  if (class_nms_block_bytes(r) > CLASS_NMS_SMEM_MAX)
    L.nms = o, o += up256((size_t)n * (nc > 1 ? nc - 1 : 1) * class_nms_block_bytes(r));
  L.fin = 0;
  if (finalize_block_bytes(r) > CLASS_NMS_SMEM_MAX) L.fin = o, o += up256((size_t)n * finalize_block_bytes(r));
  L.bytes = o;
  return L;
}
} // namespace

size_t cx_cuda_detection_ws(int n, int r, int nc) {
  if (n <= 0 || r <= 0) return 256;
  return det_ws_layout(n, r, nc).bytes;
}

int cx_cuda_detection(const cx_cuda_det *a, void (*step)(void *ctx, const char *name), void *ctx) {
  const int n = a->n, r = a->r, nc = a->nc;
  if (n <= 0 || r <= 0) return 0;
  if (nc < 1 || a->max_out < 1 || a->max_out > r)
    return CX_CUDA_FAIL("detection: %d classes and %d detections of %d rows are not a valid layer", nc, a->max_out, r);
  const int nR = n * r;
  const cudaStream_t st = cx_cuda_stream();
  const det_ws L = det_ws_layout(n, r, nc);
  unsigned char *w = static_cast<unsigned char *>(a->ws);
  int *cls = reinterpret_cast<int *>(w + L.cls);
  float *score = reinterpret_cast<float *>(w + L.score), *d = reinterpret_cast<float *>(w + L.d);
  float *refined = reinterpret_cast<float *>(w + L.refined);
  unsigned char *alive = w + L.alive, *nms_ws = L.nms ? w + L.nms : NULL, *fin_ws = L.fin ? w + L.fin : NULL;
  if (step) step(ctx, "detection: class, refine, clip");
  det_select_kernel<<<cx_blocks((size_t)nR, 128), 128, 0, st>>>(a->probs, a->deltas, nR, nc, a->sd[0], a->sd[1],
                                                                 a->sd[2], a->sd[3], cls, score, d);
  CX_CUDA_LAUNCH_CHECK();
  if (cx_cuda_apply_box_deltas(a->rois, d, nR, refined) || cx_cuda_clip_boxes_windows(refined, n, r, a->windows))
    return -1;
  if (step) step(ctx, "detection: per-class NMS");
  CX_CUDA_CHECK(cudaMemsetAsync(alive, 0, (size_t)nR, st));
  if (nc >= 2) {
    class_nms_kernel<<<dim3((unsigned)(nc - 1), (unsigned)n), 128, nms_ws ? 0 : class_nms_block_bytes(r), st>>>(
        refined, cls, score, r, nc, a->max_out, a->use_min, a->min_conf, a->nms_thr, nms_ws, alive);
    CX_CUDA_LAUNCH_CHECK();
  }
  if (step) step(ctx, "detection: top-k");
  det_finalize_kernel<<<(unsigned)n, 256, fin_ws ? 0 : finalize_block_bytes(r), st>>>(refined, cls, score, alive, r,
                                                                                     a->max_out, fin_ws, a->det,
                                                                                     a->det_count);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

int cx_cuda_mask_pack(const float *det, const int *det_count, int n, int d, float *boxes, int *img_of, int *cls_of,
                      int *total) {
  if (n <= 0 || d <= 0) return 0;
  mask_pack_kernel<<<cx_blocks((size_t)n * d, 128), 128, 0, cx_cuda_stream()>>>(det, det_count, n, d, boxes, img_of,
                                                                                cls_of, total);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

int cx_cuda_mask_class(const float *x, int rows, int pix, int cin, const float *kernel, const float *bias, int nc,
                       const int *cls_of, float *y, const int *live) {
  if (rows <= 0 || pix <= 0) return 0;
  if (cin <= 0 || cin > 12288 || nc <= 0)
    return CX_CUDA_FAIL("mask_class: cin %d (1..12288: the column in shared memory) or nc %d", cin, nc);
  const dim3 grid((unsigned)rows, (unsigned)min(4, pix));
  mask_class_kernel<<<grid, 256, (size_t)cin * sizeof(float), cx_cuda_stream()>>>(x, rows, pix, cin, kernel, bias, nc,
                                                                                   cls_of, y, live);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}
