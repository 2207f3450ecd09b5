"""Writes matterport Mask R-CNN weight files in the Keras 2.x HDF5 layout with h5py
(shared/spec/maskrcnn-matterport.md §14.1), for the converter tests. Independent of the
C code: the layout comes from the spec, the values from shared/reference/synth.py.

Layout written by `write_keras_h5`:
  root attrs  layer_names (fixed-length bytes; or split layer_names0, 1, ...),
              backend b"tensorflow", keras_version
  /<layer>    attr weight_names, datasets at the paths weight_names give
              ("<layer>/kernel:0" -> subgroup <layer>, dataset "kernel:0")
  /rpn_model  nested model: weight_names "rpn_conv_shared/kernel:0", ...
  weightless layers (input_image, res2a_out, ROI, ...) with an empty weight_names
  variant "model.save": all of the above under /model_weights, plus /optimizer_weights
"""
import json
from collections import OrderedDict

import h5py
import numpy as np

RPN_LAYERS = ("rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred")

# Weightless layers of the training model, interleaved roughly where Keras lists them.
WEIGHTLESS_FIRST = ["input_image", "zero_padding2d_1"]
WEIGHTLESS_AFTER = {
    "bn_conv1": ["activation_1", "max_pooling2d_1"],
    "bn2a_branch1": ["add_1", "res2a_out"],
    "bn5c_branch2c": ["add_16", "res5c_out"],
    "fpn_c2p2": ["fpn_p5upsampled", "fpn_p4add", "fpn_p4upsampled", "fpn_p3add", "fpn_p3upsampled", "fpn_p2add"],
    "fpn_p5": ["fpn_p6", "input_anchors", "ROI", "input_image_meta", "roi_align_classifier"],
    "mrcnn_bbox_fc": ["mrcnn_class", "mrcnn_bbox", "mrcnn_detection", "lambda_3", "roi_align_mask"],
    "mrcnn_mask": ["mrcnn_loss"],
}


def group_layers(weights):
    """OrderedDict layer -> [(weight name, array)] in table order."""
    layers = OrderedDict()
    for key, arr in weights.items():
        layer, w = key.rsplit("/", 1)
        layers.setdefault(layer, []).append((w, arr))
    return layers


def write_keras_h5(path, weights, keras_version="2.0.8", model_save=False, split_names=0, vlen_names=False,
                   uniquify=(), compress=False, extra_layers=None):
    """weights: dict "<layer>/<weight>" -> float32 array (Keras shapes).
    split_names: > 0 splits layer_names into attributes of that many names each.
    vlen_names: store weight_names as variable-length strings (h5py str) instead of bytes.
    uniquify: layers whose variable scope gets TF's "_1" suffix (conv1_1/kernel:0).
    extra_layers: {layer: [(weight, array)]} added as is (for invalid files)."""
    layers = group_layers(weights)
    if extra_layers:
        layers.update(extra_layers)
    entries = []            # (group name, [(dataset path, array)])
    rpn = []
    for layer, ws in layers.items():
        if layer in RPN_LAYERS:
            rpn += [("%s/%s:0" % (layer, w), a) for w, a in ws]
            if layer == RPN_LAYERS[-1] or len(rpn) == 6:
                entries.append(("rpn_model", rpn))
            continue
        scope = layer + "_1" if layer in uniquify else layer
        entries.append((layer, [("%s/%s:0" % (scope, w), a) for w, a in ws]))
        for wl in WEIGHTLESS_AFTER.get(layer, []):
            entries.append((wl, []))
    entries = [(n, []) for n in WEIGHTLESS_FIRST] + entries
    with h5py.File(path, "w") as f:
        if model_save:
            f.attrs["keras_version"] = keras_version.encode()
            f.attrs["backend"] = b"tensorflow"
            f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"name": "mask_rcnn"}}).encode()
            root = f.create_group("model_weights")
            opt = f.create_group("optimizer_weights")
            opt.attrs["weight_names"] = np.array([b"training/SGD/Variable:0", b"SGD/iterations:0"])
            opt.create_dataset("training/SGD/Variable:0", data=np.ones((7, 7, 3, 64), np.float32))
            opt.create_dataset("SGD/iterations:0", data=np.int64(1000))
        else:
            root = f
        names = [n.encode() for n, _ in entries]
        if split_names:
            for k in range(0, len(names), split_names):
                root.attrs["layer_names%d" % (k // split_names)] = np.array(names[k:k + split_names])
        else:
            root.attrs["layer_names"] = np.array(names)
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = keras_version.encode()
        for name, ws in entries:
            g = root.create_group(name)
            wn = [p for p, _ in ws]
            if vlen_names and wn:
                g.attrs.create("weight_names", wn, dtype=h5py.string_dtype())
            else:
                # Keras writes the list as given: an empty list becomes an empty float array.
                g.attrs["weight_names"] = np.array([p.encode() for p in wn]) if wn else np.array([])
            for p, a in ws:
                if compress:
                    g.create_dataset(p, data=a, compression="gzip", chunks=True)
                else:
                    g.create_dataset(p, data=a)


def zero_weights(table):
    """Same names and shapes as synth weights but zeros (compress to almost nothing)."""
    return OrderedDict((k, np.zeros(shape, np.float32)) for k, (_, shape) in table.items())
