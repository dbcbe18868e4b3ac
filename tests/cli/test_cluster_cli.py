"""`--cluster local:N` on the command line: the run equals the one-process run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rcvlab.cli import main

NET = ["--model", "mobilenet_v2", "--weights", "random", "--input-size", "64"]

pytest.importorskip("distributed")


@pytest.mark.slow
def test_probe_on_a_local_cluster_equals_the_serial_run(runner, data, tmp_path):
    """The cluster's run fills the cache (its workers extract) and fits on the workers; the
    serial run reads the same features from the cache, so both must give equal profiles."""
    args = [
        "probe",
        *NET,
        "--data",
        data,
        "--measure",
        "area",
        "--reps",
        "3",
        "--layers",
        "features.2,features.4,features.7",
        "--regressor",
        "ridge",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    r = runner.invoke(main, [*args, "--cluster", "local:2", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output + r.stderr
    run = json.loads((tmp_path / "c" / "run.json").read_text())
    assert run["status"] == "complete"
    assert "--cluster local:2" in run["command"]
    r = runner.invoke(main, [*args, "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output + r.stderr

    def r2(folder):
        prof = json.loads((tmp_path / folder / "profile.json").read_text())
        return {
            (kind, s["layer"]): s["r2"] for kind, scores in prof["profiles"].items() for s in scores
        }

    a, b = r2("c"), r2("s")
    assert a.keys() == b.keys() and len(a) == 9  # model, random, shuffled x 3 layers
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-12)
