/* deconv.c — Keras Conv2DTranspose 2x2, stride 2, VALID (the mask head's
 * mrcnn_mask_deconv, spec §12):
 *     out[2i+a][2j+b][o] = bias[o] + sum_c x[i][j][c] * K[a][b][o][c]
 * (no kernel flip, no overlap between input pixels), optional ReLU.
 * Layouts: x [n, h, w, cin] NHWC; Keras kernel K (2, 2, cout, cin); packed kernel
 * P [cin, 4*cout] with column (a*2 + b)*cout + o; y [n, 2h, 2w, cout].
 * GEMM form: ws[n*h*w, 4*cout] = x[n*h*w, cin] * P (cx_sgemm), then a parallel
 * scatter of each 4*cout row into the 2x2 output block with bias and ReLU.
 * Validated by tests/kernels against torch.nn.functional.conv_transpose2d. */
#include "cpu_kernels.h"


void cx_deconv2x2_pack(const float *keras_kernel, int cin, int cout, float *packed) {
  for (int ab = 0; ab < 4; ab++)
    for (int o = 0; o < cout; o++)
      for (int c = 0; c < cin; c++)
        packed[(size_t)c * 4 * cout + (size_t)ab * cout + o] =
            keras_kernel[((size_t)ab * cout + o) * cin + c];
}

void cx_deconv2x2(const float *x, int n, int h, int w, int cin, const float *packed,
                  const float *bias, int cout, int relu, float *y, float *ws) {
  const size_t m = (size_t)n * h * w;
  const int nc = 4 * cout;
  if (m == 0) return;
  cx_sgemm((int)m, nc, cin, x, cin, packed, nc, 0.0f, ws, nc);
  const long rows = (long)m;
#pragma omp parallel for schedule(static)
  for (long p = 0; p < rows; p++) {
    const int b = (int)(p / ((long)h * w));
    const int rem = (int)(p % ((long)h * w));
    const int i = rem / w, j = rem % w;
    const float *src = ws + (size_t)p * nc;
    for (int a = 0; a < 2; a++) {
      /* the two horizontally adjacent output pixels (2j, 2j+1) of row 2i+a are contiguous */
      float *dst = y + ((((size_t)b * 2 * h + 2 * i + a) * 2 * w) + 2 * (size_t)j) * cout;
      const float *s = src + (size_t)a * 2 * cout;
      for (int bb = 0; bb < 2; bb++) {
        for (int o = 0; o < cout; o++) {
          float v = s[bb * cout + o] + (bias ? bias[o] : 0.0f);
          if (relu) v = v > 0.0f ? v : 0.0f;
          dst[bb * cout + o] = v;
        }
      }
    }
  }
}
