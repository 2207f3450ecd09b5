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


def run_peer(size, iters, threads, device):
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
    sync = (lambda: torch.cuda.synchronize()) if device == "cuda" else (lambda: None)
    total, bb, ndet = [], [], 0
    with torch.no_grad():
        for it in range(iters + 1):
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
            if it == 0:
                continue  # warm-up
            total.append((t1 - t0) * 1e3)
            bb.append((t3 - t2) * 1e3)
            ndet = int(out[0]["masks"].shape[0])
            print("peer run %d/%d: %.0f ms" % (it, iters, total[-1]), file=sys.stderr)
    return {"peer": "torchvision %s (torch %s) maskrcnn resnet101-fpn" % (torchvision.__version__, torch.__version__),
            "device": device, "threads": threads, "size": size, "iters": iters, "detections_per_image": ndet,
            "ms_per_image": round(median(total), 1), "backbone_fpn_ms": round(median(bb), 1),
            "images_per_s": round(1000.0 / median(total), 4)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ctxdiff", default="build/pipeline/ctxdiff", help="path to the ctxdiff binary")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--ctxdiff-args", default="", help="extra arguments for ctxdiff bench (e.g. '--precision fp16')")
    a = ap.parse_args()

    cmd = [a.ctxdiff, "bench", "--device", a.device, "--backbone", "resnet101", "--size", str(a.size),
           "--batch", "1", "--iters", str(a.iters)] + a.ctxdiff_args.split()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        print("ctxdiff bench failed (exit %d)" % r.returncode, file=sys.stderr)
        return 1
    ours = json.loads(r.stdout.strip().splitlines()[-1])
    peer = run_peer(a.size, a.iters, a.threads, a.device)
    if peer["detections_per_image"] < 100:
        print("warning: the peer produced %d detections, not 100: its time is not comparable" % peer["detections_per_image"],
              file=sys.stderr)
    print(json.dumps(ours))
    print(json.dumps(peer))
    e2e = peer["ms_per_image"] / ours["ms_per_batch"]
    bb = peer["backbone_fpn_ms"] / ours["stages_ms"]["backbone_fpn"]
    print(json.dumps({"ratio_end_to_end": round(e2e, 2), "ratio_backbone_fpn": round(bb, 2),
                      "note": "peer time / ctxdiff time; > 1 means ctxdiff is faster"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
