"""The part-3/part-4 commands end to end on small data: files written, errors one line."""

import json

import numpy as np
import pandas as pd
import pytest

from rcvlab.cli import main

NET = ["--model", "mobilenet_v2", "--weights", "random", "--input-size", "64"]


def _ok(r):
    assert r.exit_code == 0, r.output + (r.stderr if r.stderr_bytes else "")


def test_sparsity_alignment_consistency(runner, data, tmp_path):
    cache = ["--cache-dir", str(tmp_path / "cache")]
    common = [*NET, "--data", data, "--layer", "features.4", "--measure", "area", *cache]
    out = tmp_path / "sp"
    r = runner.invoke(
        main,
        [
            "sparsity",
            *common,
            "--train-class",
            "red",
            "--test-class",
            "blue",
            "--alphas",
            "0:0.02:5",
            "--reps",
            "3",
            "--out",
            str(out),
        ],
    )
    _ok(r)
    for f in ("sparsity.csv", "sparsity.json", "sparsity.png", "cross_class.csv", "summary.md"):
        assert (out / f).is_file(), f
    frame = pd.read_csv(out / "sparsity.csv")
    assert sorted(set(frame.test_set)) == ["blue", "same"]
    assert np.allclose(sorted(set(frame.alpha)), np.linspace(0, 0.02, 5))

    out = tmp_path / "al"
    r = runner.invoke(
        main,
        [
            "alignment",
            *common,
            "--train-class",
            "red",
            "--max-dims",
            "20",
            "--alpha",
            "0.01",
            "--out",
            str(out),
        ],
    )
    _ok(r)
    assert "maps for 90 % of the norm" in r.output
    assert {"alignment.csv", "alignment.json", "alignment.png"} <= {p.name for p in out.iterdir()}

    out = tmp_path / "co"
    r = runner.invoke(main, ["consistency", *common, "--reps", "2", "--out", str(out)])
    _ok(r)
    frame = pd.read_csv(out / "consistency.csv")
    assert {"red", "blue"} <= set(frame.a) | set(frame.b)
    assert frame.angle_mean.between(0, 180).all()

    # the run folder exists now: one line, exit 2, nothing overwritten
    before = (out / "consistency.csv").read_bytes()
    r = runner.invoke(main, ["consistency", *common, "--reps", "2", "--out", str(out)])
    assert r.exit_code == 2 and "--force" in r.stderr and r.stderr.strip().count("\n") == 0
    assert (out / "consistency.csv").read_bytes() == before


def test_relevance_and_noise(runner, data, tmp_path):
    out = tmp_path / "rel"
    r = runner.invoke(
        main,
        [
            "relevance",
            *NET,
            "--data",
            data,
            "--layer",
            "features.4",
            "--measure",
            "area",
            "--target-class",
            "3",
            "--reps",
            "2",
            "--out",
            str(out),
        ],
    )
    _ok(r)
    per_image = pd.read_csv(out / "relevance.csv")
    assert len(per_image) == 48 and per_image.sensitivity.notna().all()
    assert "Br" in r.output

    out = tmp_path / "noise"
    r = runner.invoke(
        main,
        [
            "noise-size",
            "--model",
            "mobilenet_v2",
            "--weights",
            "random",
            "--sizes",
            "64:128:32",
            "--train",
            "3",
            "--test",
            "4",
            "--reps",
            "2",
            "--layers",
            "features.2,features.14",
            "--out",
            str(out),
        ],
    )
    _ok(r)
    d = json.loads((out / "noise.json").read_text())
    by = {e["layer"]: e for e in d["layers"]}
    assert by["features.14"]["positions"] == 0 and by["features.14"]["r2_corrected"] is None
    assert by["features.2"]["positions"] > 0 and len(by["features.2"]["r2_corrected"]) == 2
    assert "no positions" in r.output and (out / "noise.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, needle",
    [
        (["sparsity", "--train-class", "green"], "unknown class 'green'"),
        (["sparsity", "--train-class", "red", "--alphas", "0:x"], "--alphas"),
        (["relevance", "--target-class", "5000"], "5000"),
        (["relevance", "--target-class", "1", "--layer", "pre-softmax"], "pre-softmax"),
    ],
)
def test_bad_input_is_one_line(runner, data, tmp_path, args, needle):
    cmd, *rest = args
    layer = [] if "--layer" in rest else ["--layer", "features.4"]
    cache = [] if cmd == "relevance" else ["--cache-dir", "none"]  # relevance reads no cache
    r = runner.invoke(
        main,
        [
            cmd,
            *NET,
            "--data",
            data,
            *layer,
            "--measure",
            "area",
            *rest,
            *cache,
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert r.exit_code == 2, r.output
    assert needle in r.stderr and r.stderr.strip().count("\n") == 0
    assert "Traceback" not in r.output


def test_resize_sweep_command(runner, tmp_path):
    out = tmp_path / "rs"
    r = runner.invoke(
        main,
        [
            "resize-sweep",
            "--model",
            "mobilenet_v2",
            "--weights",
            "random",
            "--data",
            "filled:cat",
            "--n-per-class",
            "3",
            "--sizes",
            "64,96",
            "--interp",
            "nearest,bilinear",
            "--out",
            str(out),
        ],
    )
    _ok(r)
    frame = pd.read_csv(out / "sweep.csv")
    assert sorted(set(frame["size"])) == [64, 96] and set(frame.interp) == {"nearest", "bilinear"}
    assert (frame.p_ci95_low <= frame.p_mean).all() and (frame.p_mean <= frame.p_ci95_high).all()
    assert "peak p" in r.output
    r = runner.invoke(
        main,
        [
            "resize-sweep",
            "--model",
            "inception_v3",
            "--weights",
            "random",
            "--sizes",
            "50:100",
            "--out",
            str(tmp_path / "small"),
        ],
    )
    assert r.exit_code == 2 and "75" in r.stderr and r.stderr.strip().count("\n") == 0


def test_help_lists_the_analysis_commands(runner):
    r = runner.invoke(main, ["--help"])
    for cmd in ("resize-sweep", "noise-size", "sparsity", "alignment", "consistency", "relevance"):
        assert cmd in r.output
