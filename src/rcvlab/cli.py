"""The ``rcvlab`` command line: each command parses, calls one analysis, writes its run folder.

Shared options are declared once in :mod:`rcvlab.cli_options`; a command lists the ones it
takes with ``@shared(...)`` and adds its own.
"""

from __future__ import annotations

from typing import Any

import click

from rcvlab import __version__
from rcvlab.analyses import noise as noise_defaults
from rcvlab.analyses import resize as resize_defaults
from rcvlab.analyses.relevance import DEFAULT_MEASURES as RELEVANCE_MEASURES
from rcvlab.analyses.relevance import DEFAULT_REGRESSOR as RELEVANCE_REGRESSOR
from rcvlab.analyses.relevance import DEFAULT_REPS as RELEVANCE_REPS
from rcvlab.cli_options import Group, Job, csv_list, friendly, shared
from rcvlab.errors import RcvlabError
from rcvlab.probe.result import SPLITS


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rcvlab")
def main() -> None:
    """rcvlab: where inside a pretrained CNN is a continuous concept linearly encoded?"""


@main.command()
@friendly
def models() -> None:
    """List the models rcvlab knows by name."""
    from rcvlab.models import available_models

    for name, desc in available_models().items():
        click.echo(f"{name:20s} {desc}")


@main.command("measures")
@friendly
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
@shared("input_size")
@friendly
def layers(model: str, input_size: int | None) -> None:
    """List MODEL's probe-able layers with their feature dimension."""
    from rcvlab.features import layer_dims
    from rcvlab.models import load_model

    m = load_model(model, "random", input_size=input_size)
    dims = layer_dims(m)
    click.echo(f"{'layer':14s} {'dim':>6s}  {'layout':8s} {'module':22s} note")
    for s in m.layer_specs:
        kind = "" if s.kind == "output" else f"[{s.kind}] "
        click.echo(
            f"{s.name:14s} {dims[s.name]:6d}  {s.layout_label:8s} {s.module:22s} {kind}{s.note}"
        )
    click.echo(
        f"input {m.input_size}x{m.input_size}; layout: how the output is read (NCHW maps, "
        "NHWC maps, NLC+k tokens with k prefix tokens, NC vectors). Any dotted module path is "
        "a layer too (its output, pooled)."
    )


@main.command()
@shared(
    "model weights input_size layers data cls n_per_class strict measure",
    "regressor alpha reps test_fraction seed batch_size device cache_dir precision",
    "cluster scheduler out force",
)
@click.option(
    "--baselines",
    default="random,shuffled",
    show_default=True,
    help="Comma-separated: random, shuffled (or 'none').",
)
@click.option(
    "--split",
    type=click.Choice(list(SPLITS)),
    default=None,
    help="per-class (default with classes; the papers' protocol): repeated splits within each "
    "class; pooled: all images together (default without classes, and with several --weights "
    "or --measure values, as paper 004); leave-one-class-out: fit on "
    "all classes but one, R² on the held-out class (--reps and --test-fraction do not apply).",
)
@click.option(
    "--pooling",
    type=click.Choice(["gap", "corrected-gap", "max", "cls"]),
    default="gap",
    show_default=True,
    help="corrected-gap averages only positions whose receptive field avoids the padding; "
    "cls takes the class token of token layers (gap averages their patch tokens).",
)
@click.option(
    "--min-std",
    type=click.FloatRange(0, 1),
    default=None,
    help="Floor on a feature's training-split std, relative to the layer's median std "
    "(e.g. 0.01); off by default, as the papers' standardisation.",
)
@friendly
def probe(
    baselines: str, split: str | None, pooling: str, min_std: float | None, **common: Any
) -> None:
    """Profile MODEL layer by layer on DATA with RCVs, against its baselines."""
    from rcvlab.analyses import layer_profile
    from rcvlab.report.run import write_profile_run

    job = Job(common)
    if split == "leave-one-class-out":
        given = [f"--{n.replace('_', '-')}" for n in ("reps", "test_fraction") if _given(n)]
        if given:
            raise RcvlabError(
                f"{' and '.join(given)} do not apply to --split leave-one-class-out (one split "
                "per held-out class); leave them out."
            )
    base = [] if baselines.strip().lower() == "none" else csv_list(baselines) or []
    if len(csv_list(job["weights"]) or []) > 1 or len(csv_list(job["measure"]) or []) > 1:
        _compare_weights(job, base if _given("baselines") else [], split, pooling, min_std)
        return
    data, net, out = job.data, job.net, job.out
    res = layer_profile(
        net,
        data,
        measure=job["measure"],
        layers=job["layer_names"],
        baselines=base,
        regressor=job["regressor"],
        alpha=job["alpha"],
        reps=job["reps"],
        test_fraction=job["test_fraction"],
        seed=job["seed"],
        split=split,
        pooling=pooling,
        min_std=min_std,
        strict=job["strict"],
        **job.kw,
    )
    write_profile_run(out, [res])
    job.finish()
    empty = res.extra.get("no_positions")
    if empty:
        click.echo(
            f"corrected GAP: no position free of padding in {', '.join(empty)} at "
            f"{net.input_size} px (not probed; listed in profile.json)."
        )
    best = res.score(res.best_layer)
    click.echo(
        f"{res.model} ({res.weights}): best layer {res.best_layer}, test R² "
        f"{best.r2_mean:.3f} ± {best.r2_std:.3f} (median {best.r2_median:.3f}); wrote {out}/"
    )


