/* deconv.cu — Keras Conv2DTranspose 2x2, stride 2, VALID (mask head, spec §12):
 *     out[2i+a][2j+b][o] = bias[o] + sum_c x[i][j][c] * K[a][b][o][c], optional ReLU.
 * Layouts exactly as kernels/cpu/deconv.c: x [n, h, w, cin]; packed kernel P [cin, 4*cout]
 * (column (a*2 + b)*cout + o, made by cx_deconv2x2_pack on the host); y [n, 2h, 2w, cout];
 * ws (device) n*h*w*4*cout floats.
 * Same two steps as the CPU: ws = x * P through the conv GEMM (conv.cu, so the precision
 * setting applies), then a scatter of each 4*cout row into its 2x2 output block with
 * bias and ReLU (v = s + bias, then max(v, 0), as on the CPU).
 * cx_cuda_deconv2x2_live computes the first *live images only (a count on the device).
 * Validated by `ctxdiff validate --device cuda` against cx_deconv2x2. */
#include "cuda_common.cuh"

namespace {

__global__ void deconv_scatter_kernel(const float *__restrict__ ws, int n, int h, int w, int cout,
                                      const float *__restrict__ bias, int relu, float *__restrict__ y,
                                      const int *__restrict__ live) {
  /* one thread per output element of y [n, 2h, 2w, cout], images below *live only when set */
  const int nl = live ? min(n, max(__ldg(live), 0)) : n;
  const long long total = (long long)nl * 4 * h * w * cout;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    int o, X, Y;
    const long long b = cx_divmod(cx_divmod(cx_divmod(i, cout, &o), 2 * w, &X), 2 * h, &Y);
    const int a = Y & 1, bb = X & 1;
    const long long p = (b * h + Y / 2) * w + X / 2;
    float v = ws[p * 4 * cout + (long long)(a * 2 + bb) * cout + o] + (bias ? bias[o] : 0.0f);
    if (relu) v = v > 0.0f ? v : 0.0f;
    y[i] = v;
  }
}

} /* namespace */

int cx_cuda_deconv2x2(const float *x, int n, int h, int w, int cin, const float *packed, const float *bias, int cout,
                      int relu, float *y, float *ws) {
  return cx_cuda_deconv2x2_live(x, 0, n, h, w, cin, packed, NULL, 0, bias, cout, relu, y, ws, NULL);
}

int cx_cuda_deconv2x2_live(const void *x, int x16, int n, int h, int w, int cin, const float *packed,
                           const void *packed16, int packed16_prec, const float *bias, int cout, int relu, float *y,
                           float *ws, const int *live) {
  const long long m = (long long)n * h * w;
  if (m == 0 || cout <= 0) return 0;
  if (m > 0x7fffffffLL) return CX_CUDA_FAIL("deconv2x2: %lld input pixels exceed the int range", m);
  if (!ws) return CX_CUDA_FAIL("deconv2x2: the CUDA kernel needs a workspace of n*h*w*4*cout floats");
  cx_conv2d_desc d = {1, 1, cin, 4 * cout, 1, 0, 0, 0, 0, packed, NULL, NULL, 0, packed16, packed16_prec};
  /* the GEMM's "images" are the n*h*w input pixels: h*w of them per live image */
  if (cx_cuda_conv2d_io_rows(&d, x, x16, (int)m, 1, 1, ws, 0, NULL, 0, live, h * w)) return -1;
  const size_t total = (size_t)m * 4 * cout;
  deconv_scatter_kernel<<<cx_blocks(total, 256), 256, 0, cx_cuda_stream()>>>(ws, n, h, w, cout, bias, relu, y, live);
  CX_CUDA_LAUNCH_CHECK();
  return 0;
}
