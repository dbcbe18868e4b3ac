"""The ``rcvlab`` command line: thin wrappers around the Python API."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
import numpy as np

from rcvlab import __version__
from rcvlab.errors import RcvlabError

DEFAULT_CACHE = "~/.cache/rcvlab/features"


def _command_line() -> str:
    """The command as typed: its path and every option given on the command line."""
    ctx = click.get_current_context()
    parts = ["rcvlab", *ctx.command_path.split()[1:]]
    for p in ctx.command.params:
        if ctx.get_parameter_source(p.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[p.name]
        flag = max(p.opts, key=len) if isinstance(p, click.Option) else ""
        if isinstance(p, click.Option) and p.is_flag:
            parts.append(flag if value else (p.secondary_opts or [flag])[0])
        elif flag:
            parts += [flag, shlex.quote(str(value))]
        else:
            parts.append(shlex.quote(str(value)))
    return " ".join(parts)


def _friendly(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turn rcvlab's own errors into one stderr line (exit 2) and Ctrl-C into a resume hint."""

    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except RcvlabError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo(
                "interrupted: features computed so far are cached; rerun the same "
                "command to resume.",
                err=True,
            )
            sys.exit(130)

    return wrapper


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _cache_dir(value: str | None) -> str | None:
    import os

    if value in ("none", "off", ""):
        return None
    return os.path.expanduser(value or os.environ.get("RCVLAB_CACHE", DEFAULT_CACHE))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rcvlab")
def main() -> None:
    """rcvlab: where inside a pretrained CNN is a continuous concept linearly encoded?"""


@main.command()
@_friendly
def models() -> None:
    """List the models rcvlab knows by name."""
    from rcvlab.models import available_models

    for name, desc in available_models().items():
        click.echo(f"{name:20s} {desc}")


@main.command("measures")
@_friendly
def measures_cmd() -> None:
    """List the concept measures rcvlab computes from images or nuclei masks."""
    from rcvlab.measures import MEASURES

    for name, spec in MEASURES.items():
        click.echo(f"{name:22s} [{spec.needs}] {spec.description}")
    click.echo(
        "Any numeric column of a CSV manifest, and scale_ratio[_sqrt] of VOC/scaleset data, "
        "are measures too."
    )


@main.command()
@click.argument("model")
@click.option(
    "--input-size", type=int, default=None, help="Square input size (default: the model's)."
)
@_friendly
def layers(model: str, input_size: int | None) -> None:
    """List MODEL's probe-able layers with their feature dimension."""
    from rcvlab.features import layer_dims
    from rcvlab.models import load_model

    m = load_model(model, "random", input_size=input_size)
    dims = layer_dims(m)
    click.echo(f"{'layer':14s} {'dim':>6s}  {'module':22s} note")
    for s in m.layer_specs:
        kind = "" if s.kind == "output" else f"[{s.kind}] "
        click.echo(f"{s.name:14s} {dims[s.name]:6d}  {s.module:22s} {kind}{s.note}")
    click.echo(
        f"input {m.input_size}x{m.input_size}; any dotted module path of the network is "
        "accepted as a layer too (its output, pooled)."
    )


