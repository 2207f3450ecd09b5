/* cuda_fp16.h of the CUDA emulator: __half as GCC's _Float16 (IEEE binary16; conversions
 * from float round to nearest even, as __float2half_rn). */
#ifndef CXEMU_CUDA_FP16_H
#define CXEMU_CUDA_FP16_H
#include "cuda_runtime.h"

struct __half {
  _Float16 v;
  __half() = default;
  explicit __half(float f) : v((_Float16)f) {}
  explicit operator float() const { return (float)v; }
};
static_assert(sizeof(__half) == 2, "__half must be 2 bytes");
static inline __half __float2half_rn(float f) { return __half(f); }
static inline __half __float2half(float f) { return __half(f); }
static inline float __half2float(__half h) { return (float)h.v; }
#endif
