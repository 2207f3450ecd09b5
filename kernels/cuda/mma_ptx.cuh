/* mma_ptx.cuh — warp-level tensor-core primitives as PTX, for the tiles WMMA serves badly:
 * nvcc 13.0 emits WMMA's bf16 fragment loads in the generic address space (no ldmatrix), so
 * the bf16 tensor-core kernels load fragments with ldmatrix and multiply with mma.sync here.
 *   ldsm_x4<TRANS>(r, p): ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16; lane l passes the
 *     address of row l%8 of 8x8 matrix l/8 (16-byte aligned, shared memory); r[j] holds matrix
 *     j's row l/4, columns 2(l%4)..+1 (of its transpose with TRANS).
 *   mma_16816<T>(d, a, b): d += a * b, mma.sync.aligned.m16n8k16.row.col.f32.T.T.f32, T __half
 *     or __nv_bfloat16; fragment layouts of the PTX ISA (see the emulator's cxemu_ptx.h).
 * All 32 lanes must call them together. In the CPU emulator (CTXDIFF_CUDA_EMU) the same names
 * come from tests/cuda/emu/include/cxemu_ptx.h. */
#ifndef CX_MMA_PTX_CUH
#define CX_MMA_PTX_CUH
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#ifdef CTXDIFF_CUDA_EMU
#include <cxemu_ptx.h>
template <bool TRANS>
inline void ldsm_x4(unsigned (&r)[4], const void *p) {
  cxemu::ldsm_x4<TRANS>(r, p);
}
template <typename T>
inline void mma_16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  cxemu::mma_16816<T>(d, a, b);
}
#else
template <bool TRANS>
__device__ __forceinline__ void ldsm_x4(unsigned (&r)[4], const void *p) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(p);
  /* "memory": the shared stores before the barrier that precedes this must not move past it */
  if constexpr (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}

template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  if constexpr (std::is_same<T, __half>::value)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif
#endif
