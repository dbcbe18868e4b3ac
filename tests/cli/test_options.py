"""Every command's options are used, and every user mistake is one line (exit 2), nothing lost.

The walk uses click's own introspection (``main.commands``, ``Command.params``): each option a
command declares is either a parameter of its callback that the body reads (checked on the
source), or a shared option that the run reads (checked at run time: the tests set
``RCVLAB_CHECK_OPTIONS=1``, so ``Job.finish`` fails on an option that was never read).
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap

import click
import pytest

from rcvlab.cli import main
from rcvlab.cli_options import OPTIONS

NET = ["--model", "mobilenet_v2", "--weights", "random", "--input-size", "64"]


def _cases(data: str, tmp) -> dict[str, list[list[str]]]:
    """A small valid invocation of every command (several for commands with modes)."""
    cache = ["--cache-dir", str(tmp / "cache")]
    one = [*NET, "--data", data, "--layer", "features.4", "--measure", "area", *cache]
    return {
        "models": [[]],
        "measures": [[]],
        "layers": [["mobilenet_v2", "--input-size", "64"]],
        "probe": [
            [
                *NET,
                "--data",
                data,
                "--measure",
                "area",
                "--reps",
                "2",
                "--layers",
                "features.2,features.4",
                "--min-std",
                "0.01",
                *cache,
                "--out",
                str(tmp / "probe"),
            ],
            [
                *NET,
                "--data",
                data,
                "--measure",
                "area",
                "--split",
                "leave-one-class-out",
                "--layers",
                "features.2,features.4",
                *cache,
                "--out",
                str(tmp / "probe_loco"),
            ],
            [
                "--model",
                "mobilenet_v2",
                "--weights",
                "random,random-xavier",
                "--input-size",
                "64",
                "--data",
                data,
                "--measure",
                "area,glcm_contrast",
                "--layers",
                "features.2",
                "--reps",
                "2",
                "--regressor",
                "ridge",
                "--alpha",
                "1",
                "--test-fraction",
                "0.25",
                "--pooling",
                "max",
                "--split",
                "pooled",
                *cache,
                "--out",
                str(tmp / "probe_weights"),
            ],
        ],
        "prune": [
            [
                "--model",
                "mobilenet_v2",
                "--weights",
                "random",
                "--at",
                "features.4",
                "--out",
                str(tmp / "new_folder" / "p.pt"),
            ],
        ],
        "transfer": [
            [
                *NET,
                "--data",
                data,
                "--measure",
                "area",
                "--variants",
                "pretrained,pruned:features.4",
                "--seeds",
                "2",
                "--epochs",
                "1",
                *cache,
                "--out",
                str(tmp / "transfer"),
            ],
        ],
        "sparsity": [
            [
                *one,
                "--train-class",
                "red",
                "--alphas",
                "0:0.02:3",
                "--reps",
                "2",
                "--out",
                str(tmp / "sparsity"),
            ],
        ],
        "alignment": [[*one, "--train-class", "red", "--out", str(tmp / "alignment")]],
        "consistency": [[*one, "--reps", "2", "--out", str(tmp / "consistency")]],
        "relevance": [
            [
                *NET,
                "--data",
                data,
                "--layer",
                "features.4",
                "--measure",
                "area",
                "--target-class",
                "1",
                "--reps",
                "2",
                "--out",
                str(tmp / "relevance"),
            ],
        ],
        "resize-sweep": [
            [
                "--model",
                "mobilenet_v2",
                "--weights",
                "random",
                "--n-per-class",
                "1",
                "--sizes",
                "64,96",
                "--interp",
                "bilinear",
                "--out",
                str(tmp / "resize"),
            ],
        ],
        "noise-size": [
            [
                "--model",
                "mobilenet_v2",
                "--weights",
                "random",
                "--sizes",
                "64,96",
                "--train",
                "3",
                "--test",
                "3",
                "--reps",
                "2",
                "--layers",
                "features.2",
                "--out",
                str(tmp / "noise"),
            ],
        ],
        "finetune": [
            [
                *NET,
                "--data",
                data,
                "--positive",
                "red",
                "--epochs",
                "1",
                "--lr",
                "0.01",
                "--decay",
                "0.001",
                "--momentum",
                "0.5",
                "--val-fraction",
                "0.34",
                "--no-augment",
                "--channels-last",
                "--batch-size",
                "16",
                "--out",
                str(tmp / "finetune"),
            ],
        ],
        "cam": [
            [
                *NET,
                "--data",
                data,
                "--layer",
                "features.4",
                "--method",
                "gradcam",
                "--target",
                "1",
                "--top",
                "2",
                "--min-prob",
                "0",
                "--compare-weights",
                "random",
                "--out",
                str(tmp / "cam"),
            ],
        ],
        "visualize": [
            [
                *NET,
                "--layer",
                "features.2",
                "--channels",
                "0,3",
                "--steps",
                "2",
                "--size",
                "32",
                "--tv",
                "0.01",
                "--compare-weights",
                "random",
                "--out",
                str(tmp / "visualize"),
            ],
        ],
        "reproduce": [
            [
                "offline-ci",
                "--set",
                "steps.profile.reps=2",
                "--device",
                "cpu",
                *cache,
                "--out",
                str(tmp / "reproduce"),
            ],
            ["offline-ci", "--dry-run", "--force", "--cache-dir", "none"],
            ["--list"],
            ["--show", "offline-ci"],
        ],
        "demo": [
            [
                "--models",
                "mobilenet_v2",
                "--n-per-class",
                "12",
                "--reps",
                "2",
                *cache,
                "--out",
                str(tmp / "demo"),
            ],
        ],
    }


def test_every_command_has_a_case(tmp_path):
    assert sorted(_cases("csv:x", tmp_path)) == sorted(main.commands)


def _shared_names() -> set[str]:
    return {click.Option(list(o.decls)).name for o in OPTIONS.values()}


@pytest.mark.parametrize("name", sorted(main.commands))
def test_own_options_are_read_by_the_body(name):
    cmd = main.commands[name]
    f = inspect.unwrap(cmd.callback)
    fn = ast.parse(textwrap.dedent(inspect.getsource(f))).body[0]
    loads = {
        n.id
        for stmt in fn.body
        for n in ast.walk(stmt)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    sig = inspect.signature(f).parameters
    for p in cmd.params:
        if p.name in sig:
            assert p.name in loads, f"rcvlab {name}: option {p.name!r} is never read"
        else:
            assert p.name in _shared_names(), f"rcvlab {name}: {p.name!r} is nowhere"
            assert any(v.kind is v.VAR_KEYWORD for v in sig.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_runs_and_reads_every_option(runner, data, tmp_path, name):
    for args in _cases(data, tmp_path)[name]:
        r = runner.invoke(main, [name, *args])
        assert r.exit_code == 0, f"{name}: {r.output}{r.stderr}"
        out = next((args[i + 1] for i, a in enumerate(args) if a == "--out"), None)
        if out is not None and name != "prune":
            run = json.loads((tmp_path / out / "run.json").read_text())
            assert run["status"] == "complete" and run["command"].startswith(f"rcvlab {name}")


def _bad_cases(data: str, tmp) -> list[tuple[list[str], str]]:
    a_file = tmp / "a_file.txt"
    a_file.write_text("x")
    other_arch = _efficientnet_weights(tmp)
    probe = ["probe", *NET, "--data", data, "--measure", "area", "--cache-dir", "none"]
    one = [*NET, "--data", data, "--layer", "features.4", "--measure", "area"]
    tr = ["transfer", *NET, "--data", data, "--measure", "area", "--cache-dir", "none"]
    return [
        # unknown names
        (["probe", "--model", "resnet5", "--data", data, "--out", "o"], "resnet50"),
        ([*probe, "--layers", "features.44", "--out", "o"], "features.4"),
        ([*probe[:-4], "--measure", "aera", "--cache-dir", "none", "--out", "o"], "area"),
        (["probe", *NET, "--data", "vocc:/x", "--out", "o"], "vocc"),
        (["layers", "nope_net"], "nope_net"),
        # out-of-range numbers
        ([*probe, "--reps", "0", "--out", "o"], "--reps"),
        ([*probe, "--test-fraction", "1.5", "--out", "o"], "--test-fraction"),
        ([*probe, "--seed", "-1", "--out", "o"], "--seed"),
        ([*probe, "--batch-size", "0", "--out", "o"], "--batch-size"),
        ([*tr, "--epochs", "0", "--out", "o"], "--epochs"),
        ([*tr, "--epochs", "-1", "--out", "o"], "--epochs"),
        ([*tr, "--batch-size", "0", "--out", "o"], "--batch-size"),
        ([*tr, "--variants", "pruned:softmax", "--out", "o"], "softmax"),
        (["noise-size", "--model", "mobilenet_v2", "--sizes", "0:x", "--out", "o"], "0:x"),
        (["sparsity", *one, "--train-class", "red", "--alphas", "0:x", "--out", "o"], "--alphas"),
        ([*probe, "--split", "leave-one-class-out", "--reps", "5", "--out", "o"], "--reps"),
        (["demo", "--models", "nope_net", "--cache-dir", "none", "--out", "o"], "nope_net"),
        # a constant measure, found before any extraction
        ([*probe[:-4], "--measure", "flat", "--cache-dir", "none", "--out", "o"], "constant"),
        # engines and precision, refused before a cluster starts
        ([*probe[:-2], "--cluster", "local:0", "--out", "o"], "local:0"),
        ([*probe[:-2], "--cluster", "lcoal:2", "--out", "o"], "lcoal:2"),
        (
            [*probe[:-2], "--cluster", "local:2", "--scheduler", "tcp://127.0.0.1:1", "--out", "o"],
            "--scheduler",
        ),
        ([*probe[:-2], "--scheduler", "127.0.0.1", "--out", "o"], "127.0.0.1"),
        ([*probe, "--cluster", "local:2", "--out", "o"], "--cache-dir none"),
        ([*probe, "--precision", "fp64", "--out", "o"], "--precision"),
        ([*probe, "--precision", "fp16", "--device", "cpu", "--out", "o"], "fp16"),
        # devices
        ([*probe, "--device", "bogus", "--out", "o"], "bogus"),
        ([*probe, "--device", "cuda:7", "--out", "o"], "cuda:7"),
        # unreadable files and unwritable places
        (["probe", *NET, "--data", f"csv:{tmp / 'missing.csv'}", "--out", "o"], "missing.csv"),
        (["prune", "--from-profile", str(a_file), "--out", "p.pt"], "a_file.txt"),
        ([*probe, "--out", str(a_file / "sub")], "a_file.txt"),
        ([*probe[:-2], "--cache-dir", str(a_file / "cache"), "--out", "o"], "a_file.txt"),
        (["prune", *NET[:4], "--at", "features.4", "--out", str(a_file / "p.pt")], "a_file.txt"),
        # part 5: finetune, cam, visualize, probe across weights
        (
            [*probe, "--weights", "random,imagenet", "--baselines", "random", "--out", "o"],
            "--baselines",
        ),
        ([*probe, "--weights", "random,random-xavir", "--out", "o"], "random-xavir"),
        (["finetune", *NET, "--data", data, "--class", "red", "--out", "o"], "red"),
        (["finetune", *NET, "--data", data, "--positive", "tumour", "--out", "o"], "tumour"),
        (
            ["cam", *NET, "--data", data, "--target", "1", "--layer", "features.44", "--out", "o"],
            "features.4",
        ),
        (["cam", *NET, "--data", data, "--target", "1000", "--out", "o"], "1000"),
        (["visualize", *NET, "--layer", "features.2", "--channels", "0,999", "--out", "o"], "999"),
        (["visualize", *NET, "--layer", "features.2", "--channels", "9:x", "--out", "o"], "9:x"),
        (
            ["cam", *NET[:2], "--weights", str(other_arch), "--data", data, "--out", "o"],
            "efficientnet_lite0",
        ),
        # reproduce: unknown config, bad override, missing input, --list with a config
        (["reproduce", "make2012", "--out", "o"], "make2021"),
        (["reproduce", "offline-ci", "--set", "steps.profle.reps=2", "--out", "o"], "profile"),
        (["reproduce", "make2021", "--out", "o"], "--imagenet"),
        (["reproduce", "make2021", "--imagenet", str(tmp / "nope"), "--out", "o"], "nope"),
        (["reproduce", "offline-ci", "--list"], "--list"),
        # an option that does not exist for the command (relevance reads no feature cache)
        (
            ["relevance", *one, "--target-class", "1", "--cache-dir", "x", "--out", "o"],
            "--cache-dir",
        ),
    ]


def _efficientnet_weights(tmp) -> str:
    """A weights file of another architecture (efficientnet_lite0, random weights)."""
    from rcvlab.models import load_model, save_weights

    path = tmp / "effnet.pt"
    if not path.exists():
        save_weights(load_model("efficientnet_lite0", "random"), path)
    return str(path)


N_BAD = 47


@pytest.mark.parametrize("i", range(N_BAD))
def test_bad_input_is_one_line_and_leaves_nothing(runner, data, tmp_path, monkeypatch, i):
    monkeypatch.chdir(tmp_path)
    cases = _bad_cases(data, tmp_path)
    assert len(cases) == N_BAD
    args, needle = cases[i]
    r = runner.invoke(main, args)
    assert r.exit_code == 2, f"{args}: {r.output}{r.stderr}"
    assert "Traceback" not in r.output + r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert needle in r.stderr, r.stderr
    assert not (tmp_path / "o").exists(), "a failed command left a run folder"
