/* cuda_bf16.h of the CUDA emulator: __nv_bfloat16 as 16 bits with round-to-nearest-even
 * conversion from float (NaN stays a quiet NaN). */
#ifndef CXEMU_CUDA_BF16_H
#define CXEMU_CUDA_BF16_H
#include "cuda_runtime.h"

struct __nv_bfloat16 {
  uint16_t x;
};
static_assert(sizeof(__nv_bfloat16) == 2, "__nv_bfloat16 must be 2 bytes");
static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  __nv_bfloat16 r;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    r.x = (uint16_t)((u >> 16) | 0x40u);
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
    r.x = (uint16_t)(u >> 16);
  }
  return r;
}
static inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
static inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t u = (uint32_t)h.x << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
#endif
