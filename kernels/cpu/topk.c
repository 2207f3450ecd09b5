/* topk.c — tf.nn.top_k(sorted=True) (spec §8 step 3, §16.6): indices of the k largest
 * scores in descending order, equal scores in ascending index order (a stable descending
 * sort truncated to k). NaN ranks last, -0.0 equals +0.0.
 * Layout: scores [n] float32 -> idx_out [k]; ws holds 2*n ints (index array + sort keys).
 * Partial quicksort on a total order (key, index): expected O(n + k log k).
 * Validated by tests/kernels against tf_ops.top_k_stable (NumPy stable argsort), exact. */
#include "cpu_kernels.h"

#include "sortkeys.h"

int cx_topk_stable(const float *scores, int n, int k, int *idx_out, int *ws) {
  if (n <= 0 || k <= 0) return 0;
  if (k > n) k = n;
  int *idx = ws;
  uint32_t *key = (uint32_t *)(ws + n);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int i = 0; i < n; i++) {
    idx[i] = i;
    key[i] = cx_desc_key(scores[i]);
  }
  cx_partial_sort(idx, n, k, key);
  memcpy(idx_out, idx, (size_t)k * sizeof(int));
  return k;
}
