import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rcvlab.cli import main


def test_help_lists_all_commands(runner):
    r = runner.invoke(main, ["--help"])
    assert r.exit_code == 0
    for cmd in ("probe", "layers", "models", "demo"):
        assert cmd in r.output


def test_layers_lists_names_and_dims(runner):
    r = runner.invoke(main, ["layers", "inception_v3", "--input-size", "75"])
    assert r.exit_code == 0, r.output
    assert "mixed8" in r.output and "1280" in r.output and "Mixed_7a" in r.output
    r = runner.invoke(main, ["layers", "resnet50"])
    assert "add15" in r.output and "before its ReLU" in r.output


def test_unknown_model_is_one_line_exit_2(runner):
    r = runner.invoke(main, ["layers", "resnet5"])
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0 and "Did you mean 'resnet50'" in r.stderr
    assert "Traceback" not in r.output


def _csv_data(tmp_path, n=24, constant=False):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        side = int(rng.integers(8, 60))
        img = np.full((64, 64, 3), 30, np.uint8)
        img[:side, :side] = 220
        Image.fromarray(img).save(tmp_path / f"im{i}.png")
        rows.append({"path": f"im{i}.png", "area": 1.0 if constant else side * side / 64**2})
    pd.DataFrame(rows).to_csv(tmp_path / "data.csv", index=False)
    return tmp_path / "data.csv"


def test_probe_end_to_end_on_a_csv(runner, tmp_path):
    csv = _csv_data(tmp_path)
    out = tmp_path / "run"
    args = [
        "probe",
        "--model",
        "timm:resnet10t",
        "--weights",
        "random",
        "--data",
        f"csv:{csv}",
        "--measure",
        "area",
        "--input-size",
        "64",
        "--reps",
        "3",
        "--regressor",
        "ridge",
        "--layers",
        "layer1.0,layer4.0,pre-softmax",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
    ]
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output + (r.stderr or "")
    prof = json.loads((out / "profile.json").read_text())
    assert prof["model"] == "timm:resnet10t" and prof["measure"] == "area"
    assert [x["layer"] for x in prof["profiles"]["model"]] == [
        "layer1.0",
        "layer4.0",
        "pre-softmax",
    ]
    assert set(prof["profiles"]) == {"model", "random", "shuffled"}
    assert all(len(x["r2"]) == 3 for x in prof["profiles"]["model"])
    assert prof["meta"]["command"].startswith("rcvlab probe --model timm:resnet10t")
    for f in ("profile.csv", "profile.png", "report.html", "skipped.csv"):
        assert (out / f).exists()
    r2 = runner.invoke(main, args)
    assert r2.exit_code == 2 and "--force" in r2.stderr


