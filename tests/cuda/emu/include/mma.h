/* mma.h of the CUDA emulator: nvcuda::wmma with whole-tile fragments. Only lane 0 of a warp
 * loads, multiplies and stores (the other lanes' calls are checked and skipped), so a tile is
 * computed once per warp, as on the hardware; products are exact in fp32 for fp16/bf16
 * inputs, accumulation is fp32 in ascending k. Alignment rules of the hardware are checked:
 * pointers 32-byte aligned, ldm a multiple of 16 bytes. */
#ifndef CXEMU_MMA_H
#define CXEMU_MMA_H
#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
template <class Use, int M, int N, int K>
struct dims;
template <int M, int N, int K>
struct dims<matrix_a, M, N, K> { static constexpr int R = M, C = K; };
template <int M, int N, int K>
struct dims<matrix_b, M, N, K> { static constexpr int R = K, C = N; };
template <int M, int N, int K>
struct dims<accumulator, M, N, K> { static constexpr int R = M, C = N; };
static inline float to_f(float v) { return v; }
static inline float to_f(__half v) { return __half2float(v); }
static inline float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
static inline T from_f(float v);
template <>
inline float from_f<float>(float v) { return v; }
template <>
inline __half from_f<__half>(float v) { return __float2half_rn(v); }
template <>
inline __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <class T>
static inline void check(const void *p, unsigned ldm, const char *what) {
  if ((uintptr_t)p % 32u) cxemu::device_fail("wmma::%s: pointer %p is not 32-byte aligned", what, p);
  if ((ldm * sizeof(T)) % 16u) cxemu::device_fail("wmma::%s: ldm %u (elements) is not a multiple of 16 bytes", what, ldm);
}
} /* namespace detail */

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int R = detail::dims<Use, M, N, K>::R, C = detail::dims<Use, M, N, K>::C;
  T m[R * C];
};

template <class Use, int M, int N, int K, class T, class Layout>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout> &f, float v) {
  for (int i = 0; i < f.R * f.C; i++) f.m[i] = detail::from_f<T>(v);
}

template <class Use, int M, int N, int K, class T, class Layout>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout> &f, const T *p, unsigned ldm) {
  static_assert(!std::is_same<Layout, void>::value, "matrix_a/matrix_b fragments need a layout");
  detail::check<T>(p, ldm, "load_matrix_sync");
  if (!cxemu::warp_leader()) return;
  for (int r = 0; r < f.R; r++)
    for (int c = 0; c < f.C; c++)
      f.m[r * f.C + c] = std::is_same<Layout, row_major>::value ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
}
template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T> &f, const T *p, unsigned ldm, layout_t l) {
  detail::check<T>(p, ldm, "load_matrix_sync");
  if (!cxemu::warp_leader()) return;
  for (int r = 0; r < f.R; r++)
    for (int c = 0; c < f.C; c++) f.m[r * f.C + c] = l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
}
template <int M, int N, int K, class T>
inline void store_matrix_sync(T *p, const fragment<accumulator, M, N, K, T> &f, unsigned ldm, layout_t l) {
  detail::check<T>(p, ldm, "store_matrix_sync");
  if (!cxemu::warp_leader()) return;
  for (int r = 0; r < f.R; r++)
    for (int c = 0; c < f.C; c++) {
      if (l == mem_row_major)
        p[(size_t)r * ldm + c] = f.m[r * f.C + c];
      else
        p[(size_t)c * ldm + r] = f.m[r * f.C + c];
    }
}
template <int M, int N, int K, class TA, class LA, class LB, class TC>
inline void mma_sync(fragment<accumulator, M, N, K, TC> &d, const fragment<matrix_a, M, N, K, TA, LA> &a,
                     const fragment<matrix_b, M, N, K, TA, LB> &b, const fragment<accumulator, M, N, K, TC> &c) {
  if (!cxemu::warp_leader()) return;
  TC out[M * N];
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float acc = detail::to_f(c.m[i * N + j]);
      for (int k = 0; k < K; k++) acc += detail::to_f(a.m[i * K + k]) * detail::to_f(b.m[k * N + j]);
      out[i * N + j] = detail::from_f<TC>(acc);
    }
  memcpy(d.m, out, sizeof out);
}
} /* namespace wmma */
} /* namespace nvcuda */
#endif
