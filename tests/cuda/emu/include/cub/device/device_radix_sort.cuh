/* cub/device/device_radix_sort.cuh of the CUDA emulator: DeviceRadixSort as a stable sort of
 * the key bits [begin_bit, end_bit), queued on the stream like a kernel. */
#ifndef CXEMU_CUB_RADIX_SORT_CUH
#define CXEMU_CUB_RADIX_SORT_CUH
#include <vector>

#include "../../cuda_runtime.h"

namespace cub {
struct DeviceRadixSort {
  template <class K, class V>
  static cudaError_t SortPairs(void *temp, size_t &temp_bytes, const K *keys_in, K *keys_out, const V *vals_in,
                               V *vals_out, int n, int begin_bit = 0, int end_bit = (int)sizeof(K) * 8,
                               cudaStream_t stream = 0) {
    return sort<K, V>(temp, temp_bytes, keys_in, keys_out, vals_in, vals_out, n, begin_bit, end_bit, stream, false);
  }
  template <class K, class V>
  static cudaError_t SortPairsDescending(void *temp, size_t &temp_bytes, const K *keys_in, K *keys_out,
                                         const V *vals_in, V *vals_out, int n, int begin_bit = 0,
                                         int end_bit = (int)sizeof(K) * 8, cudaStream_t stream = 0) {
    return sort<K, V>(temp, temp_bytes, keys_in, keys_out, vals_in, vals_out, n, begin_bit, end_bit, stream, true);
  }

 private:
  template <class K, class V>
  static cudaError_t sort(void *temp, size_t &temp_bytes, const K *keys_in, K *keys_out, const V *vals_in,
                          V *vals_out, int n, int begin_bit, int end_bit, cudaStream_t stream, bool desc) {
    static_assert(std::is_unsigned<K>::value, "the emulator sorts unsigned keys only");
    const size_t need = 256 + (size_t)(n > 0 ? n : 1) * (sizeof(K) + sizeof(V));
    if (!temp) {
      temp_bytes = need;
      return cudaSuccess;
    }
    if (temp_bytes < need || n < 0 || begin_bit < 0 || end_bit > (int)sizeof(K) * 8 || begin_bit >= end_bit)
      return cudaErrorInvalidValue;
    char why[256];
    const void *ptrs[5] = {temp, keys_in, keys_out, vals_in, vals_out};
    for (int i = 0; i < 5; i++)
      if (cxemu::check_device_pointer(ptrs[i], why, sizeof why)) {
        cxemu::launch_arg_error("cub::DeviceRadixSort", i, why);
        return cudaErrorInvalidDevicePointer;
      }
    cxemu::submit_kernel("cub::DeviceRadixSort", nullptr, cxemu::launch_cfg(dim3(1), dim3(1), 0, stream),
                         [=]() {
                           const int bits = end_bit - begin_bit;
                           const K msk = bits >= (int)sizeof(K) * 8 ? (K)~(K)0 : (K)(((K)1 << bits) - 1);
                           std::vector<std::pair<K, V>> v((size_t)n);
                           for (int i = 0; i < n; i++) v[(size_t)i] = {keys_in[i], vals_in[i]};
                           std::stable_sort(v.begin(), v.end(), [&](const std::pair<K, V> &a, const std::pair<K, V> &b) {
                             const K ka = (K)((a.first >> begin_bit) & msk), kb = (K)((b.first >> begin_bit) & msk);
                             return desc ? ka > kb : ka < kb;
                           });
                           memset(temp, 0xA5, need); /* the real sort scribbles over its workspace */
                           for (int i = 0; i < n; i++) keys_out[i] = v[(size_t)i].first, vals_out[i] = v[(size_t)i].second;
                         });
    return cudaSuccess;
  }
};
} /* namespace cub */
#endif
