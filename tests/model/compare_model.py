#!/usr/bin/python3
"""Whole-model test: the C runtime (tests/model/dump_model) against the independent
PyTorch/NumPy reference of shared/reference (mrcnn_ref.py), on synthetic weights.

--stages      compare every named intermediate (max |ref - run| / max |ref|, spec §6.1)
--detections  compare final detections with shared/reference/compare.py (spec §6.2);
              the reproduced fraction must be >= 0.99
Prints one line per comparison and exits non-zero on any failure.
"""
import argparse
import ast
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

STAGE_TOL = 1e-4       # spec §6.1, float32 paths
MIN_REPRODUCED = 0.99  # spec §6.2


def rel(ref, run):
    ref = np.asarray(ref, np.float64)
    run = np.asarray(run, np.float64)
    if ref.shape != run.shape:
        return None
    den = np.abs(ref).max()
    return float(np.abs(ref - run).max() / den) if den > 0 else float(np.abs(ref - run).max())


def report(name, run_t, err, ref_shape=None):
    """One line per stage; returns 1 on failure."""
    if run_t is None or err is None:
        print("%-20s missing or shape mismatch (reference %s) FAIL" % (name, ref_shape))
        return 1
    ok = err <= STAGE_TOL
    print("%-20s %-22s rel err %.2e (tol %.0e) %s" % (name, str(run_t.shape), err, STAGE_TOL, "PASS" if ok else "FAIL"))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump-model", required=True)
    ap.add_argument("--reference", required=True, help="shared/reference folder")
    ap.add_argument("--backbone", default="resnet101")
    ap.add_argument("--num-classes", type=int, default=81)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--stages", action="store_true")
    ap.add_argument("--detections", action="store_true")
    a = ap.parse_args()
    if not os.path.isfile(os.path.join(a.reference, "mrcnn_ref.py")):
        print("reference not found at %s (shared/ must sit beside the repository)" % a.reference)
        return 1
    sys.path.insert(0, a.reference)
    import torch
    torch.set_num_threads(2)
    import mrcnn_ref
    import compare

    overrides = {"BACKBONE": a.backbone, "NUM_CLASSES": a.num_classes, "DETECTION_MIN_CONFIDENCE": 0.0}
    for kv in a.config:
        k, v = kv.split("=", 1)
        overrides[k] = ast.literal_eval(v)

    with tempfile.TemporaryDirectory(prefix="ctxdiff-model-") as tmp:
        t0 = time.time()
        # without --stages the detections come from the path users run (no intermediates)
        cmd = [a.dump_model] + ([] if a.stages else ["--final-only"]) + [tmp, a.backbone, str(a.num_classes), str(a.width), str(a.height), str(a.seed),
               "DETECTION_MIN_CONFIDENCE=0"] + a.config
        r = subprocess.run(cmd)
        if r.returncode != 0:
            print("FAIL: dump_model exited with %d" % r.returncode)
            return 1
        t_run = time.time() - t0
        run = {f[:-4]: np.load(os.path.join(tmp, f)) for f in os.listdir(tmp) if f.endswith(".npy")}

        t0 = time.time()
        weights = mrcnn_ref.synth_weights(a.backbone, a.num_classes)
        model = mrcnn_ref.MaskRCNNRef(weights, mrcnn_ref.Config(**overrides))
        del weights
        image = mrcnn_ref.synth_image(a.width, a.height, a.seed)
        ref_res = model.detect([image], capture=True)[0]
        inter = model.intermediates[0]
        t_ref = time.time() - t0
    print("runtime %.1f s, reference %.1f s" % (t_run, t_ref))

    failures = 0
    if a.stages:
        # Exact stages: preprocessing (resize, truncation, padding, mean) and anchors.
        for name in ("molded_image", "anchors"):
            d = float(np.abs(inter[name].astype(np.float64) - run[name]).max())
            ok = d == 0.0 if name == "anchors" else d <= 1.0   # §3.3: last-bit uint8 flips allowed
            frac = float((inter[name] != run[name]).mean())
            print("%-20s %-22s max abs diff %.3g (%.2e of values differ) %s" % (name, str(run[name].shape), d, frac, "PASS" if ok else "FAIL"))
            failures += not ok
        # Continuous stages, end to end: the whole path from the image.
        names = ["C2", "C3", "C4", "C5", "P2", "P3", "P4", "P5", "P6", "rpn_class_logits", "rpn_class", "rpn_bbox"]
        errs = compare.compare_tensors(inter, run, names)
        for n in names:
            failures += report(n, run.get(n), errs.get(n), inter[n].shape)
        # Stages after a discrete decision (top-k, NMS, arg-max), each in isolation (spec
        # §16.2): the reference stage is fed the runtime's own inputs, so a rounding-level
        # difference upstream cannot flip a selection and hide or fake an error here.
        import torch
        H, W = run["molded_image"].shape[1:3]
        window = model.diagnostics[0]["window"]
        P_hwc = [torch.from_numpy(np.ascontiguousarray(run["P%d" % k][0])) for k in (2, 3, 4, 5)]
        with torch.no_grad():
            rois = model.proposal_layer(run["rpn_class"][0], run["rpn_bbox"][0], run["anchors"][0])
            failures += report("proposals", run["proposals"], rel(rois[None], run["proposals"]))
            logits, probs, deltas = model.classifier_head(run["proposals"][0], P_hwc, (H, W))
            failures += report("mrcnn_class_logits", run["mrcnn_class_logits"], rel(logits[None], run["mrcnn_class_logits"]))
            failures += report("mrcnn_class", run["mrcnn_class"], rel(probs[None], run["mrcnn_class"]))
            failures += report("mrcnn_bbox", run["mrcnn_bbox"], rel(deltas[None], run["mrcnn_bbox"]))
            det = model.detection_layer(run["proposals"][0], run["mrcnn_class"][0], run["mrcnn_bbox"][0], window, (H, W))
            failures += report("detections", run["detections"], rel(det[None], run["detections"]))
            nv = run["mrcnn_mask"].shape[1]
            if nv:
                masks = model.mask_head(run["detections"][0, :nv, :4], P_hwc, (H, W))
                failures += report("mrcnn_mask", run["mrcnn_mask"], rel(masks[None], run["mrcnn_mask"]))
        # Unmolding of the runtime's own detections and masks: must agree exactly.
        full = np.zeros((run["detections"].shape[1], 28, 28, a.num_classes), np.float32)
        full[:nv] = run["mrcnn_mask"][0]
        unm = model.unmold(run["detections"][0], full, image.shape, run["molded_image"].shape[1:], window)
        same = (np.array_equal(unm["rois"], run["rois"]) and np.array_equal(unm["class_ids"], run["class_ids"])
                and np.array_equal(unm["masks"], np.transpose(run["masks"].astype(bool), (1, 2, 0))))
        print("%-20s %-22s %s" % ("unmold", str(run["rois"].shape), "PASS (identical boxes, classes, masks)" if same else "FAIL"))
        failures += not same
        # For information: how far the end-to-end tensors drifted (discrete flips included).
        info = compare.compare_tensors(inter, run, ["proposals", "mrcnn_class", "detections"])
        print("end to end (info): " + ", ".join("%s %.2e" % kv for kv in info.items()))

    # Final detections (always reported; required >= 0.99 with --detections).
    runres = {"rois": run["rois"], "class_ids": run["class_ids"], "scores": run["scores"],
              "masks": np.transpose(run["masks"].astype(bool), (1, 2, 0))}
    frac, details = compare.compare_detections(ref_res, runres)
    nref, nrun = ref_res["rois"].shape[0], run["rois"].shape[0]
    ok = frac >= MIN_REPRODUCED or not a.detections
    print("detections: reference %d, runtime %d, reproduced %.4f (required %s) %s" % (
        nref, nrun, frac, ">= %.2f" % MIN_REPRODUCED if a.detections else "reported only", "PASS" if ok else "FAIL"))
    for d in details[:10]:
        print("  not reproduced:", d)
    failures += not ok
    if a.detections and nref == 0:
        print("FAIL: the reference produced no detections, so this comparison cannot fail")
        failures += 1
    print("%d passed, %d failed" % (0 if failures else 1, 1 if failures else 0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
