/* elementwise.c — ReLU, logistic sigmoid, nearest 2x upsample + add (Keras UpSampling2D
 * followed by Add, spec §5), row softmax (spec §7 step 3, §10) and the inference
 * batch-norm coefficients (spec §4.2: inv = rsqrt(var + eps) * gamma,
 * shift = beta - mean * inv, float32).
 * Layouts: flat float32 arrays; upsample is NHWC, x [n, h, w, c] added into y [n, 2h, 2w, c].
 * Validated by tests/kernels against torch.relu / torch.sigmoid / torch.softmax,
 * tf_ops.upsample2_nearest and tf_ops.bn_coeffs. */
#include "cpu_kernels.h"

#include <math.h>

void cx_relu(float *x, size_t count) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < count; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void cx_sigmoid(float *x, size_t count) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < count; i++) x[i] = 1.0f / (1.0f + expf(-x[i]));
}

void cx_upsample2_add(const float *x, int n, int h, int w, int c, float *y) {
  const long rows = (long)n * 2 * h; /* output rows */
#pragma omp parallel for schedule(static)
  for (long r = 0; r < rows; r++) {
    const long b = r / (2 * h);
    const int oy = (int)(r % (2 * h));
    const float *xr = x + ((size_t)b * h + oy / 2) * w * c;
    float *yr = y + (size_t)r * 2 * w * c;
    for (int ox = 0; ox < 2 * w; ox++) {
      const float *xi = xr + (size_t)(ox / 2) * c;
      float *yo = yr + (size_t)ox * c;
      for (int ch = 0; ch < c; ch++) yo[ch] += xi[ch];
    }
  }
}

void cx_softmax_rows(const float *x, size_t rows, int cols, float *y) {
#pragma omp parallel for schedule(static) if (rows * (size_t)cols > 4096)
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * (size_t)cols;
    float *yr = y + r * (size_t)cols;
    float m = xr[0];
    for (int j = 1; j < cols; j++) m = xr[j] > m ? xr[j] : m;
    float sum = 0.0f;
    for (int j = 0; j < cols; j++) {
      yr[j] = expf(xr[j] - m); /* y may alias x: each element is read before it is written */
      sum += yr[j];
    }
    for (int j = 0; j < cols; j++) yr[j] = yr[j] / sum;
  }
}

void cx_bn_coeffs(const float *gamma, const float *beta, const float *mean, const float *var,
                  int c, float eps, float *inv, float *shift) {
  for (int i = 0; i < c; i++) {
    const float r = 1.0f / sqrtf(var[i] + eps);
    inv[i] = r * gamma[i];
    shift[i] = beta[i] - mean[i] * inv[i];
  }
}
