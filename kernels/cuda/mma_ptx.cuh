/* mma_ptx.cuh — warp-level tensor-core primitives as PTX, for the tiles WMMA serves badly:
 * nvcc 13.0 emits WMMA's bf16 fragment loads in the generic address space (no ldmatrix), so
 * the bf16 tensor-core kernels load fragments with ldmatrix and multiply with mma.sync here.
 *   ldsm_x4<TRANS>(r, p): ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16; lane l passes the
 *     address of row l%8 of 8x8 matrix l/8 (16-byte aligned, shared memory); r[j] holds matrix
 *     j's row l/4, columns 2(l%4)..+1 (of its transpose with TRANS).
 *   mma_16816<T>(d, a, b): d += a * b, mma.sync.aligned.m16n8k16.row.col.f32.T.T.f32, T __half
 *     or __nv_bfloat16; fragment layouts of the PTX ISA (see the emulator's cxemu_ptx.h).
 * All 32 lanes must call them together.
 * Warpgroup level (sm_90a; conv.cu's v5 kernel), all 128 threads of a warpgroup together:
 *   wg_mma_n128<T>(d, da, db): d += A * B, wgmma.mma_async m64n128k16 f32 += T x T, A (64 x 16)
 *     K-major and B (16 x 128) MN-major (imm-trans-b 1) in shared memory, described by the
 *     matrix descriptors da, db (wg_desc); d holds the ISA's m64nNk16 accumulator fragment.
 *     Asynchronous: wg_fence() before (accumulator registers), wg_commit() after, and
 *     wg_wait<0>() before the accumulators are read or the operands' shared memory is rewritten.
 *   fence_proxy_async(): shared-memory writes of this thread (cp.async included, once waited
 *     for) become visible to the wgmma operand reads (the async proxy).
 * In the CPU emulator (CTXDIFF_CUDA_EMU) the same names come from tests/cuda/emu/include/cxemu_ptx.h. */
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
inline unsigned smem_u32(const void *p) { return cxemu::smem_addr(p); }
template <typename T>
inline void wg_mma_n128(float (&d)[64], unsigned long long da, unsigned long long db) {
  cxemu::wgmma_issue(d, 128, da, db, 0, 1, std::is_same<T, __nv_bfloat16>::value);
}
inline void wg_fence() {}
inline void wg_commit() { cxemu::wgmma_commit(); }
template <int N>
inline void wg_wait() {
  cxemu::wgmma_wait(N);
}
inline void fence_proxy_async() {}
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

__device__ __forceinline__ unsigned smem_u32(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }

/* m64n128k16, f32 accumulators d[0..63], TY f16 or bf16; scale-d on (accumulate), no negation,
 * A K-major (imm-trans-a 0), B N-major (imm-trans-b 1) */
#define CX_WGMMA_N128(TY)                                                                                                \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                              \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {"                                             \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                                  \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "                        \
               "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "                        \
               "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "                       \
               "%64, %65, p, 1, 1, 0, 1;\n}\n"                                                                           \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),         \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),   \
                 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
                 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
                 "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
                 "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
                 "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
                 "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])  \
               : "l"(da), "l"(db), "r"(1))

/* The wgmma wrappers exist in every device pass; their instructions only in the sm_90a one (the
 * sm_80 / compute_90 passes trap: conv.cu never launches the v5 kernel there). */
template <typename T>
__device__ __forceinline__ void wg_mma_n128(float (&d)[64], unsigned long long da, unsigned long long db) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (std::is_same<T, __half>::value) CX_WGMMA_N128("f16");
  else CX_WGMMA_N128("bf16");
#else
  (void)d, (void)da, (void)db;
  __trap();
#endif
}
__device__ __forceinline__ void wg_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wg_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wg_wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
#endif
#endif