def _common_probe_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option(
            "--measure",
            default="scale_ratio",
            show_default=True,
            help="Concept measure: scale_ratio[_sqrt], a CSV column, or one of `rcvlab measures`.",
        ),
        click.option(
            "--regressor",
            type=click.Choice(["ols", "ridge", "lasso"]),
            default="ols",
            show_default=True,
        ),
        click.option(
            "--alpha",
            type=float,
            default=None,
            help="Ridge/Lasso penalty (scikit-learn's convention); ridge without it "
            "chooses alpha by leave-one-out on the training split.",
        ),
        click.option(
            "--reps",
            type=int,
            default=10,
            show_default=True,
            help="Repeated random splits (25 in paper 000).",
        ),
        click.option("--test-fraction", type=float, default=0.3, show_default=True),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True),
        click.option("--batch-size", type=int, default=32, show_default=True),
        click.option(
            "--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if present)."
        ),
        click.option(
            "--cache-dir",
            default=None,
            help=f"Feature cache (default $RCVLAB_CACHE or {DEFAULT_CACHE}; 'none' to disable).",
        ),
        click.option("--force", is_flag=True, help="Overwrite files in an existing --out folder."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@main.command()
@click.option("--model", required=True, help="Registry name, or timm:NAME (see `rcvlab models`).")
@click.option(
    "--weights",
    default="imagenet",
    show_default=True,
    help="imagenet, random, or a state-dict file.",
)
@click.option(
    "--data",
    "data_spec",
    required=True,
    help="voc:DIR, imagenet:DIR, csv:FILE or scaleset[:CLASS,...].",
)
@click.option("--class", "cls", default=None, help="Keep one class (synset or name).")
@click.option(
    "--layers",
    "layer_names",
    default="all",
    show_default=True,
    help="Comma-separated layer names, or all.",
)
@click.option(
    "--baselines",
    default="random,shuffled",
    show_default=True,
    help="Comma-separated: random, shuffled (or 'none').",
)
@click.option(
    "--per-class/--pooled",
    default=True,
    show_default=True,
    help="Probe each object class separately and average, or all images together.",
)
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image or annotation.")
@click.option(
    "--n-per-class",
    type=int,
    default=None,
    help="Images per class of the embedded scale set (scaleset data only; default 300).",
)
@click.option(
    "--input-size", type=int, default=None, help="Square input size (default: the model's own)."
)
@click.option(
    "--pooling",
    type=click.Choice(["gap", "corrected-gap", "max"]),
    default="gap",
    show_default=True,
    help="corrected-gap averages only positions whose receptive field avoids the padding.",
)
@click.option("--out", required=True, help="Run folder to write.")
@_common_probe_options
@_friendly
def probe(
    model: str,
    weights: str,
    data_spec: str,
    cls: str | None,
    layer_names: str,
    baselines: str,
    per_class: bool,
    strict: bool,
    n_per_class: int | None,
    input_size: int | None,
    pooling: str,
    out: str,
    measure: str,
    regressor: str,
    alpha: float | None,
    reps: int,
    test_fraction: float,
    seed: int,
    batch_size: int,
    device: str | None,
    cache_dir: str | None,
    force: bool,
) -> None:
    """Profile MODEL layer by layer on DATA with RCVs, against its baselines."""
    from rcvlab.analyses import layer_profile
    from rcvlab.data import open_data
    from rcvlab.models import load_model
    from rcvlab.report.run import write_profile_run
    from rcvlab.runio import prepare_out

    out_dir = prepare_out(out, force=force)
    extra = {} if n_per_class is None else {"n_per_class": n_per_class}
    data = open_data(data_spec, cls=cls, strict=strict, **extra)
    base = [] if baselines.strip().lower() == "none" else _csv(baselines) or []
    net = load_model(model, weights, seed=seed, input_size=input_size)
    res = layer_profile(
        net,
        data,
        measure=measure,
        layers=layer_names,
        baselines=base,
        regressor=regressor,
        alpha=alpha,
        reps=reps,
        test_fraction=test_fraction,
        seed=seed,
        per_class=per_class,
        batch_size=batch_size,
        pooling=pooling,
        cache_dir=_cache_dir(cache_dir),
        device=device,
        strict=strict,
        progress=True,
        command=_command_line(),
    )
    write_profile_run(out_dir, [res])
    empty = res.extra.get("no_positions")
    if empty:
        click.echo(
            f"corrected GAP: no position free of padding in {', '.join(empty)} at "
            f"{net.input_size} px (not probed; listed in profile.json)."
        )
    best = res.score(res.best_layer)
    click.echo(
        f"{res.model} ({res.weights}): best layer {res.best_layer}, test R² "
        f"{best.r2_mean:.3f} ± {best.r2_std:.3f}; wrote {out_dir}/"
    )


@main.command("prune")
@click.option("--model", default=None, help="Registry name (default: the profile's model).")
@click.option(
    "--weights", default=None, help="imagenet, random or a state dict (default: the profile's)."
)
@click.option("--at", "layer", default=None, help="Layer to prune after (e.g. mixed8, add15).")
@click.option(
    "--from-profile",
    "profile",
    default=None,
    help="A profile.json: prune its model at its best_layer.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--out", required=True, help="File to write the pruned network to (.pt).")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@_friendly
def prune_cmd(
    model: str | None,
    weights: str | None,
    layer: str | None,
    profile: str | None,
    seed: int,
    out: str,
    force: bool,
) -> None:
    """Cut a network after one layer (ending in GAP) and save it."""
    import os

    from rcvlab.errors import OutputExistsError
    from rcvlab.models import load_model
    from rcvlab.prune import prune, prune_summary

    if profile is not None:
        from rcvlab.probe.result import ProfileResult

        prof = ProfileResult.from_json(profile)
        model = model or prof.model
        weights = weights or prof.weights
        layer = layer or prof.best_layer
    if model is None or layer is None:
        raise RcvlabError("Give --model and --at, or --from-profile runs/NAME/profile.json.")
    if os.path.exists(out) and not force:
        raise OutputExistsError(
            f"{out} exists; pass --force to overwrite it, or choose another --out."
        )
    pm = prune(load_model(model, weights or "imagenet", seed=seed), at=layer)
    pm.save(out)
    click.echo(f"{prune_summary(pm)}; wrote {out}")


@main.command("transfer")
@click.option(
    "--data",
    "data_spec",
    required=True,
    help="csv:FILE with path, class (magnification), group (source image) and the "
    "measure or a mask column; or histo for the embedded histology set.",
)
@click.option("--model", required=True, help="Registry name, or timm:NAME.")
@click.option("--weights", default="imagenet", show_default=True)
@click.option(
    "--variants",
    default="pretrained,scratch",
    show_default=True,
    help="Comma-separated: pretrained, scratch, pruned:LAYER (any number).",
)
@click.option(
    "--from-profile",
    "profile",
    default=None,
    help="Add pruned:<best_layer> of this profile.json to the variants.",
)
@click.option("--measure", default="nuclei_area", show_default=True)
@click.option("--seeds", type=int, default=10, show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["linear", "finetune"]),
    default="linear",
    show_default=True,
    help="linear: frozen backbone, heads on cached features; finetune: the whole network "
    "(best epoch by validation MAE saved under checkpoints/).",
)
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the group split and the random-weights twin.",
)
@click.option("--input-size", type=int, default=None)
@click.option("--device", default=None)
@click.option("--cache-dir", default=None)
@click.option("--out", required=True)
@click.option("--force", is_flag=True)
@_friendly
def transfer_cmd(
    data_spec: str,
    model: str,
    weights: str,
    variants: str,
    profile: str | None,
    measure: str,
    seeds: int,
    mode: str,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    input_size: int | None,
    device: str | None,
    cache_dir: str | None,
    out: str,
    force: bool,
) -> None:
    """Train single-unit heads per variant and seed; MAE, kappa, Wilcoxon (paper's Table 2)."""
    from rcvlab.analyses.transfer import transfer
    from rcvlab.data import open_data
    from rcvlab.models import load_model
    from rcvlab.report.transfer import write_transfer_run
    from rcvlab.runio import prepare_out

    out_dir = prepare_out(out, force=force)
    names = _csv(variants) or []
    if profile is not None:
        from rcvlab.probe.result import ProfileResult

        names.append(f"pruned:{ProfileResult.from_json(profile).best_layer}")
    data = open_data(data_spec)
    net = load_model(model, weights, seed=seed, input_size=input_size)
    res = transfer(
        data,
        net,
        names,
        seeds=seeds,
        mode=mode,
        measure=measure,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        cache_dir=_cache_dir(cache_dir),
        device=device,
        progress=True,
        command=_command_line(),
        checkpoint_dir=out_dir / "checkpoints" if mode == "finetune" else None,
    )
    write_transfer_run(out_dir, res)
    s = res.summary_frame()
    for v, row in s.iterrows():
        click.echo(
            f"{v:24s} MAE {row['mae_mean']:.2f} ({row['mae_std']:.2f})  "
            f"kappa {row['kappa_mean']:.3f} ({row['kappa_std']:.3f})"
        )
    click.echo(
        f"wrote {out_dir}/ (transfer.json, transfer.csv, summary.md, transfer.png, heads.pt)"
    )


