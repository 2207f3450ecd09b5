#!/usr/bin/python3
"""Reference data for tests/kernels/test_kernels.c (the CPU kernels of kernels/cpu).

Writes random inputs and the expected outputs, computed with PyTorch / NumPy or with the
independent TensorFlow-semantics reference shared/reference/tf_ops.py, into OUTDIR:

    OUTDIR/manifest.txt        one case per line: "<op> <case> key=value ..."
    OUTDIR/<case>.<array>.npy  the case's arrays (float32, float64, int32 or uint8)

Usage: /usr/bin/python3 kernel_ref.py OUTDIR [REFERENCE_DIR]
REFERENCE_DIR defaults to <repo>/../shared/reference.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1]
REF = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "..", "..", "shared", "reference")
sys.path.insert(0, os.path.abspath(REF))
import tf_ops  # noqa: E402

torch.set_num_threads(2)
F32 = np.float32
rng = np.random.RandomState(1234)
os.makedirs(OUT, exist_ok=True)
MANIFEST = []


def case(op, name, arrays, **params):
    for key, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        assert arr.dtype in (np.float32, np.float64, np.int32, np.uint8), (name, key, arr.dtype)
        np.save(os.path.join(OUT, "%s.%s.npy" % (name, key)), arr)
    MANIFEST.append(" ".join([op, name] + ["%s=%s" % (k, v) for k, v in params.items()]))


def rnd(*shape, lo=-1.0, hi=1.0):
    """Random float32, bounded away from zero (inputs must be nonzero)."""
    a = rng.uniform(lo, hi, size=shape)
    a = np.where(np.abs(a) < 1e-3, 1e-3 + np.abs(a), a)
    return a.astype(F32)


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous().numpy()


# ---- convolution (conv.c) vs torch.nn.functional.conv2d ---------------------------------
def conv_case(name, n, h, w, cin, cout, k, s, mode, pads=None, residual=False, relu=False, bias=True):
    x = rnd(n, h, w, cin)
    kern = (rnd(k, k, cin, cout) / np.sqrt(k * k * cin)).astype(F32)
    b = rnd(cout) if bias else None
    wt = torch.from_numpy(kern).permute(3, 2, 0, 1).contiguous()
    if mode == "same":
        pt, pb = tf_ops.same_pads(h, k, s)
        pl, pr = tf_ops.same_pads(w, k, s)
    elif mode == "valid":
        pt = pb = pl = pr = 0
    else:
        pt, pl, pb, pr = pads
    xt = F.pad(nchw(x), (pl, pr, pt, pb))
    y = F.conv2d(xt, wt, torch.from_numpy(b) if bias else None, stride=s)
    if mode == "same":  # cross-check the padding helper of the reference path too
        ys = tf_ops.conv2d_tf(nchw(x), wt, torch.from_numpy(b) if bias else None, s, "SAME")
        assert torch.equal(ys, y)
    arrays = {"x": x, "k": kern}
    if bias:
        arrays["b"] = b
    if residual:
        res = rnd(*nhwc(y).shape)
        arrays["res"] = res
        y = y + nchw(res)
    if relu:
        y = torch.relu(y)
    arrays["y"] = nhwc(y)
    case("conv", name, arrays, n=n, h=h, w=w, cin=cin, cout=cout, k=k, s=s,
         same=int(mode == "same"), pt=pt, pl=pl, pb=pb, pr=pr, residual=int(residual),
         relu=int(relu), bias=int(bias))


conv_case("conv3x3_s2_same_even", 2, 16, 12, 8, 12, 3, 2, "same")          # pads 0/1
conv_case("conv3x3_s2_same_odd", 1, 15, 13, 8, 12, 3, 2, "same")           # pads 1/1
conv_case("conv3x3_s2_same_mixed", 1, 16, 13, 5, 7, 3, 2, "same", relu=True)
conv_case("conv1x1_s2_valid", 1, 15, 14, 16, 8, 1, 2, "valid")
conv_case("conv7x7_s2_pad3", 1, 32, 30, 3, 16, 7, 2, "explicit", pads=(3, 3, 3, 3), relu=True)
conv_case("conv3x3_same", 2, 20, 17, 32, 24, 3, 1, "same")
conv_case("conv3x3_same_res_relu", 1, 9, 11, 64, 48, 3, 1, "same", residual=True, relu=True)
# Many Winograd chunks (tiles > one chunk) with odd sizes, batch 2.
conv_case("conv3x3_same_chunked", 2, 91, 77, 128, 96, 3, 1, "same", residual=True, relu=True)
conv_case("conv1x1_nobias", 1, 10, 7, 40, 33, 1, 1, "valid", bias=False)


def dense_case(name, rows, nin, nout, relu, bias=True):
    x = rnd(rows, nin)
    k = (rnd(nin, nout) / np.sqrt(nin)).astype(F32)
    b = rnd(nout)
    y = torch.from_numpy(x) @ torch.from_numpy(k) + (torch.from_numpy(b) if bias else 0)
    if relu:
        y = torch.relu(y)
    arrays = {"x": x, "k": k, "y": y.numpy()}
    if bias:
        arrays["b"] = b
    case("dense", name, arrays, rows=rows, nin=nin, nout=nout, relu=int(relu), bias=int(bias))


dense_case("dense", 37, 300, 91, False)
dense_case("dense_relu", 5, 1024, 81 * 4, True)
dense_case("dense_nobias", 3, 64, 10, False, bias=False)


# ---- pooling -----------------------------------------------------------------------------
def maxpool_case(name, n, h, w, c, k, s):
    x = rnd(n, h, w, c, lo=-5, hi=-0.5)   # all negative: a zero-padded pool would be wrong
    y = tf_ops.maxpool_tf_same(nchw(x), k, s)
    case("maxpool", name, {"x": x, "y": nhwc(y)}, n=n, h=h, w=w, c=c, k=k, s=s)


maxpool_case("maxpool3_s2_even", 2, 16, 16, 5, 3, 2)
maxpool_case("maxpool3_s2_odd", 1, 15, 13, 4, 3, 2)
maxpool_case("maxpool2_s2_odd", 1, 7, 9, 3, 2, 2)
maxpool_case("maxpool3_s1", 1, 6, 5, 3, 3, 1)


def subsample_case(name, n, h, w, c):
    x = rnd(n, h, w, c)
    case("subsample2", name, {"x": x, "y": x[:, ::2, ::2, :]}, n=n, h=h, w=w, c=c)


subsample_case("subsample2_even", 1, 8, 6, 7)
subsample_case("subsample2_odd", 2, 7, 5, 3)

# ---- elementwise ---------------------------------------------------------------------------
x = rnd(10007, lo=-8, hi=8)
case("relu", "relu", {"x": x, "y": np.maximum(x, F32(0))}, count=x.size)
x = rnd(10007, lo=-30, hi=30)
case("sigmoid", "sigmoid", {"x": x, "y": torch.sigmoid(torch.from_numpy(x)).numpy()}, count=x.size)

for name, (n, h, w, c) in (("upsample2_add", (1, 7, 5, 16)), ("upsample2_add_b2", (2, 4, 3, 5))):
    xs = rnd(n, h, w, c)
    yin = rnd(n, 2 * h, 2 * w, c)
    y = yin + nhwc(tf_ops.upsample2_nearest(nchw(xs)))
    case("upsample2_add", name, {"x": xs, "yin": yin, "y": y}, n=n, h=h, w=w, c=c)

for name, rows, cols, lo, hi in (("softmax_2", 1000, 2, -20, 20), ("softmax_81", 100, 81, -10, 10),
                                 ("softmax_saturated", 50, 2, -60, 60)):
    x = rnd(rows, cols, lo=lo, hi=hi)
    case("softmax", name, {"x": x, "y": torch.softmax(torch.from_numpy(x), dim=1).numpy()}, rows=rows, cols=cols)

c = 1000
gamma, beta, mean = rnd(c, lo=0.5, hi=2), rnd(c), rnd(c)
var = rnd(c, lo=0.01, hi=3)
inv, shift = tf_ops.bn_coeffs(gamma, beta, mean, var, 1e-3)
case("bn_coeffs", "bn_coeffs", {"gamma": gamma, "beta": beta, "mean": mean, "var": var,
                                "inv": inv.numpy(), "shift": shift.numpy()}, c=c, eps=1e-3)


# ---- deconv vs torch conv_transpose2d --------------------------------------------------------
def deconv_case(name, n, h, w, cin, cout, relu):
    x = rnd(n, h, w, cin)
    K = (rnd(2, 2, cout, cin) / np.sqrt(cin)).astype(F32)          # Keras (2, 2, out, in)
    b = rnd(cout)
    wt = torch.from_numpy(K).permute(3, 2, 0, 1).contiguous()       # torch (in, out, kh, kw)
    y = F.conv_transpose2d(nchw(x), wt, torch.from_numpy(b), stride=2)
    if relu:
        y = torch.relu(y)
    case("deconv", name, {"x": x, "k": K, "b": b, "y": nhwc(y)}, n=n, h=h, w=w, cin=cin, cout=cout,
         relu=int(relu))


deconv_case("deconv_small", 3, 5, 6, 16, 8, False)
deconv_case("deconv_relu", 2, 3, 4, 12, 20, True)
deconv_case("deconv_mask_head", 6, 14, 14, 256, 256, True)


# ---- mrcnn_mask at each row's own class (conv.c cx_mask_class_sigmoid) vs the full 1x1 conv
# in torch, sigmoid, then the class plane; classes outside [0, nc) are clamped by contract
def mask_class_case(name, rows, pix, cin, nc, cls):
    x = rnd(rows, pix, cin)
    K = (rnd(cin, nc) / np.sqrt(cin)).astype(F32)
    b = rnd(nc)
    full = torch.sigmoid(torch.from_numpy(x) @ torch.from_numpy(K) + torch.from_numpy(b)).numpy()
    c = np.clip(np.array(cls, np.int64), 0, nc - 1)
    y = full[np.arange(rows), :, c]
    case("mask_class", name, {"x": x, "k": K, "b": b, "cls": np.array(cls, np.int32), "y": y},
         rows=rows, pix=pix, cin=cin, nc=nc)


mask_class_case("mask_class_head", 7, 784, 256, 81, [3, 0, 80, 3, 17, 45, 1])
mask_class_case("mask_class_tails", 5, 49, 300, 7, [6, -1, 9, 2, 0])  # cin past one 256 block, not /16


# ---- crop_and_resize and pyramid levels ------------------------------------------------------
def crop_case(name, hf, wf, c, boxes, ph, pw):
    feat = rnd(hf, wf, c)
    boxes = np.asarray(boxes, F32)
    y = tf_ops.crop_and_resize_tf(torch.from_numpy(feat), boxes, ph, pw).numpy()
    for i in range(min(len(boxes), 6)):   # the vectorised reference against its scalar form
        assert np.array_equal(y[i], tf_ops.crop_and_resize_scalar(feat, boxes[i], ph, pw))
    case("crop", name, {"feat": feat, "boxes": boxes, "y": y}, hf=hf, wf=wf, c=c, nb=len(boxes), ph=ph, pw=pw)


def random_boxes(n, lo=0.0, hi=1.0, min_size=0.0):
    y = np.sort(rng.uniform(lo, hi, size=(n, 2)), axis=1)
    x = np.sort(rng.uniform(lo, hi, size=(n, 2)), axis=1)
    b = np.stack([y[:, 0], x[:, 0], y[:, 1] + min_size, x[:, 1] + min_size], axis=1)
    return b.astype(F32)


special = [
    [0.0, 0.0, 1.0, 1.0],          # whole map: last sample in_y == Hf-1 (edge case)
    [0.3, 0.1, 1.0, 0.9],          # ends exactly at the bottom
    [0.123, 0.0, 0.987654, 1.0],   # float rounding of the last sample vs Hf-1
    [0.0, 0.0, 0.0, 0.0],          # zero box: samples the single point (0, 0)
    [0.5, 0.5, 0.5, 0.5],          # zero-area interior point
    [0.2, 0.4, 0.2, 0.9],          # zero height
    [-0.3, -0.2, 0.4, 0.5],        # partly outside (top/left)
    [0.6, 0.7, 1.4, 1.2],          # partly outside (bottom/right)
    [1.2, 1.1, 1.8, 1.9],          # wholly outside
    [-0.9, -0.5, -0.1, -0.2],      # wholly outside (negative)
    [0.8, 0.9, 0.2, 0.1],          # flipped box (y2 < y1)
]


def edge_boxes(hf, wf, ph, pw, count=6):
    """Boxes ending exactly at 1.0 whose last sample in_y (in_x) lands exactly on Hf-1 (Wf-1)
    and boxes whose last sample exceeds it by float rounding (that row/column must be 0)."""
    cand = rng.uniform(0, 0.9, size=4000).astype(F32)
    out = []
    for size, p, col in ((hf, ph, 0), (wf, pw, 1)):
        f = F32(size - 1)
        last = cand * f + F32(p - 1) * (((F32(1.0) - cand) * f) / F32(p - 1))
        for sel in (last == f, last > f):
            for v in cand[sel][:count]:
                b = [0.1, 0.1, 0.9, 0.9]
                b[col], b[col + 2] = v, 1.0
                out.append(b)
    return np.asarray(out, F32)


crop_case("crop_7x7_special", 17, 23, 8, np.concatenate([special, edge_boxes(17, 23, 7, 7), random_boxes(40)]), 7, 7)
crop_case("crop_14x14", 32, 40, 16, np.concatenate([special, edge_boxes(32, 40, 14, 14), random_boxes(60, -0.2, 1.2)]), 14, 14)
crop_case("crop_7x7_c256", 64, 64, 256, np.concatenate([special, random_boxes(30)]), 7, 7)
crop_case("crop_3x5", 5, 4, 3, np.concatenate([special, random_boxes(10, -0.1, 1.1)]), 3, 5)


def levels_case(name, boxes, ih, iw):
    boxes = np.asarray(boxes, F32)
    lv = tf_ops.roi_levels(boxes, ih, iw).astype(np.int32)
    case("levels", name, {"boxes": boxes, "levels": lv}, nb=len(boxes), ih=ih, iw=iw)


sizes = np.exp(rng.uniform(np.log(1e-3), np.log(1.0), size=(300, 2)))
lb = np.zeros((300, 4))
lb[:, 0] = rng.uniform(0, 0.5, 300)
lb[:, 1] = rng.uniform(0, 0.5, 300)
lb[:, 2] = lb[:, 0] + sizes[:, 0] * 0.5
lb[:, 3] = lb[:, 1] + sizes[:, 1] * 0.5
lvl_special = [[0, 0, 0, 0], [0.5, 0.5, 0.5, 0.7], [0, 0, 1, 1], [0.2, 0.2, 0.1, 0.3],  # zero, zero, big, negative h
               [0.1, 0.1, 0.1 + 1e-30, 0.1 + 1e-30]]
levels_case("levels_1024", np.concatenate([lvl_special, lb]), 1024, 1024)
levels_case("levels_768x1024", np.concatenate([lvl_special, lb]), 768, 1024)

# ---- boxes --------------------------------------------------------------------------------------
anc = random_boxes(500, -0.2, 1.2)
dl = rnd(500, 4, lo=-2, hi=2)
dl[:3, 2:] = F32(100.0)   # exp overflow to +inf (no clamp): inf / NaN coordinates
with np.errstate(invalid="ignore"):
    case("box_deltas", "box_deltas", {"boxes": anc, "deltas": dl, "y": tf_ops.apply_box_deltas(anc, dl)}, nb=500)
for name, win in (("clip_unit", (0.0, 0.0, 1.0, 1.0)), ("clip_window", (0.125, 0.0625, 0.875, 0.8))):
    b = random_boxes(300, -0.5, 1.5)
    case("clip", name, {"boxes": b, "window": np.asarray(win, F32), "y": tf_ops.clip_boxes(b, win)}, nb=300)

px = rng.uniform(-50, 1100, size=(400, 4))
px[:50] = np.round(px[:50])
case("norm_boxes", "norm_boxes", {"boxes": px, "y": tf_ops.norm_boxes(px, (1024, 800))}, nb=400, h=1024, w=800)
nb = rng.uniform(-0.1, 1.1, size=(400, 4)).astype(F32)
half = ((rng.randint(0, 1024, size=(100, 4)) + 0.5) / 1024.0).astype(F32)   # x*(H-1) = k + 0.5 exactly
nb = np.concatenate([nb, half])
case("denorm_boxes", "denorm_boxes", {"boxes": nb, "y": tf_ops.denorm_boxes(nb, (1025, 1025))},
     nb=len(nb), h=1025, w=1025)
nb2 = rng.uniform(0, 1, size=(200, 4)).astype(F32)
case("denorm_boxes", "denorm_boxes_rect", {"boxes": nb2, "y": tf_ops.denorm_boxes(nb2, (640, 480))},
     nb=200, h=640, w=480)


def anchors_case(name, H, W, anchor_stride, scales=(32, 64, 128, 256, 512), strides=(4, 8, 16, 32, 64),
                 ratios=(0.5, 1, 2)):
    shapes = [(-(-H // s), -(-W // s)) for s in strides]
    a = np.concatenate([tf_ops.generate_anchors(sc, ratios, sh, st, anchor_stride)
                        for sc, sh, st in zip(scales, shapes, strides)])
    case("anchors", name, {"anchors": a.astype(np.float64), "scales": np.asarray(scales, np.float64),
                           "ratios": np.asarray(ratios, np.float64),
                           "fh": np.asarray([s[0] for s in shapes], np.int32),
                           "fw": np.asarray([s[1] for s in shapes], np.int32),
                           "strides": np.asarray(strides, np.int32)},
         levels=len(scales), nratios=len(ratios), astride=anchor_stride, count=len(a))


anchors_case("anchors_1024", 1024, 1024, 1)
anchors_case("anchors_320x192_s2", 320, 192, 2)
anchors_case("anchors_odd_ratios", 200, 136, 1, scales=(20, 40, 80), strides=(4, 8, 16), ratios=(0.25, 1.5))


# ---- top-k -----------------------------------------------------------------------------------------
def topk_case(name, scores, k):
    idx = tf_ops.top_k_stable(scores, k).astype(np.int32)
    case("topk", name, {"scores": scores, "idx": idx}, n=len(scores), k=k, kused=len(idx))


s = rng.uniform(0, 1, 261888).astype(F32)
s[rng.randint(0, 261888, 20000)] = F32(1.0)        # saturated foreground probabilities
s = np.where(rng.uniform(size=s.size) < 0.5, np.round(s * 200) / 200, s).astype(F32)   # many ties
topk_case("topk_rpn_ties", s, 6000)
s2 = np.round(rng.uniform(-3, 3, 5000)).astype(F32)  # only 7 distinct values
s2[::7] = F32(-0.0)
topk_case("topk_7_values", s2, 4000)
topk_case("topk_k_gt_n", rng.uniform(-1, 1, 50).astype(F32), 80)


# ---- NMS -------------------------------------------------------------------------------------------
def nms_case(name, boxes, scores, max_out, thr):
    boxes = np.asarray(boxes, F32)
    scores = np.asarray(scores, F32)
    sel = tf_ops.nms_tf(boxes, scores, max_out, thr, tie_order="stable").astype(np.int32)
    case("nms", name, {"boxes": boxes, "scores": scores, "sel": sel}, n=len(boxes), max_out=max_out,
         thr=repr(float(F32(thr))), nsel=len(sel))
    return sel


# RPN-like: 6000 candidates clustered around 300 centres, quantised scores, zero-area boxes
cent = rng.uniform(0, 1, size=(300, 2))
ci = rng.randint(0, 300, 6000)
hw = rng.uniform(0.02, 0.3, size=(6000, 2))
cc = cent[ci] + rng.normal(0, 0.02, size=(6000, 2))
bx = np.stack([cc[:, 0] - hw[:, 0] / 2, cc[:, 1] - hw[:, 1] / 2, cc[:, 0] + hw[:, 0] / 2, cc[:, 1] + hw[:, 1] / 2], 1)
bx = np.clip(bx, 0, 1)
bx[rng.randint(0, 6000, 300)] = 0.0                  # zero padding boxes
lines = rng.randint(0, 6000, 200)
bx[lines, 2] = bx[lines, 0]                         # zero height (clipped to a line)
sc = np.sort(rng.uniform(0.5, 1, 6000))[::-1]
sc = np.round(sc * 400) / 400                      # heavy ties
sc[:500] = 1.0
sel = nms_case("nms_rpn_6000", bx, sc, 1000, 0.7)
assert 300 < len(sel) <= 1000
nms_case("nms_rpn_6000_unsorted", bx[::-1], rng.permutation(sc), 1000, 0.7)
nms_case("nms_det_0.3", bx[:800], np.round(rng.uniform(0, 1, 800) * 50) / 50, 100, 0.3)

# IoU exactly at the threshold with integer coordinates: IoU = 7/10 -> 0.7f, not > 0.7f, kept
exact = [
    [0, 0, 1, 10],    # 0: area 10
    [0, 0, 1, 7],     # 1: inter 7, union 10 -> IoU == 0.7f exactly: kept
    [0, 0, 1, 8],     # 2: IoU 0.8 with box 0: suppressed
    [0, 3, 1, 10],    # 3: IoU 0.7 with 0, 0.4 with 1: kept
    [5, 5, 5, 5],     # 4: zero area point, tied score: kept
    [5, 5, 5, 5],     # 5: identical zero-area box: kept
    [20, 20, 30, 30], # 6
    [30, 30, 20, 20], # 7: flipped copy of 6: IoU 1 -> suppressed
    [20, 20, 30, 27], # 8: IoU with 6 = 70/100 = 0.7f: kept
    [0, 0, 10, 3],    # 9: IoU 3/10 = 0.3f against box 10 below (for the 0.3 threshold)
    [0, 0, 10, 10],   # 10
    [0, 0, 0, 10],    # 11: zero height line inside box 10: kept
]
exact_scores = [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.5, 0.6, 0.6]
sel = nms_case("nms_iou_exact_0.7", exact, exact_scores, 50, 0.7)
assert list(sel) == [0, 1, 3, 4, 5, 6, 8, 10, 11, 9], sel
sel = nms_case("nms_iou_exact_0.3", exact, exact_scores, 50, 0.3)
assert 9 in list(sel)
nms_case("nms_max_out_3", exact, exact_scores, 3, 0.7)
nms_case("nms_all_tied", random_boxes(400), np.full(400, 0.5, F32), 400, 0.5)


# ---- scikit-image resize ---------------------------------------------------------------------------
def resize_u8_case(name, ih, iw, c, oh, ow, lo, hi):
    img = rng.randint(lo, hi + 1, size=(ih, iw, c)).astype(np.uint8)
    img.flat[0] = lo
    ref = tf_ops.skimage_resize(img, oh, ow).astype(np.uint8)
    case("resize_u8", name, {"x": img, "y": ref}, ih=ih, iw=iw, c=c, oh=oh, ow=ow)


resize_u8_case("resize_u8_up_min0", 30, 40, 3, 67, 91, 0, 255)
resize_u8_case("resize_u8_up_min120", 30, 40, 3, 67, 91, 120, 250)    # cval rule: borders raised to lo
resize_u8_case("resize_u8_down", 100, 80, 3, 37, 29, 1, 255)
resize_u8_case("resize_u8_640x480_to_1024x768", 480, 640, 3, 768, 1024, 5, 255)
flat = np.full((20, 30, 3), 77, np.uint8)
case("resize_u8", "resize_u8_flat", {"x": flat, "y": tf_ops.skimage_resize(flat, 47, 61).astype(np.uint8)},
     ih=20, iw=30, c=3, oh=47, ow=61)


def resize_f32_case(name, ih, iw, oh, ow, lo, hi):
    m = rng.uniform(lo, hi, size=(ih, iw)).astype(F32)
    case("resize_f32", name, {"x": m, "y": tf_ops.skimage_resize(m, oh, ow)}, ih=ih, iw=iw, oh=oh, ow=ow)


resize_f32_case("resize_f32_mask_up", 28, 28, 93, 57, 0.4, 0.99)         # min > 0: cval rule
resize_f32_case("resize_f32_mask_down", 28, 28, 11, 19, 0.01, 0.99)
resize_f32_case("resize_f32_signed", 17, 23, 40, 9, -1.0, 1.0)

with open(os.path.join(OUT, "manifest.txt"), "w") as f:
    f.write("\n".join(MANIFEST) + "\n")
print("kernel_ref: %d cases written to %s" % (len(MANIFEST), OUT))
