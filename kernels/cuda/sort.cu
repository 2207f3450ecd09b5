/* sort.cu — the stable descending score order shared by top-k and NMS (spec §16.6):
 * scores are mapped to the 32-bit keys of kernels/cpu/sortkeys.h (ascending key = descending
 * score, -0 == +0, NaN last) and sorted with their indices by CUB's LSD radix sort, which
 * is stable, so equal scores keep ascending index order — the same total order as the CPU's
 * (key, index) partial quicksort, hence identical indices.
 * Layout: scores [n] float32 -> idx_out [k] int (first k of the order), all device memory.
 * Neither synchronises nor allocates (CUB gets its temporary storage from the caller's ws),
 * so it may be captured into a CUDA graph.
 * Validated through topk/nms by `ctxdiff validate --device cuda` (exact index equality,
 * with many tied scores in the inputs). */
#include <cub/device/device_radix_sort.cuh>

#include "cuda_common.cuh"

namespace {

__global__ void sort_keys_kernel(const float *__restrict__ scores, int n, uint32_t *__restrict__ keys,
                                 int *__restrict__ idx) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    keys[i] = cx_desc_key_dev(scores[i]);
    idx[i] = i;
  }
}

size_t cub_temp_bytes(int n) {
  size_t bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, bytes, (const uint32_t *)nullptr, (uint32_t *)nullptr,
                                  (const int *)nullptr, (int *)nullptr, n, 0, 32);
  return bytes;
}

} /* namespace */

size_t cx_cuda_sort_ws(int n) {
  const size_t nn = n > 0 ? (size_t)n : 1;
  return 4 * cx_align256(nn * 4) + cx_align256(cub_temp_bytes(n > 0 ? n : 1));
}

int cx_cuda_sort_desc_stable(const float *scores, int n, int k, int *idx_out, void *ws) {
  if (n <= 0 || k <= 0) return 0;
  if (k > n) k = n;
  const cudaStream_t st = cx_cuda_stream();
  unsigned char *p = (unsigned char *)ws;
  const size_t piece = cx_align256((size_t)n * 4);
  uint32_t *keys_in = (uint32_t *)p;
  uint32_t *keys_out = (uint32_t *)(p + piece);
  int *idx_in = (int *)(p + 2 * piece);
  int *idx_sorted = (int *)(p + 3 * piece);
  void *temp = p + 4 * piece;
  size_t temp_bytes = cub_temp_bytes(n);
  sort_keys_kernel<<<cx_blocks((size_t)n, 256), 256, 0, st>>>(scores, n, keys_in, idx_in);
  CX_CUDA_LAUNCH_CHECK();
  CX_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, idx_in, idx_sorted, n, 0, 32,
                                                st));
  CX_CUDA_CHECK(cudaMemcpyAsync(idx_out, idx_sorted, (size_t)k * sizeof(int), cudaMemcpyDeviceToDevice, st));
  return 0;
}
