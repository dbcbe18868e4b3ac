"""The demo's encoding section reuses the profile's features and writes its files."""

import rcvlab.features.extract as fx
from rcvlab.analyses.demo import run_demo


def test_demo_encoding_section_reads_the_profiles_features(tmp_path, monkeypatch):
    calls = []
    original = fx.extract_features

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(out.n_computed)
        return out

    monkeypatch.setattr(fx, "extract_features", spy)  # one_layer looks it up at call time
    res = run_demo(
        tmp_path / "demo",
        models=("mobilenet_v2",),
        n_per_class=20,
        reps=2,
        echo=lambda s: None,
        progress=False,
    )
    assert calls == [0]  # no cache_dir given, yet the features are not extracted twice
    enc = tmp_path / "demo" / "encoding"
    assert (enc / "sparsity" / "cross_class.csv").is_file()
    assert (enc / "consistency" / "consistency.csv").is_file()
    html = (tmp_path / "demo" / "report.html").read_text()
    assert "How scale is encoded" in html and res[0].best_layer in html
