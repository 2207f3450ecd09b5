/* sort.cu — the stable descending score order shared by top-k and NMS (spec §16.6):
 * scores are mapped to the 32-bit keys of kernels/cpu/sortkeys.h (ascending key = descending
 * score, -0 == +0, NaN last) and sorted with their indices by CUB's LSD radix sort, which
 * is stable, so equal scores keep ascending index order — the same total order as the CPU's
 * (key, index) partial quicksort, hence identical indices.
 * Layout: scores [n] float32 -> idx_out [k] int (first k of the order), all device memory.
 * Segmented form (a batch's images in one sort): scores [nseg][n] -> idx_out [nseg][k], indices
 * within each segment; 64-bit keys (segment number above the score key), one stable sort.
 * Neither synchronises nor allocates (CUB gets its temporary storage from the caller's ws),
 * so it may be captured into a CUDA graph.
 * Validated through topk/nms by `ctxdiff validate --device cuda` (exact index equality,
 * with many tied scores in the inputs). */
#include <cub/device/device_radix_sort.cuh>

#include <limits.h>

#include "cuda_common.cuh"

namespace {

/* nseg segments of n: key = segment << 32 | score key (K 64-bit; a single segment fits 32-bit
 * keys), value = index within the segment, so one stable sort orders every segment on its own
 * (segments in ascending order) */
template <typename K>
__global__ void seg_keys_kernel(const float *__restrict__ scores, int nseg, int n, K *__restrict__ keys,
                                int *__restrict__ idx) {
  const long long total = (long long)nseg * n;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long b = i / n;
    keys[i] = (K)(((unsigned long long)b << 32) | cx_desc_key_dev(scores[i]));
    idx[i] = (int)(i - b * n);
  }
}

/* the first k of each sorted segment */
__global__ void seg_head_kernel(const int *__restrict__ sorted, int nseg, int n, int k, int *__restrict__ out) {
  const long long total = (long long)nseg * k;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long b = i / k;
    out[i] = sorted[b * n + (i - b * k)];
  }
}

/* key bits: 32 for the score, plus enough for the segment number */
int seg_end_bit(int nseg) {
  int bits = 0;
  while ((1ll << bits) < nseg) bits++;
  return 32 + bits;
}

/* workspace: keys in/out, indices in/out, CUB's temporary storage (256-byte aligned pieces) */
template <typename K>
struct sort_plan {
  long long nn;
  int end_bit;
  size_t kpiece, ipiece, temp;
  sort_plan(int nseg, int n) : nn((long long)nseg * n), end_bit(seg_end_bit(nseg)) {
    kpiece = cx_align256((size_t)nn * sizeof(K));
    ipiece = cx_align256((size_t)nn * 4);
    temp = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, temp, (const K *)nullptr, (K *)nullptr, (const int *)nullptr,
                                    (int *)nullptr, (int)nn, 0, end_bit);
  }
  size_t bytes() const { return 2 * kpiece + 2 * ipiece + cx_align256(temp); }
};

template <typename K>
int sort_run(const float *scores, int nseg, int n, int k, int *idx_out, void *ws) {
  const sort_plan<K> pl(nseg, n);
  const cudaStream_t st = cx_cuda_stream();
  unsigned char *p = (unsigned char *)ws;
  K *keys_in = (K *)p, *keys_out = (K *)(p + pl.kpiece);
  int *idx_in = (int *)(p + 2 * pl.kpiece), *idx_sorted = (int *)(p + 2 * pl.kpiece + pl.ipiece);
  size_t temp_bytes = pl.temp;
  seg_keys_kernel<K><<<cx_blocks((size_t)pl.nn, 256), 256, 0, st>>>(scores, nseg, n, keys_in, idx_in);
  CX_CUDA_LAUNCH_CHECK();
  CX_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(p + 2 * pl.kpiece + 2 * pl.ipiece, temp_bytes, keys_in, keys_out, idx_in,
                                                idx_sorted, (int)pl.nn, 0, pl.end_bit, st));
  seg_head_kernel<<<cx_blocks((size_t)nseg * k, 256), 256, 0, st>>>(idx_sorted, nseg, n, k, idx_out);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}

} /* namespace */

size_t cx_cuda_sort_ws(int n) { return cx_cuda_sort_seg_ws(1, n); }

int cx_cuda_sort_desc_stable(const float *scores, int n, int k, int *idx_out, void *ws) {
  return cx_cuda_sort_desc_stable_seg(scores, 1, n, k, idx_out, ws);
}

/* one segment: 32-bit keys (four radix passes); more: 64-bit (five at batch 8) */
size_t cx_cuda_sort_seg_ws(int nseg, int n) {
  nseg = nseg > 0 ? nseg : 1;
  n = n > 0 ? n : 1;
  return nseg > 1 ? sort_plan<unsigned long long>(nseg, n).bytes() : sort_plan<uint32_t>(1, n).bytes();
}

int cx_cuda_sort_desc_stable_seg(const float *scores, int nseg, int n, int k, int *idx_out, void *ws) {
  if (nseg <= 0 || n <= 0 || k <= 0) return 0;
  if (k > n) k = n;
  if ((long long)nseg * n > INT_MAX) return CX_CUDA_FAIL("sort: %d segments of %d scores exceed CUB's int count", nseg, n);
  return nseg > 1 ? sort_run<unsigned long long>(scores, nseg, n, k, idx_out, ws)
                  : sort_run<uint32_t>(scores, 1, n, k, idx_out, ws);
}
