#!/usr/bin/python3
"""Peer benchmark: torchvision's Mask R-CNN with a ResNet-101-FPN backbone (random weights,
1024x1024 input, 1000 proposals, 100 detections with full-size masks) against
`ctxdiff bench` on the same machine in the same run, with the same number of threads.

    /usr/bin/python3 bench/peer_torchvision.py --ctxdiff build/pipeline/ctxdiff [--iters 3]

Prints one JSON line per side and the ratios (peer time / ctxdiff time, end to end and
backbone+FPN). Needs Debian's python3-torch and python3-torchvision (or any torch >= 1.13).
"""
import argparse
import json
import os
import subprocess
import sys
import time


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def build_peer(size, threads, device):
    import torch
    import torchvision
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    try:
        backbone = resnet_fpn_backbone(backbone_name="resnet101", weights=None, trainable_layers=5)
    except TypeError:  # torchvision < 0.13
        backbone = resnet_fpn_backbone("resnet101", pretrained=False, trainable_layers=5)
    # Random init with identity batch norms makes the 33 residual blocks blow the features
    # up to ~1e5, and then the RPN keeps no proposal at all (0 detections, a meaningless
    # timing). Damping the batch norm that closes each residual branch (as our synthetic
    # weights do, gamma 0.1) keeps them bounded: 1000 proposals and 100 detections flow.
    for name, mod in backbone.body.named_modules():
        if name.endswith("bn3"):
            mod.weight.data.fill_(0.1)
    model = MaskRCNN(backbone, num_classes=81, min_size=size, max_size=size,
                     rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=1000,
                     box_score_thresh=0.0, box_detections_per_img=100).eval().to(device)
    img = torch.rand(3, size, size, device=device)
    name = "torchvision %s (torch %s) maskrcnn resnet101-fpn" % (torchvision.__version__, torch.__version__)
    return model, img, name


def peer_once(model, img, device):
    """One timed run: (end-to-end ms, backbone+FPN ms, detections)."""
    import torch
    sync = (lambda: torch.cuda.synchronize()) if device == "cuda" else (lambda: None)
    with torch.no_grad():
        sync()
        t0 = time.perf_counter()
        out = model([img])
        sync()
        t1 = time.perf_counter()
        images, _ = model.transform([img])
        sync()
        t2 = time.perf_counter()
        model.backbone(images.tensors)
        sync()
        t3 = time.perf_counter()
    return (t1 - t0) * 1e3, (t3 - t2) * 1e3, int(out[0]["masks"].shape[0])


def run_peer(size, iters, threads, device):
    """Peer timings alone (median of `iters` after one warm-up)."""
    model, img, name = build_peer(size, threads, device)
    peer_once(model, img, device)
    runs = [peer_once(model, img, device) for _ in range(iters)]
    return {"peer": name, "device": device, "threads": threads, "size": size, "iters": iters,
            "detections_per_image": runs[-1][2], "ms_per_image": round(median([r[0] for r in runs]), 1),
            "backbone_fpn_ms": round(median([r[1] for r in runs]), 1),
            "images_per_s": round(1000.0 / median([r[0] for r in runs]), 4)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ctxdiff", default="build/pipeline/ctxdiff", help="path to the ctxdiff binary")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--iters", type=int, default=5, help="alternating rounds (default 5)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--ctxdiff-args", default="", help="extra arguments for ctxdiff bench (e.g. '--precision fp16')")
    a = ap.parse_args()

    # Rounds alternate one ctxdiff bench run and one peer run, so that a machine whose speed
    # drifts (shared VMs do) slows both sides alike; medians over the rounds.
    cmd = [a.ctxdiff, "bench", "--device", a.device, "--backbone", "resnet101", "--size", str(a.size),
           "--batch", "1", "--iters", "1", "--warmup", "1"] + a.ctxdiff_args.split()
    model, img, name = build_peer(a.size, a.threads, a.device)
    peer_once(model, img, a.device)  # warm-up
    ours_runs, peer_runs = [], []
    for k in range(a.iters):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if r.returncode != 0:
            print("ctxdiff bench failed (exit %d)" % r.returncode, file=sys.stderr)
            return 1
        ours_runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
        peer_runs.append(peer_once(model, img, a.device))
        print("round %d/%d: ctxdiff %.0f ms, peer %.0f ms" % (k + 1, a.iters, ours_runs[-1]["ms_per_batch"],
              peer_runs[-1][0]), file=sys.stderr)
    ours = dict(ours_runs[-1])
    ours["iters"] = a.iters
    ours["ms_per_batch"] = round(median([o["ms_per_batch"] for o in ours_runs]), 1)
    ours["images_per_s"] = round(1000.0 / ours["ms_per_batch"], 4)
    ours["stages_ms"] = {k: round(median([o["stages_ms"][k] for o in ours_runs]), 1) for k in ours["stages_ms"]}
    peer = {"peer": name, "device": a.device, "threads": a.threads, "size": a.size, "iters": a.iters,
            "detections_per_image": peer_runs[-1][2],
            "ms_per_image": round(median([p[0] for p in peer_runs]), 1),
            "backbone_fpn_ms": round(median([p[1] for p in peer_runs]), 1)}
    peer["images_per_s"] = round(1000.0 / peer["ms_per_image"], 4)
    if peer["detections_per_image"] < 100:
        print("warning: the peer produced %d detections, not 100: its time is not comparable" % peer["detections_per_image"],
              file=sys.stderr)
    print(json.dumps(ours))
    print(json.dumps(peer))
    e2e = peer["ms_per_image"] / ours["ms_per_batch"]
    bb = peer["backbone_fpn_ms"] / ours["stages_ms"]["backbone_fpn"]
    print(json.dumps({"ratio_end_to_end": round(e2e, 2), "ratio_backbone_fpn": round(bb, 2),
                      "note": "peer time / ctxdiff time, medians of alternating rounds; > 1 means ctxdiff is faster"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
