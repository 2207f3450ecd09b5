/* The Mask R-CNN graph on the CUDA backend (CUDA builds). Until the GPU graph lands,
 * selecting the GPU reports that plainly; the per-op CUDA kernels are exercised by
 * `ctxdiff validate`. */
#ifdef CTXDIFF_HAVE_CUDA
#include "model_internal.h"

int cx_gpu_attach(cx_model *m, const char *precision, cx_err *e) {
  (void)m;
  (void)precision;
  return cx_fail(e, "whole-model inference on CUDA is not implemented yet in this version; per-op kernels: ctxdiff validate --device cuda");
}

void cx_gpu_detach(cx_model *m) { m->gpu = NULL; }

int cx_gpu_detect(cx_model *m, const cx_image *images, int n, cx_detections *out, cx_err *e) {
  (void)m; (void)images; (void)n; (void)out;
  return cx_fail(e, "whole-model inference on CUDA is not implemented yet in this version");
}
#endif
