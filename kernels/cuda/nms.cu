/* nms.cu — TensorFlow non_max_suppression semantics (spec §8.1, §16.6), bitmask form:
 *   1. order = stable descending score order (sort.cu; ties by ascending index, NaN last);
 *   2. gather the boxes in that order, min/max-normalised, with their float32 areas;
 *   3. mask[i][jb] bit jj = (IoU(i, j) > threshold) for j = jb*64 + jj > i, computed by
 *      (64 rows x 64 columns) blocks; a pair with a zero (or negative/NaN) area never sets a
 *      bit, so zero-area boxes are never suppressed and never suppress;
 *   4. one block walks the candidates in order, keeping a "removed" bitset in shared memory:
 *      a candidate not removed is selected and ORs its mask row into the set; stops at
 *      max_out. This is exactly the greedy loop of kernels/cpu/nms.c, done 64 candidates at a
 *      time (nms_scan_kernel).
 * IoU uses the CPU's expressions (ternary min/max, inter / (ai + aj - inter), IEEE division,
 * --fmad=false), so every comparison, and hence the selection, is identical.
 * Layout: boxes [n, 4] (y1, x1, y2, x2), scores [n] -> sel_out [max_out] indices into boxes in
 * selection order, all device memory. `ws` of the table entry is unused (scratch arena:
 * about n*n/8 bytes for the mask, 4.5 MB at n = 6000). n is limited to 65536.
 * cx_cuda_nms returns the number selected (synchronises the stream to read it), or -1 on
 * error; cx_cuda_nms_dev leaves it in device memory for the next kernels (no sync, so the
 * proposal layer can be captured into a CUDA graph).
 * cx_cuda_nms_batched_dev runs nimg images' NMS (n candidates each) in the same launches: one
 * segmented sort, the masks of all images (gridDim.z), one scan block per image.
 * Validated by `ctxdiff validate --device cuda` against cx_nms (exact index lists). */
#include "cuda_common.cuh"

