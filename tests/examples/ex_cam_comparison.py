"""A small real CamComparison: a sharp red-blob detector against a diffuse one."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rcvlab.analyses.cam import CamComparison, cam, compare_cams
from rcvlab.models.registry import load_model


def _ex_cam():
    path = Path(__file__).with_name("ex_cam.py")
    spec = importlib.util.spec_from_file_location("rcvlab_example_cam_module", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def example() -> CamComparison:
    ex = _ex_cam()
    images, masks = ex.blob_images(n=8, seed=1)
    opts = {"layer": "2", "method": "gradcam,gradcam++", "masks": masks, "device": "cpu"}
    sharp = load_model(ex.planted().eval(), input_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    # a 5x5 window and a positive bias: the detector also fires up to 2 px around the blob
    diffuse = load_model(ex.planted(5, 0.4).eval(), input_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    a = cam(diffuse, images, target=1, **opts)
    b = cam(sharp, images, target=1, indices=a.indices, **opts)
    return compare_cams(a, b, command="example")
