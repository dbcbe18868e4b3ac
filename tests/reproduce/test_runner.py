"""The runner: steps in order, resume without recomputing, dry run writes nothing."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torchvision.models import MobileNetV2

from rcvlab.reproduce import ReproduceResult, load_config, reproduce, step_results
from rcvlab.reproduce import steps as steps_mod
from rcvlab.runio import read_run


class _Passes:
    """Images through any MobileNetV2 (a global forward hook)."""

    def __init__(self) -> None:
        self.n = 0

    def __enter__(self) -> _Passes:
        def hook(module, args, _out):
            if isinstance(module, MobileNetV2):
                self.n += int(args[0].shape[0])

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def _run(config, out):
    return reproduce(config, {}, out, progress=False, echo=lambda s: None)


@pytest.mark.slow
def test_killed_after_second_step_reruns_only_the_rest(tmp_path, tiny_yaml, monkeypatch):
    config = load_config(tiny_yaml)
    full_out, out = tmp_path / "full", tmp_path / "resumed"
    with _Passes() as full:
        ref = _run(config, full_out)
    assert [s.status for s in ref.steps] == ["ran", "ran", "ran"]

    kind = steps_mod.STEP_KINDS["sparsity"]

    def killed(ctx, step):
        raise KeyboardInterrupt

    monkeypatch.setitem(steps_mod.STEP_KINDS, "sparsity", dataclasses.replace(kind, run=killed))
    with _Passes() as first, pytest.raises(KeyboardInterrupt):
        _run(config, out)
    assert read_run(out)["status"] == "running"
    assert read_run(out / "steps" / "prune")["status"] == "complete"
    monkeypatch.setitem(steps_mod.STEP_KINDS, "sparsity", kind)

    with _Passes() as second:
        res = _run(config, out)
    assert [s.status for s in res.steps] == ["loaded", "loaded", "ran"]
    # nothing of the first two steps is recomputed: the rerun costs the third step alone
    assert first.n > 0 and second.n > 0
    assert first.n + second.n == full.n
    a, b = step_results(full_out, ref), step_results(out, res)
    for sid in ("profile", "prune", "sparsity"):
        ja, jb = json.loads(a[sid].to_json()), json.loads(b[sid].to_json())
        ja.pop("meta", None), jb.pop("meta", None)
        assert ja == jb, sid
    again = ReproduceResult.from_json(out / "reproduce.json")
    assert [s.status for s in again.steps] == ["loaded", "loaded", "ran"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config_hash"] == config.hash and manifest["data_fingerprints"]
    assert read_run(out)["status"] == "complete"


def test_dry_run_prints_steps_and_writes_nothing(tmp_path, tiny_yaml, monkeypatch):
    import rcvlab.features.extract as fx

    monkeypatch.setattr(fx, "extract_features", lambda *a, **k: pytest.fail("extracted"))
    lines: list[str] = []
    out = tmp_path / "run"
    res = reproduce(load_config(tiny_yaml), {}, out, dry_run=True, echo=lines.append)
    assert not out.exists()
    assert [s.status for s in res.steps] == ["planned"] * 3
    text = "\n".join(lines)
    for sid in ("profile", "prune", "sparsity"):
        assert sid in text
    # 40 images; the profile has no random baseline -> one pass each
    assert res.steps[0].forward_passes == 40
    assert "reads scale" in text and "forward passes" in text


def test_another_config_in_an_interrupted_folder_is_refused(tmp_path, tiny_yaml):
    from rcvlab.errors import OutputExistsError
    from rcvlab.runio import prepare_out

    prepare_out(tmp_path / "run", command="rcvlab reproduce other (config 0)")
    (tmp_path / "run" / "x").write_text("")
    with pytest.raises(OutputExistsError):
        _run(load_config(tiny_yaml), tmp_path / "run")


@pytest.mark.slow
def test_a_changed_option_reruns_that_step_and_the_later_ones(tmp_path, tiny_yaml):
    """A rerun with --set on an interrupted/forced folder must not reuse steps made with
    other options: the changed step and every later one run again, earlier ones load."""
    out = tmp_path / "run"
    _run(load_config(tiny_yaml), out)
    changed = load_config(tiny_yaml, overrides={"steps.prune.at": "features.4"})
    lines: list[str] = []
    res = reproduce(changed, {}, out, force=True, progress=False, echo=lines.append)
    assert [s.status for s in res.steps] == ["ran", "ran", "ran"]  # force on a finished run
    # an interrupted run of the same config, then one option changed: profile loads,
    # prune (changed) and sparsity (after it) run again
    (out / "run.json").write_text((out / "run.json").read_text().replace('"complete"', '"running"'))
    again = load_config(tiny_yaml, overrides={"steps.prune.at": "features.10"})
    lines.clear()
    res = reproduce(again, {}, out, force=True, progress=False, echo=lines.append)
    assert [s.status for s in res.steps] == ["loaded", "ran", "ran"]
    assert any("changed" in line for line in lines)
    assert step_results(out, res)["prune"].layer == "features.10"


def test_list_valued_input_options_are_accepted(tmp_path):
    """An input's open_data options may hold lists (they key the data cache as JSON)."""
    from rcvlab.reproduce.config import load_config as load
    from rcvlab.reproduce.steps import StepContext

    text = tmp_path / "c.yaml"
    text.write_text(
        "name: c\npaper: t\ntitle: t\ninputs:\n  s:\n    kind: embedded\n    data: scaleset\n"
        "    n_per_class: 10\n    options: {size: 32, r_range: [0.1, 0.9]}\nnetworks:\n"
        "  n: {model: mobilenet_v2, weights: random, input_size: 32}\nsteps:\n"
        "  - {id: p, kind: profile, network: n, data: s, layers: [features.1], reps: 2}\n"
    )
    cfg = load(text)
    ctx = StepContext(cfg, {}, tmp_path / "o")
    data = ctx.data(cfg.step("p"))
    assert len(data) == 40 and ctx.data(cfg.step("p")) is data
