"""The demo's encoding section reuses the profile's features and writes its files."""

import rcvlab.analyses.profile as prof_module
import rcvlab.features.extract as fx
from rcvlab.data import histo as histo_module
from rcvlab.pipelines import HistoChainResult, run_histo_demo
from rcvlab.pipelines.demo import DemoResult, run_demo
from rcvlab.runio import read_run


def test_demo_encoding_section_reads_the_profiles_features(tmp_path, monkeypatch):
    calls = []
    original = fx.extract_features

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(out.n_computed)
        return out

    monkeypatch.setattr(fx, "extract_features", spy)  # one_layer looks it up at call time
    profile_calls = []
    original_profile = prof_module.extract_features

    def profile_spy(*args, **kwargs):
        out = original_profile(*args, **kwargs)
        profile_calls.append(out.n_computed)
        return out

    monkeypatch.setattr(prof_module, "extract_features", profile_spy)
    res = run_demo(
        tmp_path / "demo",
        models=("mobilenet_v2",),
        n_per_class=20,
        reps=2,
        echo=lambda s: None,
        progress=False,
    )
    assert calls == [0]  # no cache_dir given, yet the features are not extracted twice
    # model and twin for the per-class profile; the leave-one-class-out one reads them back
    assert profile_calls[:2] == [80, 80] and profile_calls[2:] == [0, 0]
    loco = res.loco_profiles[0]
    assert loco.split == "leave-one-class-out" and res.profiles[0].split == "per-class"
    assert loco.layers == res.profiles[0].layers
    assert set(loco.profiles) == {"model", "random", "shuffled"}
    assert all(len(s.r2) == 4 for s in loco.profiles["model"])  # one per held-out class
    assert set(res.meta["seconds"]["mobilenet_v2"]) == {"per_class", "leave_one_class_out"}
    for name in ("profile_loco.json", "profile_splits.png"):
        assert (tmp_path / "demo" / name).is_file(), name
    enc = tmp_path / "demo" / "encoding"
    assert (enc / "sparsity" / "cross_class.csv").is_file()
    assert (enc / "consistency" / "consistency.csv").is_file()
    html = (tmp_path / "demo" / "report.html").read_text()
    assert "How scale is encoded" in html and res.profiles[0].best_layer in html
    assert "Per class versus leave-one-class-out" in html
    assert res.sparsity is not None and res.alignment is not None and res.consistency is not None
    again = DemoResult.from_json(tmp_path / "demo" / "demo.json")
    assert again.profiles[0].best_layer == res.profiles[0].best_layer
    assert again.loco_profiles == res.loco_profiles
    assert set(again.to_frame()["split"]) == {"per-class", "leave-one-class-out"}
    assert read_run(tmp_path / "demo")["status"] == "complete"


def test_histo_chain_runs_every_network_with_the_options_given(tmp_path, monkeypatch):
    """demo --histo used only the first network and ignored --reps and --regressor."""
    small = histo_module.histoset
    monkeypatch.setattr(
        histo_module,
        "histoset",
        lambda seed=0: small(source="synthetic", n_slides=6, patches_per_slide_mag=2, seed=seed),
    )
    res = run_histo_demo(
        tmp_path / "h",
        models=("mobilenet_v2", "efficientnet_lite0"),
        n_per_class=12,
        reps=3,
        regressor="ols",
        seeds=2,
        epochs=1,
        echo=lambda s: None,
        progress=False,
    )
    assert [p.model for p in res.profiles] == ["mobilenet_v2", "efficientnet_lite0"]
    for prof, pm, tr in zip(res.profiles, res.pruned, res.transfers, strict=True):
        assert prof.reps == 3 and prof.regressor == "ols"
        assert all(len(s.r2) == 3 * 4 for s in prof.profiles["model"])  # 4 classes x 3 reps
        assert pm["layer"] == prof.best_layer
        assert f"pruned:{prof.best_layer}" in tr.variants and len(tr.runs) == 3 * 2
        sub = tmp_path / "h" / prof.model
        for name in ("profile.json", "pruned.pt", "transfer.json", "predictions.csv"):
            assert (sub / name).is_file(), name
    assert (
        HistoChainResult.from_json(tmp_path / "h" / "histo_chain.json")
        .to_frame()
        .equals(res.to_frame())
    )
    assert read_run(tmp_path / "h")["status"] == "complete"