def _compare_weights(
    job: Job, baselines: list[str], split: str | None, pooling: str, min_std: float | None
) -> None:
    """``probe`` with several weights or measures: one extraction per weights, a profile per
    (weights, measure) and the paper's in-sample R² (paper 004's Figure 3)."""
    from rcvlab.analyses.weights import compare_weights
    from rcvlab.report.html import write_report
    from rcvlab.report.weights import summary_markdown, weights_section, write_weights_run

    if baselines:
        raise RcvlabError(
            "--baselines does not apply with several --weights or --measure values (the "
            "random network is one of the --weights, e.g. random-xavier); leave it out."
        )
    from rcvlab.models import load_model

    data = job.data
    layers = job["layer_names"]
    first, *others = csv_list(job["weights"]) or []
    nets = [load_model(job["model"], first, seed=job["seed"], input_size=job["input_size"])]
    nets += [
        load_model(job["model"], w, seed=job["seed"], input_size=nets[0].input_size) for w in others
    ]
    out = job.out
    res = compare_weights(
        nets,
        data,
        measures=csv_list(job["measure"]) or [],
        layers=None if layers.strip().lower() == "all" else csv_list(layers),
        reps=job["reps"],
        test_fraction=job["test_fraction"],
        regressor=job["regressor"],
        alpha=job["alpha"],
        split=split or "pooled",
        seed=job["seed"],
        min_std=min_std,
        pooling=pooling,
        strict=job["strict"],
        **job.kw,
    )
    write_weights_run(out, res)
    write_report(
        out / "report.html",
        [],
        title=f"rcvlab: concept RCVs of {job['model']} across weights",
        figures={},
        sections=[weights_section(res)],
    )
    job.write_skipped([(s.path, s.reason) for s in data.skipped])
    job.finish()
    click.echo(summary_markdown(res))
    click.echo(f"wrote {out}/ (weights_comparison.json/.csv/.png, summary.md, report.html)")


def _given(name: str) -> bool:
    """Whether the option ``name`` was typed on the command line (not its default)."""
    source = click.get_current_context().get_parameter_source(name)
    return source == click.core.ParameterSource.COMMANDLINE


def _profile(path: str) -> Any:
    """A finished run's profile.json."""
    from rcvlab.probe.result import ProfileResult
    from rcvlab.runio import check_complete

    check_complete(path)
    return ProfileResult.from_json(path)


@main.command("prune")
@shared(
    "model weights seed out force",
    model={
        "default": None,
        "required": False,
        "help": "Registry name (default: the profile's model).",
    },
    weights={
        "default": None,
        "show_default": False,
        "help": "imagenet, random or a state dict (default: the profile's, else imagenet).",
    },
    out={"help": "File to write the pruned network to (.pt); its folder is created."},
)
@click.option("--at", "layer", default=None, help="Layer to prune after (e.g. mixed8, add15).")
@click.option(
    "--from-profile",
    "profile",
    default=None,
    help="A profile.json: prune its model at its best_layer.",
)
@friendly
def prune_cmd(layer: str | None, profile: str | None, **common: Any) -> None:
    """Cut a network after one layer (ending in GAP) and save it."""
    from rcvlab.models import load_model
    from rcvlab.prune import check_prune_layer, prune, prune_summary
    from rcvlab.runio import check_writable_file

    job = Job(common)
    model, weights = job["model"], job["weights"]
    if profile is not None:
        prof = _profile(profile)
        model, weights, layer = (
            model or prof.model,
            weights or prof.weights,
            layer or prof.best_layer,
        )
    if model is None or layer is None:
        raise RcvlabError("Give --model and --at, or --from-profile runs/NAME/profile.json.")
    net = load_model(model, weights or "imagenet", seed=job["seed"])
    check_prune_layer(net, layer)
    out = check_writable_file(job["out"], force=job["force"])
    pm = prune(net, at=layer)
    pm.save(out)
    job.finish()
    click.echo(f"{prune_summary(pm)}; wrote {out}")


