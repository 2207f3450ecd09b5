/* The CPU backend: the op table filled with the kernels of kernels/cpu/. */
#include "backend.h"

static const char *const OP_NAMES[CX_OP_COUNT] = {
    "conv2d", "dense", "maxpool_same", "subsample2", "upsample2_add", "softmax", "sigmoid", "deconv2x2",
    "crop_and_resize", "roi_levels", "box_deltas", "clip_boxes", "topk", "nms", "resize_u8", "resize_mask",
    "mask_class"};

const char *cx_op_name(cx_op op) { return (op >= 0 && op < CX_OP_COUNT) ? OP_NAMES[op] : "?"; }

static int cpu_supports(cx_op op) { return op >= 0 && op < CX_OP_COUNT; }

static const cx_backend CPU = {
    .name = "cpu",
    .supports = cpu_supports,
    .conv2d = cx_conv2d,
    .dense = cx_dense,
    .maxpool_same = cx_maxpool_same,
    .subsample2 = cx_subsample2,
    .upsample2_add = cx_upsample2_add,
    .softmax_rows = cx_softmax_rows,
    .sigmoid = cx_sigmoid,
    .deconv2x2 = cx_deconv2x2,
    .crop_and_resize = cx_crop_and_resize,
    .roi_levels = cx_roi_levels,
    .apply_box_deltas = cx_apply_box_deltas,
    .clip_boxes = cx_clip_boxes,
    .topk_stable = cx_topk_stable,
    .nms = cx_nms,
    .resize_u8 = cx_skimage_resize_u8,
    .resize_mask = cx_skimage_resize_f32,
    .mask_class_sigmoid = cx_mask_class_sigmoid,
};

const cx_backend *cx_backend_cpu(void) { return &CPU; }
