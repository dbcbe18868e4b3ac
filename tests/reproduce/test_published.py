"""The published numbers (typed here from METHOD.md, not from the csv) and the comparison."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from rcvlab.analyses.consistency import ConsistencyResult, PairAngles
from rcvlab.analyses.finetune import HISTORY_KEYS, FinetuneResult
from rcvlab.analyses.sparsity import SparsityResult
from rcvlab.analyses.transfer import TransferResult, TransferRun, TransferTestSet
from rcvlab.analyses.weights import InsampleScore, WeightsComparison
from rcvlab.errors import UnknownNameError
from rcvlab.probe.result import LayerScore, ProfileResult
from rcvlab.reproduce.published import (
    COMPARE_COLUMNS,
    PUBLISHED_COLUMNS,
    compare,
    expand_keys,
    find_ours,
    ours_for,
    published_numbers,
    verdict,
)

# (key, value, std) typed from /work/shared/METHOD.md by hand; NaN = no std published.
NAN = math.nan
BY_HAND = [
    ("000/tableA1/mixed0/imagenet", -0.72, 0.47),
    ("000/tableA1/mixed1/random", -331, 1082),
    ("000/tableA1/mixed2/shuffled", -20.6, 11.0),
    ("000/tableA1/mixed8/imagenet", 0.84, 0.01),
    ("000/tableA1/mixed8/random", -0.06, 0.19),
    ("000/tableA1/mixed9/random", 0.06, 0.16),
    ("000/tableA1/mixed10/shuffled", -1.24, 0.45),
    ("000/tableA1/pre-softmax/shuffled", -3.90, 0.86),
    ("000/tableA1/softmax/imagenet", -3861, 5729),
    ("000/tableA1/softmax/shuffled", -11077, 26421),
    ("000/peak/inception_v3/imagenet", 0.85, NAN),
    ("000/peak/inception_v3/shuffled", -0.58, NAN),
    ("000/peak/resnet50/imagenet", 0.76, NAN),
    ("000/peak/resnet50/random", 0.17, NAN),
    ("000/peak/resnet50/shuffled", -1.11, NAN),
    ("000/table2/inception_v3/pretrained/kappa", 0.435, 0.02),
    ("000/table2/inception_v3/pruned/kappa", 0.571, 0.05),
    ("000/table2/resnet50/pretrained/kappa", 0.610, 0.03),
    ("000/table2/resnet50/pruned/kappa", 0.623, 0.04),
    ("000/table2/inception_v3/pretrained/mae", 81.85, 11.08),
    ("000/table2/inception_v3/scratch/mae", 82.30, 17.92),
    ("000/table2/inception_v3/pruned/mae", 54.93, 4.32),
    ("000/table2/resnet50/pretrained/mae", 70.08, 12.49),
    ("000/table2/resnet50/scratch/mae", 95.66, 21.39),
    ("000/table2/resnet50/pruned/mae", 54.76, 3.10),
    ("000/sec5/inception_v3/param_reduction", 51, NAN),
    ("000/sec5/resnet50/param_reduction", 19, NAN),
    ("000/sec3.2/n_images/n01608432", 406, NAN),
    ("000/notebook/class_mean_area/30X", 489.98, NAN),
    ("001/fig3/plain/r2", 0.874, NAN),
    ("001/fig3/lasso/nonzero", 40, NAN),
    ("001/fig3/lasso/r2", 0.839, NAN),
    ("001/table1/kite/r2", 0.745, NAN),
    ("001/table1/racing_car/r2", 0.560, NAN),
    ("001/table2/albatross-albatross/plain/angle", 67.7, NAN),
    ("001/table2/albatross-albatross/lasso/cos", 0.66, NAN),
    ("001/table2/albatross-kite/plain/cos", 0.315, NAN),
    ("001/table2/albatross-racing_car/lasso/angle", 76.9, NAN),
    ("004/fig3/random-xavier/asm/conv2d_3", 0.867, 0.02),
    ("004/fig3/pretrained/contrast/mixed6", 0.990, 0.02),
    ("004/fig3/finetuned/correlation/mixed7", 0.987, 0.02),
    ("004/fig3/finetuned/asm/mixed0", 0.970, 0.02),
    ("004/sec2/val_accuracy", 0.87, NAN),
    ("004/sec2/val_auc", 0.97, NAN),
]


@pytest.fixture(scope="module")
def table():
    return published_numbers().set_index("key")


@pytest.mark.parametrize(("key", "value", "std"), BY_HAND)
def test_sample_matches_method_md(table, key, value, std):
    row = table.loc[key]
    assert row["value"] == pytest.approx(value)
    if math.isnan(std):
        assert math.isnan(row["std"])
    else:
        assert row["std"] == pytest.approx(std)


def test_every_row_has_a_source_and_the_counts_are_complete(table):
    df = published_numbers()
    assert tuple(df.columns) == PUBLISHED_COLUMNS
    assert df["key"].is_unique
    for col in ("paper", "source", "row", "column", "unit"):
        assert (df[col].str.strip() != "").all(), col
    assert df["source"].str.startswith(("paper ", "authors'")).all()
    assert np.isfinite(df["value"]).all()
    assert (df.loc[df["std"].notna(), "std"] > 0).all()
    counts = df["key"].str.split("/").str[:2].str.join("/").value_counts()
    assert counts["000/tableA1"] == 13 * 3
    assert counts["004/fig3"] == 3 * 3 * 6
    assert counts["001/table2"] == 12
    # an unknown std is always explained
    assert (df.loc[df["std"].isna(), "note"].str.len() > 10).all()
    fig3 = df[df["key"].str.startswith("004/fig3/")]
    # the paper states only the range of its standard errors: the upper bound is the spread
    assert (fig3["std"] == 0.02).all() and fig3["note"].str.contains("0.001-0.02").all()


def test_expand_keys_globs_and_unknown():
    keys = expand_keys(["000/tableA1/mixed8/*", "000/tableA1/mixed8/random"])
    assert keys == [f"000/tableA1/mixed8/{c}" for c in ("imagenet", "random", "shuffled")]
    with pytest.raises(UnknownNameError, match="000/tableA1/mixed8/imagenet"):
        expand_keys(["000/tableA1/mixed8/imagenett"])


@pytest.mark.parametrize(
    ("ours", "pub", "std", "want"),
    [
        (0.86, 0.84, 0.01, "within"),  # exactly 2 std
        (0.8601, 0.84, 0.01, "outside"),
        (0.5, 0.84, NAN, "n/a"),
        (NAN, 0.84, 0.01, "n/a"),
    ],
)
def test_verdict(ours, pub, std, want):
    assert verdict(ours, pub, std) == want


# -- hand-made results ----------------------------------------------------------------------


def _score(layer: str, r2: list[float], by_class: dict[str, list[float]] | None = None):
    a = np.asarray(r2, dtype=float)
    return LayerScore(
        layer=layer,
        dim=4,
        r2=tuple(a),
        r2_mean=float(a.mean()),
        r2_std=float(a.std(ddof=1)),
        r2_ci95=(0.0, 0.0),
        r2_norm_mean=float(np.exp(a - 1).mean()),
        r2_by_class={k: tuple(v) for k, v in (by_class or {}).items()},
    )


def _profile(model: str, model_r2: dict, random_r2: dict, shuffled_r2: dict, by_class=None):
    def scores(d, by_class=None):
        return tuple(_score(k, v, (by_class or {}).get(k)) for k, v in d.items())

    return ProfileResult(
        profiles={
            "model": scores(model_r2, by_class),
            "random": scores(random_r2),
            "shuffled": scores(shuffled_r2),
        },
        model=model,
        data={"n_by_class": {"n02058221": 441, "kite": 400}},
    )


def _transfer(model: str, rows: list[tuple[str, int, float, float]]) -> TransferResult:
    runs = tuple(
        TransferRun(
            variant=v,
            seed=s,
            layer="x",
            dim=4,
            mae=mae,
            mae_by_class={"5X": mae + 1.0},
            accuracy=0.5,
            kappa=kappa,
            kappa_quadratic=kappa,
            best_epoch=1,
        )
        for v, s, mae, kappa in rows
    )
    return TransferResult(
        runs=runs,
        class_mean_area={"5X": 21.0, "30X": 500.0},
        wilcoxon={},
        test=TransferTestSet(),
        model=model,
        weights="imagenet",
        mode="linear",
        measure="nuclei_area",
        epochs=5,
        lr=1e-4,
        batch_size=32,
        fractions=(0.6, 0.2, 0.2),
        data={},
        meta={},
    )


def _sparsity() -> SparsityResult:
    alphas = (0.0, 0.001, 0.01)
    r2_test = np.array(
        [
            [[0.87, 0.88], [0.84, 0.83], [0.5, 0.5]],  # same
            [[0.2, 0.2], [0.74, 0.75], [0.6, 0.6]],  # kite
            [[0.1, 0.1], [0.55, 0.57], [0.3, 0.3]],  # racing car
        ]
    )
    return SparsityResult(
        alphas=alphas,
        test_sets=("same", "n01608432", "racing car"),
        n_nonzero=np.array([[1280, 1280], [38, 42], [5, 7]]),
        r2_train=np.ones((3, 2)),
        r2_test=r2_test,
        selection_counts=np.zeros((3, 8), dtype=np.int64),
        n_train=220,
        n_test={"same": 220, "n01608432": 220, "racing car": 220},
        dim=8,
        reps=2,
    )


def _consistency() -> ConsistencyResult:
    def pair(b, kind, reg, angles, coss):
        return PairAngles(
            a="n02058221",
            b=b,
            kind=kind,
            regressor=reg,
            alpha=None if reg == "ols" else 0.001,
            angles=tuple(angles),
            cosines=tuple(coss),
        )

    return ConsistencyResult(
        pairs=(
            pair("n02058221", "same", "ols", [66.0, 69.0], [0.40, 0.42]),
            pair("n02058221", "same", "lasso", [46.0, 47.0], [0.65, 0.67]),
            pair("kite", "cross", "ols", [72.0, 73.0], [0.31, 0.32]),
            pair("n02058221 (shuffled)", "shuffled", "ols", [89.0, 91.0], [0.01, -0.01]),
        ),
        classes=("n02058221", "kite"),
        n_per_class={"n02058221": 440, "kite": 440},
        n_fit={"n02058221": 220, "kite": 220},
        dim=8,
        reps=2,
    )


def _weights() -> WeightsComparison:
    labels, sources = (
        ("random (Xavier)", "pretrained", "finetuned"),
        (
            "random-xavier",
            "imagenet",
            "/runs/ft/model.pt",
        ),
    )
    prof = _profile("inception_v3", {"mixed0": [0.5, 0.6]}, {}, {})
    insample = tuple(
        InsampleScore(lab, "glcm_asm", "mixed0", r2, False, 5, 100, 8)
        for lab, r2 in zip(labels, (0.90, 0.93, 0.97), strict=True)
    )
    return WeightsComparison(
        model="inception_v3",
        labels=labels,
        weights=sources,
        measures=("glcm_asm",),
        layers=("mixed0",),
        profiles=(prof, prof, prof),
        insample=insample,
    )


def _finetune() -> FinetuneResult:
    return FinetuneResult(
        model_name="inception_v3",
        weights="imagenet",
        positive="tumor",
        negative="normal",
        history={k: np.array([0.5]) for k in HISTORY_KEYS},
        best_epoch=1,
        val_accuracy=0.9,
        val_auc=0.95,
        val_ids=("a", "b"),
        val_labels=np.array([0, 1]),
        val_probabilities=np.array([0.2, 0.8]),
        train_ids=("c",),
        meta={},
    )


@pytest.fixture(scope="module")
def results():
    layers = {"mixed8": [0.84, 0.86], "mixed9": [0.5, 0.7]}
    return {
        "profile_albatross": _profile(
            "tiny",
            layers,
            {"mixed8": [-0.5, 0.2], "mixed9": [0.0, 0.1]},
            {"mixed8": [-1.0, -0.9], "mixed9": [-5.0, -4.0]},
            by_class={"mixed8": {"n02058221": [0.84, 0.86]}},
        ),
        "profile_inception_v3": _profile("inception_v3", {"mixed8": [0.8, 0.9]}, {}, {}),
        "rn": _profile("resnet50", {"add15": [0.7, 0.8], "add16": [0.1, 0.2]}, {}, {}),
        "transfer_inception_v3": _transfer(
            "tiny",
            [
                ("pretrained", 0, 80.0, 0.40),
                ("pretrained", 1, 84.0, 0.44),
                ("pruned:mixed8", 0, 70.0, 0.57),
                ("pruned:mixed8", 1, 72.0, 0.57),
            ],
        ),
        "sparsity": _sparsity(),
        "consistency": _consistency(),
        "texture": _weights(),
        "finetune": _finetune(),
    }


def test_ours_for_each_family(results):
    # Table A1 reads the albatross repetitions of the preferred step
    assert ours_for("000/tableA1/mixed8/imagenet", results) == pytest.approx(
        (0.85, np.std([0.84, 0.86], ddof=1))
    )
    assert ours_for("000/tableA1/mixed9/shuffled", results)[0] == pytest.approx(-4.5)
    assert math.isnan(ours_for("000/tableA1/mixed3/imagenet", results)[0])
    # peaks: the best layer of each profile; the resnet50 one found by its model
    assert ours_for("000/peak/resnet50/imagenet", results)[0] == pytest.approx(0.75)
    assert ours_for("000/peak/inception_v3/imagenet", results)[0] == pytest.approx(0.85)
    o = find_ours("000/peak/resnet50/imagenet", results)
    assert o.step == "rn"
    # Table 2: pruned:<layer> is the pruned variant; std over seeds with ddof=1
    assert ours_for("000/table2/inception_v3/pretrained/mae", results) == pytest.approx(
        (82.0, math.sqrt(8.0))
    )
    assert ours_for("000/table2/inception_v3/pruned/kappa", results)[0] == pytest.approx(0.57)
    assert ours_for("000/sec4.4/inception_v3/pruned/mae_5X", results)[0] == pytest.approx(72.0)
    assert math.isnan(ours_for("000/table2/inception_v3/scratch/mae", results)[0])
    assert math.isnan(ours_for("000/table2/resnet50/pruned/mae", results)[0])
    assert ours_for("000/notebook/class_mean_area/30X", results)[0] == pytest.approx(500.0)
    assert ours_for("000/sec3.2/n_images/n02058221", results)[0] == 441
    # paper 001
    assert ours_for("001/fig3/plain/r2", results)[0] == pytest.approx(0.875)
    assert ours_for("001/fig3/lasso/nonzero", results) == pytest.approx(
        (40.0, np.std([38, 42], ddof=1))
    )
    assert ours_for("001/fig3/lasso/r2", results)[0] == pytest.approx(0.835)
    assert ours_for("001/table1/kite/r2", results)[0] == pytest.approx(0.745)
    assert ours_for("001/table1/racing_car/r2", results)[0] == pytest.approx(0.56)
    assert ours_for("001/sec5.1/cross/nonzero", results)[0] == pytest.approx(40.0)
    assert ours_for("001/table2/albatross-albatross/plain/angle", results)[0] == pytest.approx(67.5)
    assert ours_for("001/table2/albatross-albatross/lasso/cos", results)[0] == pytest.approx(0.66)
    assert ours_for("001/table2/albatross-kite/plain/cos", results)[0] == pytest.approx(0.315)
    assert math.isnan(ours_for("001/table2/albatross-kite/lasso/cos", results)[0])
    assert ours_for("001/sec5.2/shuffled/angle", results)[0] == pytest.approx(90.0)
    # paper 004: in-sample R², the finetuned net recognised by its weights file
    assert ours_for("004/fig3/finetuned/asm/mixed0", results)[0] == pytest.approx(0.97)
    assert ours_for("004/fig3/random-xavier/asm/mixed0", results)[0] == pytest.approx(0.90)
    assert math.isnan(ours_for("004/fig3/pretrained/asm/mixed3", results)[0])
    assert ours_for("004/sec2/val_auc", results)[0] == pytest.approx(0.95)
    with pytest.raises(UnknownNameError):
        ours_for("000/tableA1/mixed88/imagenet", results)


def test_compare_verdicts(results):
    config = SimpleNamespace(
        paper="000",
        published=(
            "000/tableA1/mixed8/*",
            "000/table2/inception_v3/*",
            "000/peak/resnet50/imagenet",
        ),
    )
    f = compare(config, results).set_index("key")
    assert tuple(f.reset_index().columns) == COMPARE_COLUMNS
    # 0.85 vs 0.84 ± 0.01: 1 std -> within
    assert f.loc["000/tableA1/mixed8/imagenet", "diff_in_std"] == pytest.approx(1.0)
    assert f.loc["000/tableA1/mixed8/imagenet", "verdict"] == "within"
    # shuffled mixed8: -0.95 vs -0.98 ± 0.27 -> within; random: -0.15 vs -0.06 ± 0.19
    assert f.loc["000/tableA1/mixed8/shuffled", "verdict"] == "within"
    # pruned IV3 MAE 71 vs 54.93 ± 4.32: 3.7 std -> outside
    row = f.loc["000/table2/inception_v3/pruned/mae"]
    assert row["diff_in_std"] == pytest.approx((71.0 - 54.93) / 4.32)
    assert row["verdict"] == "outside"
    assert row["step"] == "transfer_inception_v3"
    # kappa pretrained 0.42 vs 0.435 ± 0.02 -> within
    assert f.loc["000/table2/inception_v3/pretrained/kappa", "verdict"] == "within"
    # ours missing (no scratch variant) -> n/a
    assert f.loc["000/table2/inception_v3/scratch/mae", "verdict"] == "n/a"
    assert f.loc["000/table2/inception_v3/scratch/mae", "step"] == ""
    # std unknown -> n/a with the plain difference
    peak = f.loc["000/peak/resnet50/imagenet"]
    assert peak["verdict"] == "n/a" and peak["diff"] == pytest.approx(0.75 - 0.76)
    assert math.isnan(peak["diff_in_std"])


def test_compare_defaults_to_the_papers_keys(results):
    f = compare(SimpleNamespace(paper="004", published=()), results)
    assert len(f) == 3 * 3 * 6 + 2
    # Figure 3: the spread is the paper's SE bound 0.02, so within means |diff| <= 0.04;
    # the accuracy and AUC have no published spread
    fig3 = f[f["key"].str.startswith("004/fig3/") & f["ours"].notna()]
    assert len(fig3) > 0
    for _, row in fig3.iterrows():
        expect = "within" if abs(row["ours"] - row["published"]) <= 0.04 else "outside"
        assert row["verdict"] == expect, row["key"]
    assert set(f[f["key"].str.startswith("004/sec2/")]["verdict"]) == {"n/a"}
    assert f.set_index("key").loc["004/sec2/val_accuracy", "diff"] == pytest.approx(0.03)
