/* cxemu_ptx.h of the CUDA emulator: the warp-level PTX instructions kernels/cuda/mma_ptx.cuh
 * wraps, with the fragment layouts of the PTX ISA (sections "ldmatrix" and "Matrix Fragments
 * for mma.m16n8k16 with floating point type"), written from the ISA's tables, not from the
 * kernels:
 *   ldmatrix .x4: lane l gives the address of row l%8 of matrix l/8; register j of lane l
 *     receives row l/4, columns 2(l%4) and 2(l%4)+1 of matrix j (.trans: of its transpose).
 *   mma m16n8k16 .row.col (groupID g = l/4, threadID_in_group t = l%4):
 *     A 16x16: a[0] = (g, 2t..2t+1), a[1] = (g+8, ..), a[2] = (g, 2t+8..), a[3] = (g+8, 2t+8..)
 *     B 16x8:  b[0] = (k 2t..2t+1, n g), b[1] = (k 2t+8.., n g)
 *     C/D 16x8: d[0..1] = (g, 2t..2t+1), d[2..3] = (g+8, 2t..2t+1)
 * Every lane publishes its operands, every lane computes its own outputs (fp32, products exact
 * for fp16/bf16 inputs, ascending k as the emulator's WMMA). The instructions are .sync.aligned:
 * the full-warp barrier makes a missing lane a deadlock the emulator reports. */
#ifndef CXEMU_PTX_H
#define CXEMU_PTX_H
#include <string.h>

#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"

namespace cxemu {
template <bool TRANS>
inline void ldsm_x4(unsigned (&r)[4], const void *p) {
  if ((uintptr_t)p % 16u) device_fail("ldmatrix: row address %p is not 16-byte aligned", p);
  unsigned long long *s = warp_slots();
  const int lane = lane_id();
  s[lane] = (unsigned long long)(uintptr_t)p;
  barrier_warp(0xffffffffu);
  for (int j = 0; j < 4; j++) {
    unsigned short h[2];
    for (int e = 0; e < 2; e++) {
      /* element (row, col) of matrix j: row from the address its lane gave, col within it */
      const int row = TRANS ? 2 * (lane % 4) + e : lane / 4, col = TRANS ? lane / 4 : 2 * (lane % 4) + e;
      const unsigned short *rp = reinterpret_cast<const unsigned short *>((uintptr_t)s[8 * j + row]);
      memcpy(&h[e], rp + col, 2);
    }
    r[j] = (unsigned)h[0] | ((unsigned)h[1] << 16);
  }
  barrier_warp(0xffffffffu);
}

template <class T>
inline float half_bits_to_f(unsigned short u) {
  T v;
  memcpy(&v, &u, 2);
  if constexpr (std::is_same<T, __half>::value) return __half2float(v);
  else return __bfloat162float(v);
}

/* d (16x8 fp32 fragment) += a (16x16) * b (16x8) */
template <class T>
inline void mma_16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  unsigned long long *w = warp_wide_slots(); /* lane l: words [l*WIDE_SLOTS ..] */
  const int lane = lane_id();
  unsigned long long *mine = w + lane * WIDE_SLOTS;
  for (int i = 0; i < 4; i++) mine[i] = a[i];
  for (int i = 0; i < 2; i++) mine[4 + i] = b[i];
  for (int i = 0; i < 4; i++) {
    unsigned u;
    memcpy(&u, &d[i], 4);
    mine[6 + i] = u;
  }
  barrier_warp(0xffffffffu);
  auto half_of = [](unsigned long long word, int e) { return (unsigned short)(e ? (word >> 16) & 0xffffu : word & 0xffffu); };
  auto A = [&](int r, int k) { /* lane (r%8)*4 + (k%8)/2, register r/8 + 2(k/8), half k%2 */
    const unsigned long long word = w[((r % 8) * 4 + (k % 8) / 2) * WIDE_SLOTS + (r / 8) + 2 * (k / 8)];
    return half_bits_to_f<T>(half_of(word, k % 2));
  };
  auto B = [&](int k, int n) { /* lane n*4 + (k%8)/2, register k/8, half k%2 */
    const unsigned long long word = w[(n * 4 + (k % 8) / 2) * WIDE_SLOTS + 4 + k / 8];
    return half_bits_to_f<T>(half_of(word, k % 2));
  };
  auto C = [&](int r, int c) { /* lane (r%8)*4 + c/2, register 2(r/8) + c%2 */
    const unsigned u = (unsigned)w[((r % 8) * 4 + c / 2) * WIDE_SLOTS + 6 + 2 * (r / 8) + c % 2];
    float f;
    memcpy(&f, &u, 4);
    return f;
  };
  float out[4];
  for (int i = 0; i < 4; i++) {
    const int r = lane / 4 + 8 * (i / 2), c = 2 * (lane % 4) + i % 2;
    float acc = C(r, c);
    for (int k = 0; k < 16; k++) acc += A(r, k) * B(k, c);
    out[i] = acc;
  }
  barrier_warp(0xffffffffu);
  for (int i = 0; i < 4; i++) d[i] = out[i];
}

/* wgmma (sm_90a), emu.cpp: the operands are read through the matrix descriptors from this
 * launch's dynamic shared memory (a descriptor's address is smem_addr's offset into it), with
 * the PTX ISA's canonical 128-byte-swizzle layouts; each thread computes its own accumulator
 * registers (fragment layout of "Matrix Fragments for wgmma.m64nNk16") when it waits for the
 * group, not when it issues, so operands overwritten before the wait and accumulators read
 * before it are both wrong, as they may be on the GPU. */
unsigned smem_addr(const void *p);
void wgmma_issue(float *d, int n, unsigned long long da, unsigned long long db, int ta, int tb, int bf16);
void wgmma_commit();
void wgmma_wait(int prior);
} /* namespace cxemu */
#endif
