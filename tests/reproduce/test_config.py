"""Config loading and validation: every mistake one line, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from rcvlab.errors import RcvlabError
from rcvlab.reproduce import (
    check_inputs,
    check_layers,
    config_text,
    list_configs,
    load_config,
    parse_override,
    reproduce,
)
from rcvlab.reproduce.config import ConfigError

from .conftest import TINY


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    """Validation must fail before any feature is extracted or network trained."""

    def boom(*a, **k):
        raise AssertionError("work started before validation")

    import rcvlab.features.extract as fx

    monkeypatch.setattr(fx, "extract_features", boom)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_packaged_configs_listed_and_shown():
    names = list_configs()
    assert names.get("offline-ci")
    assert "name: offline-ci" in config_text("offline-ci")
    c = load_config("offline-ci")
    assert c.step_ids[0] == "profile"


def test_overrides_applied_before_validation(tiny_yaml):
    c = load_config(
        tiny_yaml,
        overrides={"steps.profile.reps": "3", "networks.net.input_size": 32, "seed": 5},
    )
    assert c.step("profile")["reps"] == 3
    assert c.networks["net"].input_size == 32 and c.seed == 5
    assert c.hash != load_config(tiny_yaml).hash
    assert parse_override("steps.profile.layers=[a, b]") == ("steps.profile.layers", ["a", "b"])
    with pytest.raises(ConfigError, match=r"no step 'profil'.*Did you mean 'profile'"):
        load_config(tiny_yaml, overrides={"steps.profil.reps": 2})


@pytest.mark.parametrize(
    "old, new, match",
    [
        ("seed: 0", "sed: 0", r"^sed: unknown top-level key 'sed'.*Did you mean 'seed'"),
        (
            "    reps: 2\n    regressor",
            "    repz: 2\n    regressor",
            r"^steps\.profile\.repz: unknown key 'repz'.*Did you mean 'reps'",
        ),
        (
            "kind: prune",
            "kind: prunee",
            r"^steps\.prune\.kind: unknown step kind 'prunee'.*'prune'",
        ),
        ("id: sparsity", "id: profile", r"^steps\.profile: duplicate step id"),
        (
            "network: net\n    at",
            "network: nett\n    at",
            r"^steps\.prune\.network: no network 'nett'.*Did you mean 'net'",
        ),
        (
            "data: scale\n    layer:",
            "data: scales\n    layer:",
            r"^steps\.sparsity\.data: no input 'scales'",
        ),
        ("at: step:profile", "at: step:sparsity", r"^steps\.prune\.at: no earlier step 'sparsity'"),
        (
            "reps: 2\n    regressor",
            "reps: two\n    regressor",
            r"^steps\.profile\.reps: expected int, got 'two'",
        ),
        ("kind: histology", "kind: histolgy", r"inputs\.histology\.kind: unknown input kind"),
        ("    train_class: cat\n", "", r"^steps\.sparsity\.train_class: missing"),
        ("  histology:\n", "  slides:\n", r"^inputs\.slides: .*one of imagenet, histology"),
    ],
)
def test_bad_config_is_one_line(tmp_path, old, new, match):
    assert old in TINY
    p = _write(tmp_path, TINY.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert __import__("re").search(match, _one_line(e)), str(e.value)


def test_unknown_packaged_name_did_you_mean():
    with pytest.raises(RcvlabError, match="Did you mean 'offline-ci'") as e:
        load_config("offline-cj")
    _one_line(e)


def test_inputs_checked(tmp_path, tiny_yaml):
    c = load_config(tiny_yaml)
    check_inputs(c, {})  # histology is optional
    with pytest.raises(RcvlabError, match="does not exist") as e:
        check_inputs(c, {"histology": tmp_path / "nowhere"})
    _one_line(e)
    with pytest.raises(RcvlabError, match="no input 'imagenet'") as e:
        check_inputs(c, {"imagenet": tmp_path})
    with pytest.raises(RcvlabError, match="embedded"):
        check_inputs(c, {"scale": tmp_path})
    req = load_config(_write(tmp_path, TINY.replace("required: false", "required: true")))
    with pytest.raises(RcvlabError, match="needs --histology DIR") as e:
        check_inputs(req, {})
    _one_line(e)


def test_unknown_layer_one_line_before_work(tmp_path):
    p = _write(tmp_path, TINY.replace("layer: features.10", "layer: features.100"))
    c = load_config(p)
    with pytest.raises(
        ConfigError, match=r"^steps\.sparsity\.layer: network net .*'features.100'"
    ) as e:
        check_layers(c)
    _one_line(e)
    out = tmp_path / "run"
    with pytest.raises(ConfigError):
        reproduce(c, {}, out, progress=False, echo=lambda s: None)
    assert not out.exists()


def test_missing_data_path_before_work(tmp_path, tiny_yaml):
    c = load_config(tiny_yaml)
    out = tmp_path / "run"
    with pytest.raises(RcvlabError, match="does not exist"):
        reproduce(c, {"histology": tmp_path / "nope"}, out, progress=False)
    assert not out.exists()