namespace {

constexpr int NMS_MAX_N = 65536;

/* all nimg images' n candidates: row r of image b at b*n + r; order holds indices within the image */
__global__ void nms_gather_kernel(const float *__restrict__ boxes, const int *__restrict__ order, int nimg, int n,
                                  float4 *__restrict__ sb, float *__restrict__ area) {
  const long long total = (long long)nimg * n;
  for (long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x; r < total;
       r += (long long)gridDim.x * blockDim.x) {
    const long long img = r / n;
    const float *b = boxes + (size_t)(img * n + order[r]) * 4;
    const float y1 = b[0], x1 = b[1], y2 = b[2], x2 = b[3];
    float4 v;
    v.x = y1 < y2 ? y1 : y2; /* ymin */
    v.y = x1 < x2 ? x1 : x2; /* xmin */
    v.z = y1 < y2 ? y2 : y1; /* ymax */
    v.w = x1 < x2 ? x2 : x1; /* xmax */
    sb[r] = v;
    area[r] = (v.z - v.x) * (v.w - v.y);
  }
}

/* grid (nblk, nblk, nimg): blockIdx.y = row block, blockIdx.x = column block, blockIdx.z = image
 * (its rows at z*n, its mask at z*n*nblk words); 64 threads. */
__global__ void __launch_bounds__(64) nms_mask_kernel(const float4 *__restrict__ sb, const float *__restrict__ area,
                                                      int n, int nblk, float thr,
                                                      unsigned long long *__restrict__ mask) {
  const int rb = blockIdx.y, cb = blockIdx.x, t = threadIdx.x;
  sb += (size_t)blockIdx.z * n;
  area += (size_t)blockIdx.z * n;
  mask += (size_t)blockIdx.z * n * nblk;
  const int i = rb * 64 + t;
  __shared__ float4 cbox[64];
  __shared__ float carea[64];
  const int j0 = cb * 64;
  if (j0 + t < n) {
    cbox[t] = sb[j0 + t];
    carea[t] = area[j0 + t];
  }
  __syncthreads();
  if (i >= n) return;
  unsigned long long bits = 0;
  const float ai = area[i];
  if (cb >= rb && ai > 0.0f) {
    const float4 bi = sb[i];
    const float y0i = bi.x, x0i = bi.y, y1i = bi.z, x1i = bi.w;
    const int jn = n - j0 < 64 ? n - j0 : 64;
    for (int jj = 0; jj < jn; jj++) {
      const int j = j0 + jj;
      if (j <= i) continue;
      const float aj = carea[jj];
      if (!(aj > 0.0f)) continue;
      const float4 bj = cbox[jj];
      const float ih0 = (y1i < bj.z ? y1i : bj.z) - (y0i > bj.x ? y0i : bj.x);
      const float iw0 = (x1i < bj.w ? x1i : bj.w) - (x0i > bj.y ? x0i : bj.y);
      const float ih = ih0 > 0.0f ? ih0 : 0.0f;
      const float iw = iw0 > 0.0f ? iw0 : 0.0f;
      const float inter = ih * iw;
      const float iou = inter / (ai + aj - inter);
      if (iou > thr) bits |= 1ull << jj;
    }
  }
  mask[(size_t)i * nblk + cb] = bits;
}

/* The greedy walk, one 64-candidate chunk (one word of the removed set) at a time; one block,
 * dynamic shared memory: nblk words of the removed set.
 *  A. warp 0 resolves chunk c: from removed[c] (what earlier chunks' selections removed) it
 *     jumps from one candidate not removed to the next (ffs), each selected one ORing its own
 *     row's word for this chunk (bits of the later candidates in the chunk) into the running
 *     word, until max_out; writes the selections in order.
 *  B. the whole block ORs the selected rows' words for the later chunks into removed (pairs of
 *     (selected row, later word) spread over the threads: independent loads, so the L2
 *     latency is paid about once per chunk instead of once per selection).
 * The same decisions in the same order as the one-candidate-at-a-time loop of kernels/cpu/nms.c,
 * with 2 barriers per chunk instead of 2 per selection. One block per image (blockIdx.x: its
 * mask, order, selections at blockIdx.x * max_out and count), so a batch's scans run side by side. */
constexpr int NMS_SCAN_THREADS = 256;

__global__ void __launch_bounds__(NMS_SCAN_THREADS)
    nms_scan_kernel(const unsigned long long *__restrict__ mask, const int *__restrict__ order, int n, int nblk,
                    int max_out, int sel_stride, int *__restrict__ sel_out, int *__restrict__ count_out) {
  extern __shared__ unsigned long long removed[];
  mask += (size_t)blockIdx.x * n * nblk;
  order += (size_t)blockIdx.x * n;
  sel_out += (size_t)blockIdx.x * sel_stride;
  count_out += blockIdx.x;
  __shared__ int s_rows[64]; /* chunk positions selected in this chunk, in order */
  __shared__ int s_nk, s_count;
  const int t = threadIdx.x, lane = t & 31;
  for (int w = t; w < nblk; w += blockDim.x) removed[w] = 0ull;
  if (t == 0) s_count = 0;
  __syncthreads();
  for (int c = 0; c < nblk; c++) {
    const int cnt = s_count; /* uniform; written only after the first barrier below */
    if (cnt >= max_out) break;
    const int base = c * 64;
    if (t < 32) {
      const int len = n - base < 64 ? n - base : 64;
      const unsigned long long d0 = lane < len ? mask[(size_t)(base + lane) * nblk + c] : 0ull;
      const unsigned long long d1 = lane + 32 < len ? mask[(size_t)(base + lane + 32) * nblk + c] : 0ull;
      const unsigned long long valid = len == 64 ? ~0ull : (1ull << len) - 1ull;
      unsigned long long rem = removed[c];
      unsigned long long avail = ~rem & valid;
      int k = 0;
      while (avail && cnt + k < max_out) { /* warp-uniform: every lane holds the same words */
        const int j = __ffsll((long long)avail) - 1;
        const unsigned long long dj = __shfl_sync(0xffffffffu, j < 32 ? d0 : d1, j & 31);
        if (lane == 0) s_rows[k] = j;
        k++;
        rem |= dj;
        avail = ~rem & valid & ~((2ull << j) - 1ull); /* past j (j = 63: 2 << 63 wraps to 0: none) */
      }
      __syncwarp();
      for (int q = lane; q < k; q += 32) sel_out[cnt + q] = order[base + s_rows[q]];
      if (lane == 0) s_nk = k;
    }
    __syncthreads();
    const int nk = s_nk, w0 = c + 1, nw = nblk - w0;
    if (nk && nw > 0 && cnt + nk < max_out)
      for (int p = t; p < nk * nw; p += blockDim.x) {
        const int q = p / nw, w = w0 + p % nw;
        const unsigned long long bits = mask[(size_t)(base + s_rows[q]) * nblk + w];
        if (bits) atomicOr(&removed[w], bits);
      }
    if (t == 0) s_count = cnt + nk;
    __syncthreads();
  }
  if (t == 0) *count_out = s_count;
}

/* Queues the NMS of nimg images (n candidates each: boxes [nimg][n][4], scores [nimg][n]); image
 * b's selections (indices within the image) go to sel_out + b*max_out, its count to count_dev[b].
 * count_dev may lie in the scratch past the NMS's own part (cx_cuda_nms does that): `extra`
 * bytes are reserved there for it. */
int nms_launch(const float *boxes, const float *scores, int nimg, int n, int max_out, float iou_threshold, int *sel_out,
               int *count_dev, size_t extra, unsigned char **extra_out) {
  if (n > NMS_MAX_N)
    return CX_CUDA_FAIL("nms: %d candidates exceed the CUDA kernel's limit of %d (the mask needs n*n/8 bytes)", n,
                        NMS_MAX_N);
  if (nimg > 65535) return CX_CUDA_FAIL("nms: %d images in one launch (at most 65535)", nimg);
  const int nblk = (n + 63) / 64;
  const size_t nn = (size_t)nimg * n;
  const size_t sort_bytes = cx_align256(cx_cuda_sort_seg_ws(nimg, n));
  const size_t order_bytes = cx_align256(nn * sizeof(int));
  const size_t sb_bytes = cx_align256(nn * sizeof(float4));
  const size_t area_bytes = cx_align256(nn * sizeof(float));
  const size_t mask_bytes = cx_align256(nn * (size_t)nblk * sizeof(unsigned long long)); /* per image n x nblk */
  unsigned char *p =
      (unsigned char *)cx_cuda_scratch(sort_bytes + order_bytes + sb_bytes + area_bytes + mask_bytes + extra);
  if (!p) return -1;
  void *sort_ws = p;
  p += sort_bytes;
  int *order = (int *)p;
  p += order_bytes;
  float4 *sb = (float4 *)p;
  p += sb_bytes;
  float *area = (float *)p;
  p += area_bytes;
  unsigned long long *mask = (unsigned long long *)p;
  p += mask_bytes;
  if (extra_out) {
    *extra_out = p;
    count_dev = (int *)p;
  }

  const cudaStream_t st = cx_cuda_stream();
  if (cx_cuda_sort_desc_stable_seg(scores, nimg, n, n, order, sort_ws)) return -1;
  nms_gather_kernel<<<cx_blocks(nn, 256), 256, 0, st>>>(boxes, order, nimg, n, sb, area);
  CX_CUDA_LAUNCH_CHECK();
  nms_mask_kernel<<<dim3((unsigned)nblk, (unsigned)nblk, (unsigned)nimg), 64, 0, st>>>(sb, area, n, nblk, iou_threshold,
                                                                                        mask);
  CX_CUDA_LAUNCH_CHECK();
  const int lim = max_out < n ? max_out : n;
  nms_scan_kernel<<<(unsigned)nimg, NMS_SCAN_THREADS, (size_t)nblk * sizeof(unsigned long long), st>>>(
      mask, order, n, nblk, lim, max_out, sel_out, count_dev);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

} /* namespace */

int cx_cuda_nms_dev(const float *boxes, const float *scores, int n, int max_out, float iou_threshold, int *sel_out,
                    int *count_dev) {
  return cx_cuda_nms_batched_dev(boxes, scores, 1, n, max_out, iou_threshold, sel_out, count_dev);
}

int cx_cuda_nms_batched_dev(const float *boxes, const float *scores, int nimg, int n, int max_out, float iou_threshold,
                            int *sel_out, int *count_dev) {
  if (nimg <= 0) return 0;
  if (n <= 0 || max_out <= 0) {
    CX_CUDA_CHECK(cudaMemsetAsync(count_dev, 0, (size_t)nimg * sizeof(int), cx_cuda_stream()));
    return 0;
  }
  return nms_launch(boxes, scores, nimg, n, max_out, iou_threshold, sel_out, count_dev, 0, NULL);
}

int cx_cuda_nms(const float *boxes, const float *scores, int n, int max_out, float iou_threshold, int *sel_out) {
  if (n <= 0 || max_out <= 0) return 0;
  unsigned char *count_at = NULL;
  if (nms_launch(boxes, scores, 1, n, max_out, iou_threshold, sel_out, NULL, 256, &count_at)) return -1;
  int count = 0;
  CX_CUDA_CHECK(cudaMemcpyAsync(&count, count_at, sizeof(int), cudaMemcpyDeviceToHost, cx_cuda_stream()));
  CX_CUDA_CHECK(cudaStreamSynchronize(cx_cuda_stream()));
  return count;
}