def test_probe_errors_are_one_line(runner, tmp_path):
    csv = _csv_data(tmp_path, constant=True)
    base = [
        "probe",
        "--model",
        "timm:resnet10t",
        "--weights",
        "random",
        "--data",
        f"csv:{csv}",
        "--input-size",
        "64",
        "--reps",
        "2",
        "--cache-dir",
        "none",
    ]
    r = runner.invoke(main, [*base, "--measure", "area", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "constant" in r.stderr and r.stderr.count("\n") == 1
    r = runner.invoke(main, [*base, "--measure", "aera", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "Did you mean 'area'" in r.stderr
    r = runner.invoke(
        main, [*base, "--measure", "area", "--layers", "layer9", "--out", str(tmp_path / "c")]
    )
    assert r.exit_code == 2 and "Unknown layer 'layer9'" in r.stderr
    r = runner.invoke(main, [*base, "--data", "nope:x", "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and r.stderr.startswith("error:")


@pytest.mark.slow
def test_probe_on_tiny_scaleset(runner, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(
        main,
        [
            "probe",
            "--model",
            "efficientnet_lite0",
            "--weights",
            "random",
            "--data",
            "scaleset:cat,coffee",
            "--n-per-class",
            "24",
            "--input-size",
            "64",
            "--reps",
            "2",
            "--layers",
            "stem,block4a,head",
            "--cache-dir",
            "none",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output + (r.stderr or "")
    prof = json.loads((out / "profile.json").read_text())
    assert prof["data"]["n_images"] == 48 and prof["data"]["classes"] == ["cat", "coffee"]
    assert all(len(x["r2"]) == 4 for x in prof["profiles"]["model"])  # 2 classes x 2 reps


def test_prune_command_from_profile(runner, tmp_path):
    prof = {
        "model": "resnet50",
        "weights": "random",
        "best_layer": "add15",
        "measure": "m",
        "profiles": {
            "model": [
                {
                    "layer": "add15",
                    "dim": 2048,
                    "r2": [0.5],
                    "r2_mean": 0.5,
                    "r2_std": 0.0,
                    "r2_ci95": [0.5, 0.5],
                    "r2_norm_mean": 0.6,
                }
            ]
        },
    }
    (tmp_path / "profile.json").write_text(json.dumps(prof))
    out = tmp_path / "pruned.pt"
    r = runner.invoke(
        main, ["prune", "--from-profile", str(tmp_path / "profile.json"), "--out", str(out)]
    )
    assert r.exit_code == 0, r.output + (r.stderr or "")
    assert "resnet50 pruned at add15: 19,045,440 of 23,508,032" in r.output and out.exists()
    r = runner.invoke(
        main,
        [
            "prune",
            "--model",
            "resnet50",
            "--weights",
            "random",
            "--at",
            "layer3.2.conv1",
            "--out",
            str(tmp_path / "x.pt"),
        ],
    )
    assert r.exit_code == 2 and "inside" in r.stderr and r.stderr.count("\n") == 1
    r = runner.invoke(
        main, ["prune", "--from-profile", str(tmp_path / "profile.json"), "--out", str(out)]
    )
    assert r.exit_code == 2 and "--force" in r.stderr


def test_probe_registered_measure_from_masks(runner, tmp_path):
    from skimage.draw import disk

    rng = np.random.default_rng(1)
    rows = []
    for i in range(24):
        radius = int(rng.integers(3, 12))
        img = np.full((64, 64, 3), 230, np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        rr, cc = disk((32, 32), radius)
        img[rr, cc] = (90, 40, 140)
        mask[rr, cc] = 255
        Image.fromarray(img).save(tmp_path / f"p{i}.png")
        Image.fromarray(mask).save(tmp_path / f"p{i}_mask.png")
        rows.append({"path": f"p{i}.png", "mask": f"p{i}_mask.png" if i != 5 else "gone.png"})
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "run"
    r = runner.invoke(
        main,
        [
            "probe",
            "--model",
            "timm:resnet10t",
            "--weights",
            "random",
            "--data",
            f"csv:{tmp_path / 'd.csv'}",
            "--measure",
            "nuclei_area",
            "--input-size",
            "64",
            "--reps",
            "2",
            "--baselines",
            "shuffled",
            "--layers",
            "layer1.0",
            "--cache-dir",
            "none",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output + (r.stderr or "")
    prof = json.loads((out / "profile.json").read_text())
    assert prof["measure"] == "nuclei_area" and prof["data"]["n_excluded_nan"] == 1
    assert "gone.png" in (out / "skipped.csv").read_text()


def test_transfer_command_on_a_csv(runner, tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for s in range(6):
        for mag, radius in (("10X", 3), ("20X", 6), ("40X", 12)):
            for k in range(3):
                img = np.full((32, 32, 3), 220, np.uint8)
                yy, xx = np.mgrid[:32, :32]
                inside = (yy - 16) ** 2 + (xx - 16) ** 2 <= radius**2
                img[inside] = (60, 30, 90)
                name = f"s{s}_{mag}_{k}.png"
                Image.fromarray(img).save(tmp_path / name)
                rows.append(
                    {
                        "path": name,
                        "class": mag,
                        "group": f"slide{s}",
                        "nuclei_area": float(inside.sum() + rng.normal(0, 1)),
                    }
                )
    pd.DataFrame(rows).to_csv(tmp_path / "p.csv", index=False)
    out = tmp_path / "t"
    r = runner.invoke(
        main,
        [
            "transfer",
            "--data",
            f"csv:{tmp_path / 'p.csv'}",
            "--model",
            "timm:resnet10t",
            "--weights",
            "random",
            "--input-size",
            "32",
            "--variants",
            "pretrained,pruned:layer1.0",
            "--seeds",
            "3",
            "--epochs",
            "3",
            "--cache-dir",
            "none",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output + (r.stderr or "")
    res = json.loads((out / "transfer.json").read_text())
    assert set(res["class_mean_area"]) == {"10X", "20X", "40X"}
    assert len(res["runs"]) == 6 and "pruned_vs_pretrained" in res["wilcoxon"]
    for f in ("transfer.csv", "summary.md", "transfer.png", "heads.pt"):
        assert (out / f).exists()


def test_bad_profile_file_is_one_line(runner, tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    for path in (str(bad), str(tmp_path / "missing.json")):
        r = runner.invoke(main, ["prune", "--from-profile", path, "--out", str(tmp_path / "x.pt")])
        assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "profile" in r.stderr


def test_corrected_gap_says_which_layers_were_not_probed(runner, data, tmp_path):
    out = tmp_path / "cg"
    args = [
        "probe",
        "--model",
        "mobilenet_v2",
        "--weights",
        "random",
        "--input-size",
        "64",
        "--data",
        data,
        "--measure",
        "area",
        "--reps",
        "2",
        "--baselines",
        "none",
        "--pooling",
        "corrected-gap",
        "--layers",
        "features.2,features.14",
        "--cache-dir",
        "none",
        "--out",
        str(out),
    ]
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output + (r.stderr or "")
    assert "corrected GAP: no position free of padding in features.14 at 64 px" in r.output
    assert json.loads((out / "profile.json").read_text())["extra"]["no_positions"] == [
        "features.14"
    ]


@pytest.mark.parametrize("command", ["sparsity", "relevance"])
def test_strict_stops_the_one_layer_analyses_at_an_unreadable_image(runner, tmp_path, command):
    csv = _csv_data(tmp_path, n=24)
    (tmp_path / "im3.png").write_bytes(b"not a png")
    frame = pd.read_csv(csv)
    frame["class"] = ["a", "b"] * 12
    frame.to_csv(csv, index=False)
    extra = ["--train-class", "a"] if command == "sparsity" else ["--target-class", "1"]
    args = [
        command,
        "--model",
        "mobilenet_v2",
        "--weights",
        "random",
        "--input-size",
        "64",
        "--data",
        f"csv:{csv}",
        "--layer",
        "features.4",
        "--measure",
        "area",
        *extra,
    ]
    if command == "sparsity":
        args += ["--cache-dir", "none", "--alphas", "0,0.01", "--reps", "2"]
    r = runner.invoke(main, [*args, "--strict", "--out", str(tmp_path / "strict")])
    assert r.exit_code == 2 and "im3.png" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = runner.invoke(main, [*args, "--out", str(tmp_path / "lenient")])
    assert r.exit_code == 0, r.output + (r.stderr or "")
    assert "im3.png" in (tmp_path / "lenient" / "skipped.csv").read_text()
