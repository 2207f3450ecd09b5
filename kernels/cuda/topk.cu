/* topk.cu — tf.nn.top_k(sorted=True) (spec §8 step 3, §16.6): indices of the k largest
 * scores, descending, ties in ascending index order, NaN last. A full stable radix sort of
 * the n keys (sort.cu) and the first k indices; for n = 261888 that is a few passes over
 * 2 MB, cheap next to the network.
 * Layout: scores [n] float32 (device) -> idx_out [k] int (device). The `ws` argument of the
 * table entry is unused; the sort workspace comes from the backend scratch arena.
 * Returns k used, min(k, n) (known on the host, so no synchronisation: the only wait is the
 * scratch arena growing on the first call for a larger n), or -1 with cx_cuda_last_error()
 * set. Later work on the same stream may reuse the scratch: stream order keeps that safe.
 * cx_cuda_topk_stable_seg: the same for nseg images' scores [nseg][n] in one sort, idx_out
 * [nseg][k] (indices within each image): the proposal layer of a whole batch.
 * Validated by `ctxdiff validate --device cuda` against cx_topk_stable (exact indices). */
#include "cuda_common.cuh"

int cx_cuda_topk_stable(const float *scores, int n, int k, int *idx_out) {
  if (n <= 0 || k <= 0) return 0;
  if (k > n) k = n;
  void *ws = cx_cuda_scratch(cx_cuda_sort_ws(n));
  if (!ws) return -1;
  if (cx_cuda_sort_desc_stable(scores, n, k, idx_out, ws)) return -1;
  return k;
}

int cx_cuda_topk_stable_seg(const float *scores, int nseg, int n, int k, int *idx_out) {
  if (nseg <= 0 || n <= 0 || k <= 0) return 0;
  if (k > n) k = n;
  void *ws = cx_cuda_scratch(cx_cuda_sort_seg_ws(nseg, n));
  if (!ws) return -1;
  if (cx_cuda_sort_desc_stable_seg(scores, nseg, n, k, idx_out, ws)) return -1;
  return k;
}
