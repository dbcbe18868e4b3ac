"""Each paper config end to end on the stand-ins, with a tiny random MobileNetV2 substituted
for InceptionV3 / ResNet50 by config overrides (numbers mean nothing; the chain must run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rcvlab.reproduce.config import load_config
from rcvlab.reproduce.published import compare

from .standins import camelyon_standin, imagenet_standin, janowczyk_standin

pytestmark = pytest.mark.slow

TINY = {"model": "mobilenet_v2", "weights": "random", "input_size": 64}
L2 = ["features.2", "features.4"]


def _nets(config_name: str, ids: list[str]) -> dict[str, object]:
    o: dict[str, object] = {}
    for i in ids:
        for k, v in TINY.items():
            if k == "weights" and config_name == "imvip2019" and i != "pretrained":
                continue  # xavier and step:finetune keep their weights
            o[f"networks.{i}.{k}"] = v
    return o


OVERRIDES = {
    "make2021": {
        **_nets("make2021", ["inception_v3", "resnet50"]),
        **{
            f"steps.{s}.layers": L2
            for s in (
                "profile_albatross",
                "profile_inception_v3",
                "profile_resnet50",
                "noise_inception_v3",
            )
        },
        **{
            f"steps.{s}.reps": 2
            for s in (
                "profile_albatross",
                "profile_inception_v3",
                "profile_resnet50",
                "noise_inception_v3",
            )
        },
        "steps.resize_inception_v3.sizes": [48, 64],
        "steps.resize_inception_v3.interps": ["bilinear"],
        "steps.noise_inception_v3.sizes": [48, 64, 80],
        "steps.prune_inception_v3.at": "features.4",
        "steps.prune_resnet50.at": "features.4",
        "steps.transfer_inception_v3.variants": ["pretrained", "scratch", "pruned:features.4"],
        "steps.transfer_resnet50.variants": ["pretrained", "pruned:features.4"],
        "steps.transfer_inception_v3.seeds": 2,
        "steps.transfer_resnet50.seeds": 1,
        "steps.transfer_inception_v3.epochs": 1,
        "steps.transfer_resnet50.epochs": 1,
    },
    "imimic2020": {
        **_nets("imimic2020", ["inception_v3", "resnet50"]),
        "steps.profile_inception_v3.layers": L2,
        "steps.profile_resnet50.layers": L2,
        "steps.profile_inception_v3.reps": 2,
        "steps.profile_resnet50.reps": 2,
        "steps.transfer_inception_v3.seeds": 1,
        "steps.transfer_resnet50.seeds": 1,
        "steps.transfer_inception_v3.epochs": 1,
        "steps.transfer_resnet50.epochs": 1,
    },
    "consistency2020": {
        **_nets("consistency2020", ["inception_v3"]),
        "inputs.imagenet.n_per_class": None,
        "steps.sparsity.layer": "features.4",
        "steps.sparsity.reps": 2,
        "steps.sparsity.alphas": [0.0, 0.01],
        "steps.alignment.layer": "features.4",
        "steps.consistency.layer": "features.4",
        "steps.consistency.reps": 2,
    },
    "imvip2019": {
        **_nets("imvip2019", ["pretrained", "xavier", "finetuned"]),
        "steps.finetune.epochs": 1,
        "steps.finetune.batch_size": 8,
        "steps.cam.min_prob": None,
        "steps.cam.top": 2,
        **{
            f"steps.visualize_{w}_{k}.{o}": v
            for w in ("pretrained", "finetuned")
            for k in ("mixed5b", "mixed5c", "mixed6a", "mixed7c")
            for o, v in (("layer", "features.2"), ("channels", "0:2"), ("steps", 2), ("size", 32))
        },
        "steps.texture.layers": L2,
        "steps.texture.reps": 2,
    },
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("standins")
    return {
        "imagenet": imagenet_standin(root / "imagenet", n_per_class=24),
        "histology": janowczyk_standin(root / "janowczyk"),
        "camelyon": camelyon_standin(root / "camelyon"),
    }


@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_paper_config_runs_on_standins(name, data, tmp_path):
    from rcvlab.reproduce.runner import reproduce, step_results

    config = load_config(name, overrides=OVERRIDES[name])
    inputs = {k: v for k, v in data.items() if k in config.inputs}
    out = tmp_path / name
    result = reproduce(config, inputs, out, echo=lambda s: None, progress=False)
    assert [s.id for s in result.steps] == config.step_ids
    assert (out / "manifest.json").is_file()
    html = (out / "report.html").read_text()
    # every section: the steps table, the published numbers, one section per step, manifest
    for anchor in ("steps", "published", "manifest", *(f"step-{i}" for i in config.step_ids)):
        assert f'id="{anchor}"' in html, anchor
    assert all(s.status == "ran" for s in result.steps)
    results = step_results(out, result)
    assert set(results) == set(config.step_ids)
    f = compare(config, results)
    assert len(f) > 0 and set(f["verdict"]) <= {"within", "outside", "n/a"}
