/* sortkeys.h — internal helpers shared by topk.c and nms.c (not part of the public API):
 * a descending-score order with ties broken by ascending index (tf.nn.top_k, stable NMS
 * order, spec §16.6), computed as a partial quicksort on an index array. Scores are mapped
 * to 32-bit keys whose ascending order is the descending score order; -0.0 and +0.0 are
 * equal, NaN sorts last (as NumPy's argsort(-x, kind="stable") does). With the index as
 * second key the order is total, so the result does not depend on the algorithm. */
#ifndef CX_SORTKEYS_H
#define CX_SORTKEYS_H

#include <stdint.h>
#include <string.h>

static inline uint32_t cx_desc_key(float v) {
  if (v != v) return 0xFFFFFFFFu; /* NaN last */
  if (v == 0.0f) v = 0.0f;        /* -0 == +0 */
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* ascending in v */
  return ~u;                                      /* ascending in -v */
}

/* a before b? */
static inline int cx_key_less(const uint32_t *key, int a, int b) {
  return key[a] < key[b] || (key[a] == key[b] && a < b);
}

/* Reorders idx[0..n) so that its first k entries are the k smallest under cx_key_less,
 * sorted. Iterative partial quicksort with median-of-three pivots; elements are distinct
 * under the total order, so there is no degenerate equal-key case. */
static inline void cx_partial_sort(int *idx, int n, int k, const uint32_t *key) {
  int lo = 0, hi = n - 1; /* inclusive range still to process */
  int stack[128];
  int sp = 0;
  if (k > n) k = n;
  for (;;) {
    while (hi - lo > 16 && lo < k) {
      const int mid = lo + (hi - lo) / 2;
      /* median of three into idx[mid] */
      if (cx_key_less(key, idx[mid], idx[lo])) { int t = idx[mid]; idx[mid] = idx[lo]; idx[lo] = t; }
      if (cx_key_less(key, idx[hi], idx[lo])) { int t = idx[hi]; idx[hi] = idx[lo]; idx[lo] = t; }
      if (cx_key_less(key, idx[hi], idx[mid])) { int t = idx[hi]; idx[hi] = idx[mid]; idx[mid] = t; }
      const int pv = idx[mid];
      int i = lo, j = hi;
      while (i <= j) {
        while (cx_key_less(key, idx[i], pv)) i++;
        while (cx_key_less(key, pv, idx[j])) j--;
        if (i <= j) {
          int t = idx[i]; idx[i] = idx[j]; idx[j] = t;
          i++;
          j--;
        }
      }
      /* [lo, j] < pivot-ish <= [i, hi]; elements between j and i equal the pivot */
      if (i < k && i < hi) {
        /* both halves may hold part of the first k: keep the larger on the stack and go on
         * with the smaller, so the stack depth stays below log2(n) <= 31 pairs */
        if (j - lo < hi - i) {
          stack[sp++] = i;
          stack[sp++] = hi;
          hi = j;
        } else {
          stack[sp++] = lo;
          stack[sp++] = j;
          lo = i;
        }
      } else {
        hi = j;
      }
    }
    /* insertion sort of a small range (or a range entirely past k: skip) */
    if (lo < k) {
      for (int a = lo + 1; a <= hi; a++) {
        const int v = idx[a];
        int b = a - 1;
        while (b >= lo && cx_key_less(key, v, idx[b])) {
          idx[b + 1] = idx[b];
          b--;
        }
        idx[b + 1] = v;
      }
    }
    if (sp == 0) break;
    hi = stack[--sp];
    lo = stack[--sp];
  }
}

#endif