@main.command("transfer")
@shared(
    "data model weights strict n_per_class input_size seed batch_size device cache_dir",
    "cluster scheduler out force",
    data={
        "help": "csv:FILE with path, class (magnification), group (source image) and the "
        "measure or a mask column; folder:DIR / janowczyk:DIR; or histo."
    },
    seed={"help": "Seed of the group split and the random-weights twin."},
)
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
@shared("measure", measure="nuclei_area")
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Heads trained per variant (one seed each).",
)
@click.option(
    "--mode",
    type=click.Choice(["linear", "finetune"]),
    default="linear",
    show_default=True,
    help="linear: frozen backbone, heads on cached features; finetune: the whole "
    "network (best epoch by validation MAE saved under checkpoints/).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True)
@friendly
def transfer_cmd(
    variants: str, profile: str | None, seeds: int, mode: str, epochs: int, lr: float, **common: Any
) -> None:
    """Train single-unit heads per variant and seed; MAE, kappa, Wilcoxon (paper's Table 2)."""
    from rcvlab.analyses.transfer import parse_variants, transfer
    from rcvlab.report.transfer import write_transfer_run

    job = Job(common)
    names = csv_list(variants) or []
    if profile is not None:
        names.append(f"pruned:{_profile(profile).best_layer}")
    data, net = job.data, job.net
    parse_variants(names, net)  # a layer `prune` refuses is refused before any work
    out = job.out
    res = transfer(
        net,
        data,
        names,
        seeds=seeds,
        mode=mode,
        measure=job["measure"],
        epochs=epochs,
        lr=lr,
        seed=job["seed"],
        strict=job["strict"],
        checkpoint_dir=out / "checkpoints" if mode == "finetune" else None,
        **job.kw,
    )
    write_transfer_run(out, res)
    job.finish()
    for v, row in res.summary_frame().iterrows():
        click.echo(
            f"{v:24s} MAE {row['mae_mean']:.2f} ({row['mae_std']:.2f})  "
            f"kappa {row['kappa_mean']:.3f} ({row['kappa_std']:.3f})"
        )
    click.echo(
        f"wrote {out}/ (transfer.json, transfer.csv, transfer_by_class.csv, predictions.csv, "
        "summary.md, transfer.png, heads.pt)"
    )


def _one_layer(measure: str = "scale_ratio", cache: bool = True) -> Any:
    """The shared options of the one-layer analyses (sparsity, alignment, consistency, ...)."""
    cache_dir = "cache_dir precision" if cache else ""
    return shared(
        "model weights data strict n_per_class layer measure input_size seed batch_size device",
        f"{cache_dir} cluster scheduler out force",
        measure=measure,
    )


def _alphas(spec: str) -> list[float]:
    """``START:STOP:COUNT`` (evenly spaced, both ends included) or a comma-separated list."""
    import numpy as np

    try:
        parts = spec.split(":")
        if len(parts) == 3:
            count = int(parts[2])
            if count >= 1:
                return np.linspace(float(parts[0]), float(parts[1]), count).tolist()
        elif len(parts) == 1:
            return [float(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        pass
    raise RcvlabError(
        f"Cannot read --alphas {spec!r}; write START:STOP:COUNT (e.g. 0:0.01:21) or a list "
        "such as 0,0.001,0.01."
    )


def _analysis_kw(job: Job) -> dict[str, Any]:
    return dict(
        layer=job["layer"], measure=job["measure"], seed=job["seed"], strict=job["strict"], **job.kw
    )


@main.command("sparsity")
@_one_layer()
@click.option("--train-class", required=True, help="Class the Lasso path is fitted on.")
@click.option(
    "--test-class",
    "test_classes",
    default=None,
    help="Comma-separated other classes to test on (default: every other class).",
)
@click.option("--alphas", default="0:0.01:21", show_default=True, help="START:STOP:COUNT or list.")
@shared("reps", "test_fraction", test_fraction=0.5)
@friendly
def sparsity_cmd(train_class: str, test_classes: str | None, alphas: str, **common: Any) -> None:
    """Lasso path at LAYER: non-zero coefficients vs test R², same and other classes."""
    from rcvlab.analyses import sparsity
    from rcvlab.report.encoding import write_sparsity_run

    alpha_list = _alphas(alphas)
    job = Job(common)
    data, net, out = job.data, job.net, job.out
    res = sparsity(
        net,
        data,
        train_class=train_class,
        test_classes=csv_list(test_classes),
        alphas=alpha_list,
        reps=job["reps"],
        test_fraction=job["test_fraction"],
        **_analysis_kw(job),
    )
    write_sparsity_run(out, res)
    job.write_skipped(res.meta.get("skipped", []))
    job.finish()
    click.echo(res.cross_class_table().to_string(index=False, float_format="%.3f"))
    click.echo(f"wrote {out}/ (sparsity.csv/json/png, cross_class.csv, summary.md)")


@main.command("alignment")
@_one_layer()
@click.option("--train-class", default=None, help="Class to fit on (default: the first).")
@click.option(
    "--alpha",
    type=click.FloatRange(min=0, min_open=True),
    default=0.001,
    show_default=True,
    help="Lasso penalty (> 0; the plain fit is always included).",
)
@click.option("--max-dims", type=click.IntRange(min=1), default=200, show_default=True)
@friendly
def alignment_cmd(train_class: str | None, alpha: float, max_dims: int, **common: Any) -> None:
    """Cumulative norm of the plain and the Lasso RCV over its largest components."""
    from rcvlab.analyses import alignment
    from rcvlab.report.encoding import write_alignment_run

    job = Job(common)
    data, net, out = job.data, job.net, job.out
    res = alignment(
        net, data, train_class=train_class, alpha=alpha, max_dims=max_dims, **_analysis_kw(job)
    )
    write_alignment_run(out, res)
    job.write_skipped(res.meta.get("skipped", []))
    job.finish()
    for c in res.curves:
        n90 = c.dims_for(0.9) if c.defined else "– (the RCV is zero)"
        click.echo(f"{c.regressor:6s} non-zero {c.n_nonzero:5d}  maps for 90 % of the norm: {n90}")
    click.echo(f"wrote {out}/ (alignment.csv/json/png, summary.md)")


@main.command("consistency")
@_one_layer()
@click.option("--classes", default=None, help="Comma-separated classes (default: all).")
@click.option(
    "--alpha",
    type=click.FloatRange(min=0, min_open=True),
    default=0.001,
    show_default=True,
    help="Lasso penalty (> 0; the plain fit is always included).",
)
@shared("reps")
@friendly
def consistency_cmd(classes: str | None, alpha: float, **common: Any) -> None:
    """Angles between RCVs of disjoint splits, of different classes and of shuffled measures."""
    from rcvlab.analyses import consistency
    from rcvlab.report.encoding import write_consistency_run

    job = Job(common)
    data, net, out = job.data, job.net, job.out
    res = consistency(
        net, data, classes=csv_list(classes), reps=job["reps"], alpha=alpha, **_analysis_kw(job)
    )
    write_consistency_run(out, res)
    job.write_skipped(res.meta.get("skipped", []))
    job.finish()
    cols = ["a", "b", "regressor", "angle_mean", "angle_std", "cos_mean", "cos_std"]
    click.echo(res.to_frame()[cols].to_string(index=False, float_format="%.3f"))
    click.echo(f"wrote {out}/ (consistency.csv/json/png, summary.md)")


@main.command("relevance")
@_one_layer(measure=",".join(RELEVANCE_MEASURES), cache=False)
@click.option(
    "--target-class", required=True, help="Class whose logit is differentiated (index or name)."
)
@shared(
    "regressor alpha reps",
    regressor=RELEVANCE_REGRESSOR,
    reps=RELEVANCE_REPS,
)
@friendly
def relevance_cmd(target_class: str, **common: Any) -> None:
    """Sensitivity of a class logit along the RCV at LAYER, and the relevance score Br.

    --measure takes a comma-separated list. Features and gradients come from one pass, so
    there is no feature cache to read.
    """
    from rcvlab.analyses import relevance
    from rcvlab.report.relevance import write_relevance_run

    job = Job(common)
    data, net, out = job.data, job.net, job.out
    kw = _analysis_kw(job)
    measures = csv_list(kw.pop("measure")) or []
    res = relevance(
        net,
        data,
        measures=measures,
        target_class=target_class,
        regressor=job["regressor"],
        alpha=job["alpha"],
        reps=job["reps"],
        **kw,
    )
    write_relevance_run(out, res)
    job.finish()
    for _, row in res.to_frame().iterrows():
        click.echo(
            f"{row['measure']:20s} R² {row['r2_mean']:.3f}  mean S {row['sens_mean']:+.4g}  "
            f"Br {row['br']:+.3f}"
        )
    click.echo(f"wrote {out}/ (relevance.csv, relevance.json, summary.md, relevance.png)")


@main.command("resize-sweep")
@shared(
    "model weights data n_per_class strict seed batch_size device cluster scheduler out force",
    batch_size=resize_defaults.DEFAULT_BATCH_SIZE,
    data={
        "default": "filled",
        "required": False,
        "show_default": True,
        "help": "Filled images with ImageNet labels: filled[:CLASS,...], labels:FILE.csv, "
        "synsets:DIR.",
    },
)
@click.option(
    "--sizes",
    default=resize_defaults.DEFAULT_SIZES,
    show_default=True,
    help="Square sizes: START:STOP[:STEP] or a list such as 224,299.",
)
@click.option(
    "--interp",
    "interps",
    default=",".join(resize_defaults.DEFAULT_INTERPS),
    show_default=True,
    help="Comma-separated PIL filters.",
)
@friendly
def resize_sweep_cmd(sizes: str, interps: str, **common: Any) -> None:
    """Probability of the correct class and top-5 accuracy per input size and filter."""
    from rcvlab.analyses.resize import parse_interps, resize_sweep
    from rcvlab.report.resize import write_resize_run
    from rcvlab.sizes import parse_sizes

    size_list, interp_list = parse_sizes(sizes), parse_interps(interps)
    job = Job(common)
    data, out = job.data, job.out
    res = resize_sweep(
        job["model"],
        data,
        sizes=size_list,
        interps=interp_list,
        weights=job["weights"],
        seed=job["seed"],
        strict=job["strict"],
        **job.kw,
    )
    write_resize_run(out, res)
    job.finish()
    frame = res.to_frame()
    for interp, g in frame.groupby("interp", sort=False):
        best = g.loc[g.p_mean.idxmax()]
        click.echo(
            f"{interp:9s} peak p {best.p_mean:.3f} at {int(best['size'])} px; "
            f"p at {int(g['size'].min())} px {g.p_mean.iloc[0]:.3f}, "
            f"at {int(g['size'].max())} px {g.p_mean.iloc[-1]:.3f}"
        )
    click.echo(f"wrote {out}/ (sweep.csv, sweep.json, sweep.png, summary.md)")


@main.command("noise-size")
@shared(
    "model weights layers regressor alpha reps seed batch_size device cluster scheduler",
    "out force",
    weights={"help": "imagenet, random or a state-dict file."},
    regressor=noise_defaults.DEFAULT_REGRESSOR,
    reps=noise_defaults.DEFAULT_REPS,
    batch_size=noise_defaults.DEFAULT_BATCH_SIZE,
)
@click.option(
    "--sizes",
    default=noise_defaults.DEFAULT_SIZES,
    show_default=True,
    help="Square widths: START:STOP[:STEP] (step 25 when left out) or a list such as 150,299.",
)
@click.option(
    "--train",
    "n_train",
    type=click.IntRange(min=2),
    default=noise_defaults.DEFAULT_N_TRAIN,
    show_default=True,
)
@click.option(
    "--test",
    "n_test",
    type=click.IntRange(min=2),
    default=noise_defaults.DEFAULT_N_TEST,
    show_default=True,
)
@friendly
def noise_size_cmd(sizes: str, n_train: int, n_test: int, **common: Any) -> None:
    """Regress the width of white-noise images per layer, with regular and corrected GAP."""
    from rcvlab.analyses.noise import check_noise_options, noise_size
    from rcvlab.report.noise import write_noise_run
    from rcvlab.sizes import parse_sizes

    job = Job(common)
    kw = dict(
        sizes=parse_sizes(sizes),
        n_train=n_train,
        n_test=n_test,
        reps=job["reps"],
        regressor=job["regressor"],
        alpha=job["alpha"],
        seed=job["seed"],
    )
    check_noise_options(**kw, batch_size=job["batch_size"])
    out = job.out
    res = noise_size(
        job["model"], weights=job["weights"], layers=job["layer_names"], **kw, **job.kw
    )
    write_noise_run(out, res)
    job.finish()
    for e in res.layers:
        g, c = e.summary("gap"), e.summary("corrected-gap")
        cor = "no positions" if c["r2_mean"] is None else f"{c['r2_mean']:.3f}"
        click.echo(f"{e.layer:14s} regular GAP R² {g['r2_mean']:.3f}   corrected GAP {cor}")
    click.echo(f"wrote {out}/ (noise.json, noise.csv, noise.png, summary.md)")


def _run_report(out: Any, title: str, section: str, notes: tuple[str, ...] = ()) -> None:
    """``report.html`` of a one-analysis run: its section, the environment."""
    from rcvlab.report.html import write_report

    write_report(out / "report.html", [], title=title, figures={}, sections=[section], notes=notes)


def _other_nets(job: Job, spec: str | None) -> list[Any]:
    """The networks of ``--compare-weights`` (the same architecture, other weights)."""
    from rcvlab.models import load_model

    # at the first network's input size (a weights file would bring its own)
    size = job.net.input_size
    return [
        load_model(job["model"], w, seed=job["seed"], input_size=size) for w in csv_list(spec) or []
    ]


@main.command("finetune")
@shared(
    "model weights input_size data cls n_per_class strict seed batch_size device out force",
    data={"help": "Two classes: tumour[:real|synthetic|both], camelyon:FILE.csv|DIR, csv:FILE."},
    seed={"help": "Seed of the split, the new head, the augmentation and the batch order."},
)
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True)
@click.option(
    "--decay",
    type=click.FloatRange(min=0),
    default=1e-6,
    show_default=True,
    help="Keras learning-rate decay: lr / (1 + decay * step) per update (not weight decay).",
)
@click.option(
    "--momentum",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.9,
    show_default=True,
    help="Nesterov momentum of SGD.",
)
@click.option(
    "--positive",
    default="tumour",
    show_default=True,
    help="The class the single logit predicts (the other class is the negative).",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of the groups (source regions / patients) held out for validation.",
)
@click.option(
    "--augment/--no-augment",
    default=True,
    show_default=True,
    help="Horizontal and vertical flips, hue and brightness jitter.",
)
@click.option("--channels-last", is_flag=True, help="Train in channels-last memory format (GPUs).")
@friendly
def finetune_cmd(
    epochs: int,
    lr: float,
    decay: float,
    momentum: float,
    positive: str,
    val_fraction: float,
    augment: bool,
    channels_last: bool,
    **common: Any,
) -> None:
    """Finetune MODEL end to end on a two-class DATA set (paper 004): one sigmoid logit,
    SGD with Nesterov momentum and Keras decay; keeps the epoch with the best validation AUC."""
    from rcvlab.analyses.finetune import check_binary_classes, finetune
    from rcvlab.report.finetune import finetune_section, write_finetune_run

    job = Job(common)
    data, net = job.data, job.net
    check_binary_classes(data, positive)
    out = job.out
    res = finetune(
        net,
        data,
        epochs=epochs,
        lr=lr,
        decay=decay,
        momentum=momentum,
        batch_size=job["batch_size"],
        positive=positive,
        val_fraction=val_fraction,
        augment=augment,
        seed=job["seed"],
        device=job["device"],
        channels_last=channels_last,
        progress=True,
        command=job.command,
    )
    write_finetune_run(out, res)
    _run_report(out, f"rcvlab finetune: {net.name}", finetune_section(res))
    job.write_skipped([(s.path, s.reason) for s in data.skipped])
    job.finish()
    click.echo(
        f"best epoch {res.best_epoch}: validation accuracy {res.val_accuracy:.3f}, AUC "
        f"{res.val_auc:.3f}; wrote {out}/ (model.pt, history.csv, finetune.json, finetune.png, "
        f"summary.md, report.html). Use it with --weights {out}/model.pt"
    )


@main.command("cam")
@shared(
    "model weights input_size data cls n_per_class strict seed batch_size device out force",
    batch_size=16,
)
@click.option(
    "--layer",
    default=None,
    help="Layer name or dotted module path (default: the last convolutional block).",
)
@click.option(
    "--method",
    default="gradcam,gradcam++",
    show_default=True,
    help="Comma-separated: gradcam, gradcam++ (one forward and backward pass for both).",
)
@click.option(
    "--target",
    default="tumour",
    show_default=True,
    help="Class whose logit is explained: a name, an index, or top (each image's top class).",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Keep the images with the highest target probability.",
)
@click.option(
    "--min-prob",
    type=click.FloatRange(0, 1),
    default=None,
    help="Keep only images whose target probability is at least this (the paper: 0.99).",
)
@click.option(
    "--compare-weights",
    default=None,
    help="The same images through the network with these weights (e.g. imagenet), side by "
    "side, with a paired test of the CAM mass on nuclei. A network without the target class "
    "explains its own top class.",
)
@friendly
def cam_cmd(
    layer: str | None,
    method: str,
    target: str,
    top: int,
    min_prob: float | None,
    compare_weights: str | None,
    **common: Any,
) -> None:
    """grad-CAM / grad-CAM++ maps of a target logit for the most confident images, and how
    much of each map falls on nuclei."""
    from rcvlab.analyses.cam import cam, check_methods, fallback_target, resolve_target
    from rcvlab.report.cam import cam_section, write_cam_run

    job = Job(common)
    methods = check_methods(method)
    tgt: int | str = int(target) if target.strip().lstrip("-").isdigit() else target.strip()
    data, net = job.data, job.net
    resolve_target(net, tgt)
    others = _other_nets(job, compare_weights)
    if len(others) > 1:
        raise RcvlabError(
            f"--compare-weights takes one set of weights, got {compare_weights!r}; run the "
            "command once per comparison."
        )
    if layer is not None:
        for m in (net, *others):
            m.resolve([layer])
    out = job.out
    kw = dict(
        layer=layer,
        method=methods,
        batch_size=job["batch_size"],
        strict=job["strict"],
        device=job["device"],
        command=job.command,
    )
    res = cam(net, data, target=tgt, top=top, min_prob=min_prob, **kw)
    ref = None
    if others:
        other = others[0]
        ref = cam(other, data, target=fallback_target(other, tgt), indices=res.indices, **kw)
    write_cam_run(out, res, compare=ref)
    _run_report(out, f"rcvlab cam: {net.name} ({net.weights})", cam_section(res, compare=ref))
    job.finish()
    frame = res.to_frame()
    for m in res.methods:
        click.echo(
            f"{m:10s} CAM mass on nuclei {frame[f'nuclei_mass_{m}'].mean():.3f} vs nuclei "
            f"fraction {frame['nuclei_fraction'].mean():.3f} (mean of {len(frame)} images)"
        )
    click.echo(f"wrote {out}/ (cams.png, cams.npz, cams.csv, cam.json, summary.md, report.html)")


@main.command("visualize")
@shared(
    "model weights input_size seed device",
    "data cls n_per_class strict cache_dir out force",
    data={
        "required": False,
        "default": None,
        "help": "With --rcv MEASURE: the images the RCV is fitted on (see `rcvlab probe`).",
    },
)
@click.option("--layer", required=True, help="Layer name or dotted module path.")
@click.option(
    "--channels",
    default=None,
    help="START:STOP:STEP or a comma-separated list of channel indices (required unless --rcv).",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="One stage of this many steps at lr 0.05 without TV (default: the paper's three "
    "stages, 3,584 steps: sized for a GPU).",
)
@click.option("--size", type=click.IntRange(min=16), default=128, show_default=True)
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Every stage's lr."
)
@click.option(
    "--tv", type=click.FloatRange(min=0), default=None, help="Every stage's total-variation weight."
)
@click.option(
    "--rcv",
    default=None,
    help="Maximise (and minimise) the projection of the layer's GAP features on an RCV "
    "instead: a MEASURE (fitted on --data, per weights) or a relevance.json.",
)
@click.option("--rcv-measure", default=None, help="Which measure of a relevance.json.")
@click.option(
    "--compare-weights",
    default=None,
    help="Comma-separated further weights (e.g. imagenet,runs/ft/model.pt), one row each.",
)
@friendly
def visualize_cmd(
    layer: str,
    channels: str | None,
    steps: int | None,
    size: int,
    lr: float | None,
    tv: float | None,
    rcv: str | None,
    rcv_measure: str | None,
    compare_weights: str | None,
    **common: Any,
) -> None:
    """Activation maximisation: images that maximise single channels of LAYER (Fourier
    parametrisation, decorrelated colour, jitter / scale / rotation), as paper 004 Fig. 1."""
    from rcvlab.analyses.visualize import rcv_direction, schedule, visualize
    from rcvlab.report.visualize import visualize_section, write_visualize_run

    job = Job(common)
    schedule(steps, lr, tv)
    if (channels is None) == (rcv is None):
        raise RcvlabError("Give either --channels (e.g. 0:512:10) or --rcv, not both or neither.")
    from_file = rcv is not None and rcv.lower().endswith(".json")
    if rcv is not None and not from_file and job["data_spec"] is None:
        raise RcvlabError(f"--rcv {rcv} is a measure: add --data with the images to fit it on.")
    if job["data_spec"] is not None and (rcv is None or from_file):
        raise RcvlabError("--data is only read with --rcv MEASURE; leave it out.")
    if from_file and compare_weights is not None:
        raise RcvlabError(
            f"{rcv} holds one network's RCVs; with --compare-weights give --rcv MEASURE "
            "--data DATA, so that each network gets its own."
        )
    if rcv_measure is not None and not from_file:
        raise RcvlabError("--rcv-measure picks a measure of a relevance.json given to --rcv.")
    for name in ("cls", "n_per_class", "strict"):
        if job[name] and job["data_spec"] is None:
            raise RcvlabError(f"--{name.replace('_', '-')} goes with --data.")
    nets = [job.net, *_other_nets(job, compare_weights)]
    for m in nets:
        m.resolve([layer])
    data = job.data if job["data_spec"] is not None else None
    out = job.out
    results = []
    for m in nets:
        direction: Any = rcv
        if data is not None and rcv is not None:
            direction = rcv_direction(
                m, data, layer, rcv, device=job["device"], cache_dir=job.cache
            )
        results.append(
            visualize(
                m,
                layer,
                channels,
                seed=job["seed"],
                steps=steps,
                size=size,
                lr=lr,
                tv=tv,
                rcv=direction,
                rcv_measure=rcv_measure if from_file else rcv,
                device=job["device"],
                progress=True,
                command=job.command,
            )
        )
    write_visualize_run(out, results)
    _run_report(out, f"rcvlab visualize: {nets[0].name} {layer}", visualize_section(results))
    job.finish()
    for r in results:
        f = r.to_frame()
        click.echo(
            f"{r.weights}: objective {f['objective_start'].mean():.3g} -> "
            f"{f['objective_end'].mean():.3g} (mean of {len(f)} images)"
        )
    click.echo(f"wrote {out}/ (visualize.png, images/, visualize.csv, summary.md, report.html)")


@main.command("reproduce")
@click.argument("config", required=False)
@click.option("--list", "list_", is_flag=True, help="List the packaged configs and exit.")
@click.option("--show", default=None, metavar="NAME", help="Print a config's YAML and exit.")
@click.option("--imagenet", default=None, help="ImageNet images with bounding-box XML.")
@click.option("--histology", default=None, help="Nuclei patches in magnification folders.")
@click.option("--camelyon", default=None, help="Camelyon17 patches: a CSV or class folders.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key before validation (repeatable), e.g. "
    "--set steps.profile.reps=2 --set networks.iv3.model=mobilenet_v2.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the steps, the inputs each reads and the forward passes; write nothing.",
)
@shared(
    "device cache_dir force",
    force={"help": "Recompute every step of a finished run in --out."},
)
@click.option("--out", default=None, help="Run folder (default runs/<config name>).")
@friendly
def reproduce_cmd(
    config: str | None,
    list_: bool,
    show: str | None,
    imagenet: str | None,
    histology: str | None,
    camelyon: str | None,
    sets: tuple[str, ...],
    dry_run: bool,
    out: str | None,
    **common: Any,
) -> None:
    """Reproduce a paper with one command: CONFIG is a packaged name (see --list) or a YAML
    file; a rerun continues where it stopped, reusing every finished step."""
    from rcvlab.reproduce import (
        config_text,
        list_configs,
        load_config,
        parse_override,
        reproduce,
    )

    job = Job(common)
    if list_ or show is not None:
        given = [
            n
            for n, v in (("CONFIG", config), ("--dry-run", dry_run), ("--force", job["force"]))
            if v
        ]
        if given or (list_ and show is not None):
            raise RcvlabError(
                "--list and --show print and exit; give one of them alone (without "
                f"{', '.join(given) or '--list and --show together'})."
            )
        if list_:
            for name, title in list_configs().items():
                ins = load_config(name).inputs.values()
                needs = [f"--{i.name}" + ("" if i.required else " (optional)") for i in ins]
                needs = [n for n, i in zip(needs, ins, strict=True) if i.kind != "embedded"]
                click.echo(f"{name:18s} {title}; needs {', '.join(needs) or 'nothing'}")
        else:
            click.echo(config_text(show), nl=False)
        job.finish()
        return
    if config is None:
        raise RcvlabError(
            "Give a config: a packaged name (rcvlab reproduce --list) or a YAML file."
        )
    cfg = load_config(config, overrides=dict(parse_override(s) for s in sets))
    res = reproduce(
        cfg,
        {"imagenet": imagenet, "histology": histology, "camelyon": camelyon},
        out or f"runs/{cfg.name}",
        force=job["force"],
        cache_dir=job.cache,
        device=job["device"],
        dry_run=dry_run,
        echo=click.echo,
    )
    job.finish()
    if not dry_run:
        ran = sum(s.status == "ran" for s in res.steps)
        loaded = sum(s.status == "loaded" for s in res.steps)
        click.echo(
            f"{cfg.name}: {ran} step(s) run, {loaded} reused; wrote {out or f'runs/{cfg.name}'}/ "
            "(report.html, manifest.json, reproduce.json, steps/)"
        )


@main.command()
@shared(
    "out n_per_class reps regressor seed cache_dir force",
    out={
        "default": None,
        "required": False,
        "help": "Run folder (default runs/demo, or runs/demo-histo).",
    },
    n_per_class={
        "default": 300,
        "show_default": True,
        "help": "Images per class of the embedded scale set.",
    },
    regressor="ridge",
)
@click.option(
    "--models",
    "model_names",
    default="efficientnet_lite0,mobilenet_v2",
    show_default=True,
    help="Comma-separated networks (profiled one after another).",
)
@click.option(
    "--min-std",
    type=click.FloatRange(0, 1),
    default=None,
    help="Guard of the per-feature standardisation (see `rcvlab probe --help`).",
)
@click.option(
    "--histo",
    is_flag=True,
    help="Run the whole chain instead: profile -> best layer -> prune -> transfer "
    "(linear, 5 seeds) on the embedded histology set, for every --models network "
    "(default --out runs/demo-histo).",
)
@click.option(
    "--from-profile",
    "profile",
    default=None,
    help="With --histo: take the best layer from this profile.json.",
)
@click.option(
    "--reuse",
    is_flag=True,
    help="Run paper 004's chain instead, on the embedded real H&E: finetune each --models "
    "network (short, sized for 2 cores), its grad-CAM / grad-CAM++ maps, a few visualised "
    "channels, texture RCVs of random / pretrained / finetuned weights (default --out "
    "runs/demo-reuse; --n-per-class 64 patches per class).",
)
@shared("device")
@friendly
def demo(
    model_names: str,
    min_std: float | None,
    histo: bool,
    profile: str | None,
    reuse: bool,
    **common: Any,
) -> None:
    """Profile ImageNet-pretrained nets on the embedded scale set (offline); with --histo,
    the whole chain through pruning and transfer to the embedded histology set; with
    --reuse, what finetuning on H&E keeps (finetune, CAMs, channels, texture RCVs)."""
    from rcvlab.pipelines.demo import run_demo
    from rcvlab.pipelines.histo import run_histo_demo
    from rcvlab.pipelines.reuse import run_reuse_demo

    job = Job(common)
    models = csv_list(model_names) or []
    if not models:
        raise RcvlabError("--models is empty; give at least one network, e.g. mobilenet_v2.")
    if profile is not None and not histo:
        raise RcvlabError("--from-profile goes with --histo (it picks the pruning layer).")
    if histo and reuse:
        raise RcvlabError("--histo and --reuse are two different demos; give one of them.")
    if reuse:
        given = [f"--{n.replace('_', '-')}" for n in ("min_std",) if min_std is not None]
        if given:
            raise RcvlabError(f"{given[0]} does not apply to --reuse; leave it out.")
        out = job["out"] or "runs/demo-reuse"
        n = job["n_per_class"] if _given("n_per_class") else 64
        run_reuse_demo(
            out,
            models=models,
            n_per_class=n,
            reps=job["reps"],
            seed=job["seed"],
            regressor=job["regressor"],
            device=job["device"],
            cache_dir=job.cache,
            force=job["force"],
            command=job.command,
            echo=click.echo,
        )
        job.finish()
        click.echo(
            f"wrote {out}/ (report.html, reuse_chain.json, reuse_chain.csv; per network "
            f"{out}/<model>/ with finetune/, cam/, visualize/, texture/)"
        )
        return
    if job["device"] is not None:
        raise RcvlabError("--device goes with --reuse (the other demos pick the device).")
    kw = dict(
        models=models,
        n_per_class=job["n_per_class"],
        reps=job["reps"],
        seed=job["seed"],
        regressor=job["regressor"],
        min_std=min_std,
        cache_dir=job.cache,
        force=job["force"],
        command=job.command,
        echo=click.echo,
    )
    if histo:
        out = job["out"] or "runs/demo-histo"
        run_histo_demo(out, profile=profile, **kw)
        job.finish()
        click.echo(
            f"wrote {out}/ (report.html, histo_chain.json; per network {out}/<model>/ with "
            "profile.json, pruned.pt and the transfer files)"
        )
        return
    out = job["out"] or "runs/demo"
    res = run_demo(out, **kw)
    job.finish()
    click.echo(
        f"wrote {out}/ (report.html, profile.json, profile.csv, profile.png); "
        f"best layer of {res.profiles[0].model}: {res.profiles[0].best_layer}"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
