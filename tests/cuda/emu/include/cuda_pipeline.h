/* cuda_pipeline.h of the CUDA emulator: the pipeline primitives (asynchronous global-to-shared
 * copies, cp.async on the GPU) with their ordering made visible. Each thread's copies are held
 * back until that thread waits for them (__pipeline_wait_prior), so a read of shared memory
 * before the wait, or by another thread before a barrier that follows the wait, sees the
 * stale (poisoned) bytes instead of the copy, as it may on a GPU. */
#ifndef CXEMU_CUDA_PIPELINE_H
#define CXEMU_CUDA_PIPELINE_H
#include "cuda_runtime.h"

namespace cxemu {
void pipe_copy(void *dst, const void *src, size_t size, size_t zfill); /* emu.cpp */
void pipe_commit();
void pipe_wait_prior(size_t prior);
} /* namespace cxemu */

/* copies size - zfill bytes from src and zero-fills the rest; size 4, 8 or 16, both pointers
 * aligned to it */
static inline void __pipeline_memcpy_async(void *dst, const void *src, size_t size, size_t zfill = 0) {
  cxemu::pipe_copy(dst, src, size, zfill);
}
static inline void __pipeline_commit() { cxemu::pipe_commit(); }
static inline void __pipeline_wait_prior(size_t prior) { cxemu::pipe_wait_prior(prior); }
#endif