def _data_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--model/--weights/--data/--input-size/--layer options of the one-layer analyses."""
    opts = [
        click.option("--model", required=True, help="Registry name, or timm:NAME."),
        click.option("--weights", default="imagenet", show_default=True),
        click.option(
            "--data",
            "data_spec",
            required=True,
            help="voc:DIR, imagenet:DIR, csv:FILE, scaleset[:CLASS,...], histo, folder:DIR.",
        ),
        click.option("--layer", required=True, help="One layer name (see `rcvlab layers`)."),
        click.option("--input-size", type=int, default=None),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True),
        click.option("--batch-size", type=int, default=32, show_default=True),
        click.option("--device", default=None),
        click.option("--cache-dir", default=None, help="Feature cache ('none' to disable)."),
        click.option("--out", required=True, help="Run folder to write."),
        click.option("--force", is_flag=True, help="Overwrite files in an existing --out folder."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _alphas(spec: str) -> list[float]:
    """``START:STOP:COUNT`` (evenly spaced, both ends included) or a comma-separated list."""
    from rcvlab.errors import RcvlabError

    try:
        parts = spec.split(":")
        if len(parts) == 3:
            count = int(parts[2])
            if count < 1:
                raise ValueError
            return np.linspace(float(parts[0]), float(parts[1]), count).tolist()
        if len(parts) == 1:
            return [float(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        pass
    raise RcvlabError(
        f"Cannot read --alphas {spec!r}; write START:STOP:COUNT (e.g. 0:0.01:21) or a list "
        "such as 0,0.001,0.01."
    )


def _measure_option(default: str = "scale_ratio_sqrt") -> Callable[..., Any]:
    return click.option(
        "--measure",
        default=default,
        show_default=True,
        help="Concept measure (any that `rcvlab probe` accepts).",
    )


class _Job:
    """What every one-layer analysis command starts from: run folder, data, network."""

    def __init__(
        self,
        model: str,
        weights: str,
        data_spec: str,
        layer: str,
        input_size: int | None,
        seed: int,
        batch_size: int,
        device: str | None,
        cache_dir: str | None,
        out: str,
        force: bool,
    ) -> None:
        from rcvlab.data import open_data
        from rcvlab.models import load_model
        from rcvlab.runio import prepare_out

        self.data = open_data(data_spec)
        self.net = load_model(model, weights, seed=seed, input_size=input_size)
        self.out = prepare_out(out, force=force)
        self.layer, self.seed = layer, seed
        self.kw = dict(
            batch_size=batch_size,
            cache_dir=_cache_dir(cache_dir),
            device=device,
            progress=True,
            command=_command_line(),
        )

    def write_skipped(self, meta: dict) -> None:
        from rcvlab.runio import write_skipped

        skipped = [(s["path"], s["reason"]) for s in meta.get("skipped", [])]
        write_skipped(self.out / "skipped.csv", skipped)


@main.command("sparsity")
@_data_options
@_measure_option()
@click.option("--train-class", required=True, help="Class the Lasso path is fitted on.")
@click.option(
    "--test-class",
    "test_classes",
    default=None,
    help="Comma-separated other classes to test on (default: every other class).",
)
@click.option("--alphas", default="0:0.01:21", show_default=True, help="START:STOP:COUNT or list.")
@click.option("--reps", type=int, default=10, show_default=True)
@click.option("--test-fraction", type=float, default=0.5, show_default=True)
@_friendly
def sparsity_cmd(
    measure: str,
    train_class: str,
    test_classes: str | None,
    alphas: str,
    reps: int,
    test_fraction: float,
    **common: Any,
) -> None:
    """Lasso path at LAYER: non-zero coefficients vs test R², same and other classes."""
    import pandas as pd

    from rcvlab.analyses.sparsity import sparsity_on_data
    from rcvlab.report.encoding import write_sparsity_run

    alpha_list = _alphas(alphas)
    job = _Job(**common)
    res = sparsity_on_data(
        job.net,
        job.data,
        job.layer,
        measure,
        train_class,
        _csv(test_classes),
        alpha_list,
        reps,
        job.seed,
        test_fraction=test_fraction,
        **job.kw,
    )
    files = write_sparsity_run(job.out, res)
    job.write_skipped(res.meta)
    table = pd.read_csv(files["cross_class.csv"])
    click.echo(table.to_string(index=False, float_format="%.3f"))
    click.echo(f"wrote {job.out}/ (sparsity.csv/json/png, cross_class.csv, summary.md)")


@main.command("alignment")
@_data_options
@_measure_option()
@click.option("--train-class", default=None, help="Class to fit on (default: the first).")
@click.option(
    "--alpha",
    type=click.FloatRange(min=0, min_open=True),
    default=0.001,
    show_default=True,
    help="Lasso penalty (> 0; the plain fit is always included).",
)
@click.option("--max-dims", type=int, default=200, show_default=True)
@_friendly
def alignment_cmd(
    measure: str, train_class: str | None, alpha: float, max_dims: int, **common: Any
) -> None:
    """Cumulative norm of the plain and the Lasso RCV over its largest components."""
    from rcvlab.analyses.alignment import alignment_on_data
    from rcvlab.report.encoding import write_alignment_run

    job = _Job(**common)
    res = alignment_on_data(
        job.net,
        job.data,
        job.layer,
        measure,
        train_class,
        alpha=alpha,
        max_dims=max_dims,
        seed=job.seed,
        **job.kw,
    )
    write_alignment_run(job.out, res)
    job.write_skipped(res[0].meta)
    for r in res:
        click.echo(
            f"{r.regressor:6s} non-zero {r.n_nonzero:5d}  maps for 90 % of the norm: "
            f"{r.dims_for(0.9) if r.defined else '– (the RCV is zero)'}"
        )
    click.echo(f"wrote {job.out}/ (alignment.csv/json/png, summary.md)")


@main.command("consistency")
@_data_options
@_measure_option()
@click.option("--classes", default=None, help="Comma-separated classes (default: all).")
@click.option(
    "--alpha",
    type=click.FloatRange(min=0, min_open=True),
    default=0.001,
    show_default=True,
    help="Lasso penalty (> 0; the plain fit is always included).",
)
@click.option("--reps", type=int, default=10, show_default=True)
@_friendly
def consistency_cmd(
    measure: str, classes: str | None, alpha: float, reps: int, **common: Any
) -> None:
    """Angles between RCVs of disjoint splits, of different classes and of shuffled measures."""
    from rcvlab.analyses.consistency import consistency_on_data
    from rcvlab.report.encoding import write_consistency_run

    job = _Job(**common)
    res = consistency_on_data(
        job.net, job.data, job.layer, measure, _csv(classes), reps, job.seed, alpha, **job.kw
    )
    write_consistency_run(job.out, res)
    job.write_skipped(res.meta)
    cols = ["a", "b", "regressor", "angle_mean", "angle_std", "cos_mean", "cos_std"]
    click.echo(res.to_frame()[cols].to_string(index=False, float_format="%.3f"))
    click.echo(f"wrote {job.out}/ (consistency.csv/json/png, summary.md)")


@main.command("relevance")
@_data_options
@click.option(
    "--measure",
    "measure_names",
    default="scale_ratio",
    show_default=True,
    help="Comma-separated concept measures (any that `rcvlab probe` accepts).",
)
@click.option(
    "--target-class", required=True, help="Class whose logit is differentiated (index or name)."
)
@click.option(
    "--regressor", type=click.Choice(["ols", "ridge", "lasso"]), default="ridge", show_default=True
)
@click.option("--alpha", type=float, default=None)
@click.option("--reps", type=int, default=10, show_default=True)
@_friendly
def relevance_cmd(
    measure_names: str,
    target_class: str,
    regressor: str,
    alpha: float | None,
    reps: int,
    **common: Any,
) -> None:
    """Sensitivity of a class logit along the RCV at LAYER, and the relevance score Br."""
    from rcvlab.analyses.relevance import relevance
    from rcvlab.report.relevance import write_relevance_run

    job = _Job(**common)
    res = relevance(
        job.net,
        job.data,
        job.layer,
        _csv(measure_names) or [],
        target_class,
        regressor=regressor,
        alpha=alpha,
        reps=reps,
        seed=job.seed,
        # one pass gives features and gradients: nothing to read from a feature cache
        **{k: v for k, v in job.kw.items() if k != "cache_dir"},
    )
    write_relevance_run(job.out, res)
    job.write_skipped(res.data)
    for _, row in res.to_frame().iterrows():
        click.echo(
            f"{row['measure']:20s} R² {row['r2_mean']:.3f}  mean S {row['sens_mean']:+.4g}  "
            f"Br {row['br']:+.3f}"
        )
    click.echo(f"wrote {job.out}/ (relevance.csv, relevance.json, summary.md, relevance.png)")


@main.command("resize-sweep")
@click.option("--model", required=True, help="Registry name, or timm:NAME.")
@click.option("--weights", default="imagenet", show_default=True)
@click.option(
    "--data",
    "data_spec",
    default="filled",
    show_default=True,
    help="Filled images with ImageNet labels: filled[:CLASS,...], labels:FILE.csv, synsets:DIR.",
)
@click.option(
    "--sizes",
    default="75:500:25",
    show_default=True,
    help="Square sizes: START:STOP[:STEP] or a list such as 224,299.",
)
@click.option(
    "--interp",
    "interps",
    default="lanczos,bilinear,bicubic,nearest",
    show_default=True,
    help="Comma-separated PIL filters.",
)
@click.option(
    "--n-per-class", type=int, default=None, help="Embedded filled set only (default 25)."
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--device", default=None)
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image.")
@click.option("--out", required=True, help="Run folder to write.")
@click.option("--force", is_flag=True, help="Overwrite files in an existing --out folder.")
@_friendly
def resize_sweep_cmd(
    model: str,
    weights: str,
    data_spec: str,
    sizes: str,
    interps: str,
    n_per_class: int | None,
    seed: int,
    batch_size: int,
    device: str | None,
    strict: bool,
    out: str,
    force: bool,
) -> None:
    """Probability of the correct class and top-5 accuracy per input size and filter."""
    from rcvlab.analyses.resize import parse_interps, resize_sweep
    from rcvlab.data import open_data
    from rcvlab.report.resize import write_resize_run
    from rcvlab.runio import prepare_out
    from rcvlab.sizes import parse_sizes

    size_list, interp_list = parse_sizes(sizes), parse_interps(interps)
    extra = {} if n_per_class is None else {"n_per_class": n_per_class}
    if data_spec.split(":")[0].lower() == "filled":
        extra["seed"] = seed
    data = open_data(data_spec, strict=strict, **extra)
    out_dir = prepare_out(out, force=force)
    res = resize_sweep(
        model,
        data,
        size_list,
        interp_list,
        weights=weights,
        seed=seed,
        batch_size=batch_size,
        device=device,
        strict=strict,
        progress=True,
        command=_command_line(),
    )
    write_resize_run(out_dir, res)
    frame = res.to_frame()
    for interp, g in frame.groupby("interp", sort=False):
        best = g.loc[g.p_mean.idxmax()]
        click.echo(
            f"{interp:9s} peak p {best.p_mean:.3f} at {int(best['size'])} px; "
            f"p at {int(g['size'].min())} px {g.p_mean.iloc[0]:.3f}, "
            f"at {int(g['size'].max())} px {g.p_mean.iloc[-1]:.3f}"
        )
    click.echo(f"wrote {out_dir}/ (sweep.csv, sweep.json, sweep.png, summary.md)")


@main.command("noise-size")
@click.option("--model", required=True, help="Registry name, or timm:NAME.")
@click.option("--weights", default="imagenet", show_default=True, help="imagenet or random.")
@click.option(
    "--sizes",
    default="150:500",
    show_default=True,
    help="Square widths: START:STOP[:STEP] (step 25) or a list such as 150,299,500.",
)
@click.option("--train", "n_train", type=int, default=5, show_default=True)
@click.option("--test", "n_test", type=int, default=20, show_default=True)
@click.option("--reps", type=int, default=10, show_default=True)
@click.option("--layers", "layer_names", default="all", show_default=True)
@click.option(
    "--regressor", type=click.Choice(["ols", "ridge", "lasso"]), default="ols", show_default=True
)
@click.option("--alpha", type=float, default=None)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--device", default=None)
@click.option("--out", required=True, help="Run folder to write.")
@click.option("--force", is_flag=True, help="Overwrite files in an existing --out folder.")
@_friendly
def noise_size_cmd(
    model: str,
    weights: str,
    sizes: str,
    n_train: int,
    n_test: int,
    reps: int,
    layer_names: str,
    regressor: str,
    alpha: float | None,
    seed: int,
    batch_size: int,
    device: str | None,
    out: str,
    force: bool,
) -> None:
    """Regress the width of white-noise images per layer, with regular and corrected GAP."""
    from rcvlab.analyses.noise import noise_size
    from rcvlab.report.noise import write_noise_run
    from rcvlab.runio import prepare_out
    from rcvlab.sizes import parse_sizes

    size_list = parse_sizes(sizes)
    out_dir = prepare_out(out, force=force)
    res = noise_size(
        model,
        weights=weights,
        sizes=size_list,
        n_train=n_train,
        n_test=n_test,
        reps=reps,
        layers=layer_names,
        regressor=regressor,
        alpha=alpha,
        seed=seed,
        batch_size=batch_size,
        device=device,
        progress=True,
        command=_command_line(),
    )
    write_noise_run(out_dir, res)
    for e in res.layers:
        g, c = e.summary("gap"), e.summary("corrected-gap")
        cor = "no positions" if c["r2_mean"] is None else f"{c['r2_mean']:.3f}"
        click.echo(f"{e.layer:14s} regular GAP R² {g['r2_mean']:.3f}   corrected GAP {cor}")
    click.echo(f"wrote {out_dir}/ (noise.json, noise.csv, noise.png, summary.md)")


@main.command()
@click.option("--out", default=None, help="Run folder (default runs/demo, or runs/demo-histo).")
@click.option(
    "--models", "model_names", default="efficientnet_lite0,mobilenet_v2", show_default=True
)
@click.option("--n-per-class", type=int, default=300, show_default=True)
@click.option("--reps", type=int, default=10, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--regressor", type=click.Choice(["ols", "ridge", "lasso"]), default="ridge", show_default=True
)
@click.option("--cache-dir", default=None, help="Feature cache ('none' to disable).")
@click.option("--force", is_flag=True, help="Overwrite files in an existing --out folder.")
@click.option(
    "--histo",
    is_flag=True,
    help="Run the whole chain instead: profile -> best layer -> prune -> transfer (linear, 5 "
    "seeds) on the embedded histology set (default --out runs/demo-histo).",
)
@click.option(
    "--from-profile",
    "profile",
    default=None,
    help="With --histo: take the best layer from this profile.json.",
)
@_friendly
def demo(
    out: str | None,
    model_names: str,
    n_per_class: int,
    reps: int,
    seed: int,
    regressor: str,
    cache_dir: str | None,
    force: bool,
    histo: bool,
    profile: str | None,
) -> None:
    """Profile ImageNet-pretrained nets on the embedded scale set (offline); with --histo,
    the whole chain through pruning and transfer to the embedded histology set."""
    if histo:
        from rcvlab.analyses.demo import run_histo_demo

        out = out or "runs/demo-histo"
        run_histo_demo(
            out,
            model=(_csv(model_names) or ["efficientnet_lite0"])[0],
            profile=profile,
            n_per_class=n_per_class,
            seed=seed,
            cache_dir=_cache_dir(cache_dir),
            force=force,
            command=_command_line(),
            echo=click.echo,
        )
        click.echo(f"wrote {out}/ (report.html, transfer.json, summary.md, pruned.pt, ...)")
        return
    from rcvlab.analyses.demo import run_demo

    out = out or "runs/demo"
    res = run_demo(
        out,
        models=_csv(model_names) or [],
        n_per_class=n_per_class,
        reps=reps,
        seed=seed,
        regressor=regressor,
        cache_dir=_cache_dir(cache_dir),
        force=force,
        command=_command_line(),
        echo=click.echo,
    )
    click.echo(
        f"wrote {out}/ (report.html, profile.json, profile.csv, profile.png); "
        f"best layer of {res[0].model}: {res[0].best_layer}"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
