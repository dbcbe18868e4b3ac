"""The step kinds of a reproduction: each one of rcvlab's analyses, its options and files.

:data:`STEP_KINDS` maps a step ``kind`` to a :class:`StepKind`: the options it takes (with
defaults), ``run(ctx, step) -> Result`` (the analysis), ``write(folder, result, ctx)``
(the analysis's own ``report.write_*_run``), the result file a finished step is read back
from, and ``estimate(ctx, step)``: forward passes (images x networks x passes).

References inside a step: ``network`` / ``networks`` / ``compare_network`` name entries of
``networks``; ``data`` names an input; a layer written ``step:<id>`` is the best layer of
an earlier profile step (or the layer an earlier prune step cut at); a transfer variant
``pruned:step:<id>`` prunes there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from rcvlab.errors import RcvlabError
from rcvlab.result import Result, provenance

if TYPE_CHECKING:
    from rcvlab.reproduce.config import ReproConfig, StepSpec

STEP_PREFIX = "step:"
REQUIRED = object()
"""Marks an option without a default."""


@dataclass(frozen=True)
class Opt:
    """One step option: its type (``int``, ``float``, ``str``, ``bool``, ``list``, joined
    by ``|``, ``null`` allowed) and its default (:data:`REQUIRED` when it has none)."""

    type: str
    default: Any = None


@dataclass(frozen=True)
class PruneResult(Result):
    """A network cut after one layer (``pruned.pt`` beside it).

    Attributes
    ----------
    model : str
    weights : str
    layer : str
        The layer the network was cut after (GAP follows).
    params_full, params_pruned : int
        Parameter counts of the whole network and of the pruned one.
    describe : dict
        :meth:`rcvlab.prune.PrunedModel.describe`.
    meta : dict

    ``to_frame()`` has one row: ``model``, ``weights``, ``layer``, ``params_full``,
    ``params_pruned`` and ``reduction`` (the fraction of parameters removed; NaN when the
    full count is 0).
    """

    kind: ClassVar[str] = "prune"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "model",
        "weights",
        "layer",
        "params_full",
        "params_pruned",
        "reduction",
    )
    model: str
    weights: str
    layer: str
    params_full: int
    params_pruned: int
    describe: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def reduction(self) -> float:
        """Fraction of the parameters removed."""
        if self.params_full <= 0:
            return float("nan")
        return 1.0 - self.params_pruned / self.params_full

    def to_frame(self) -> pd.DataFrame:
        """One row (see the class docstring)."""
        row = {c: getattr(self, c) for c in self.frame_columns}
        return pd.DataFrame([row], columns=list(self.frame_columns))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "model": self.model,
            "weights": self.weights,
            "layer": self.layer,
            "params_full": self.params_full,
            "params_pruned": self.params_pruned,
            "describe": self.describe,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PruneResult:
        """Rebuild from :meth:`to_dict`."""
        return cls(
            model=str(d["model"]),
            weights=str(d["weights"]),
            layer=str(d["layer"]),
            params_full=int(d["params_full"]),
            params_pruned=int(d["params_pruned"]),
            describe=dict(d.get("describe", {})),
            meta=dict(d.get("meta", {})),
        )


class StepContext:
    """What a step's run sees: the config, the data, the networks, earlier results.

    Parameters
    ----------
    config : ReproConfig
    inputs : mapping
        Input name -> path (embedded inputs need none).
    out : path
        The run folder (steps write into ``out/steps/<id>``).
    device, cache_dir, batch_size, progress, command
        Passed to every analysis.
    results : dict
        Step id -> Result of the steps done so far.
    """

    def __init__(
        self,
        config: ReproConfig,
        inputs: Mapping[str, str | os.PathLike[str] | None],
        out: str | os.PathLike[str],
        *,
        device: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        batch_size: int = 32,
        progress: bool = False,
        command: str = "",
    ) -> None:
        self.config = config
        self.inputs = {k: v for k, v in inputs.items() if v is not None}
        self.out = Path(out)
        self.device = device
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.progress = progress
        self.command = command
        self.results: dict[str, Result] = {}
        self._data: dict[tuple[Any, ...], Any] = {}
        self._prints: dict[int, str] = {}
        self._nets: dict[str, Any] = {}
        #: Secondary results of a step (a CAM step's reference maps), by step id.
        self.extra: dict[str, Any] = {}

    def step_dir(self, step_id: str) -> Path:
        """The folder of a step."""
        return self.out / "steps" / step_id

    def seed(self, step: StepSpec) -> int:
        """The step's seed (its own, else the config's)."""
        s = step.get("seed")
        return self.config.seed if s is None else int(s)

    def data_spec(self, step: StepSpec) -> str:
        """The :func:`rcvlab.data.open_data` spec of the step's input."""
        from rcvlab.reproduce.config import INPUT_KINDS

        spec = self.config.inputs[step["data"]]
        if spec.kind == "embedded":
            return str(spec.data)
        if spec.name not in self.inputs:
            raise RcvlabError(
                f"Step {step.id} reads input {spec.name}, which was not given: add "
                f"--{spec.name} PATH."
            )
        fmt = step.get("data_format") or spec.format or INPUT_KINDS[spec.kind]
        return f"{fmt}:{os.fspath(self.inputs[spec.name])}"

    def data(self, step: StepSpec) -> Any:
        """The step's data set (opened once per input, format, classes, size and seed)."""
        from rcvlab.data import open_data

        spec = self.config.inputs[step["data"]]
        classes = step.get("classes") or spec.classes
        if isinstance(classes, str):
            classes = [c.strip() for c in classes.split(",") if c.strip()]
        n = step.get("n_per_class") or spec.n_per_class
        text = self.data_spec(step)
        opts = json.dumps(spec.options, sort_keys=True, default=str)  # lists are options too
        key = (text, tuple(classes or ()), n, self.seed(step), opts)
        if key not in self._data:
            kw: dict[str, Any] = dict(spec.options)
            if classes:
                kw["cls"] = list(classes)
            if n is not None:
                kw["n_per_class"] = n
            if spec.kind == "embedded" or n is not None:
                kw["seed"] = self.seed(step)
            self._data[key] = open_data(text, **kw)
        return self._data[key]

    def net(self, net_id: str) -> Any:
        """The network ``net_id`` (a finetune step's model for ``step:<id>`` weights)."""
        from rcvlab.models import load_model

        if net_id not in self._nets:
            spec = self.config.networks[net_id]
            weights = spec.weights
            if spec.from_step is not None:
                weights = os.fspath(self.step_dir(spec.from_step) / "model.pt")
            self._nets[net_id] = load_model(
                spec.model, weights, seed=self.config.seed, input_size=spec.input_size
            )
        return self._nets[net_id]

    def layer(self, value: str) -> str:
        """A layer name, or the layer an earlier profile / prune step chose (``step:<id>``)."""
        if not value.startswith(STEP_PREFIX):
            return value
        res = self.results[value[len(STEP_PREFIX) :]]
        if isinstance(res, PruneResult):
            return res.layer
        return str(res.best_layer)  # type: ignore[attr-defined]

    def fingerprint(self, data: Any) -> str:
        """``data.fingerprint()``, computed once per opened data set (it hashes every id)."""
        key = id(data)
        if key not in self._prints:
            self._prints[key] = data.fingerprint()
        return self._prints[key]

    def fingerprints(self) -> dict[str, str]:
        """The fingerprint of every data set opened so far, by its spec."""
        return {str(k[0]): self.fingerprint(d) for k, d in self._data.items()}

    def n_images(self, step: StepSpec) -> int:
        """Images the step reads (0 for steps without data)."""
        return len(self.data(step)) if step.get("data") else 0


@dataclass(frozen=True)
class StepKind:
    """One kind of step (see the module docstring)."""

    options: dict[str, Opt]
    run: Callable[[StepContext, StepSpec], Result]
    write: Callable[[Path, Result, StepContext], Any]
    result_file: str
    estimate: Callable[[StepContext, StepSpec], int]
    help: str = ""
    load: Callable[[Path], Result] | None = None

    def read(self, folder: Path) -> Result:
        """A finished step's result, read from its folder."""
        if self.load is not None:
            return self.load(folder)
        from rcvlab.result import load_result

        return load_result(folder / self.result_file)


def reads(step: StepSpec) -> tuple[str, ...]:
    """The inputs a step reads."""
    return (step["data"],) if step.get("data") else ()


# --- options ---------------------------------------------------------------------------

_COMMON = {"seed": Opt("int|null"), "batch_size": Opt("int|null")}
_DATA = {
    "data": Opt("str", REQUIRED),
    "data_format": Opt("str|null"),
    "classes": Opt("list|str|null"),
    "n_per_class": Opt("int|null"),
}
_NET = {"network": Opt("str", REQUIRED)}


def _opts(*parts: Mapping[str, Opt], **own: Opt) -> dict[str, Opt]:
    d: dict[str, Opt] = {}
    for p in parts:
        d.update(p)
    d.update(own)
    return {**d, **_COMMON}


def check_step_options(
    path: str, kind: str, given: Mapping[str, Any], err: Callable[[str, str], Exception]
) -> dict[str, Any]:
    """Check a step's options against its kind's; fill in the defaults.

    Parameters
    ----------
    path : str
        ``steps.<id>``, for the messages.
    kind : str
    given : mapping
        The step's keys other than id and kind.
    err : callable
        ``err(key_path, message) -> Exception``.
    """
    from rcvlab.errors import did_you_mean
    from rcvlab.reproduce.config import check_type

    spec = STEP_KINDS[kind].options
    for k in given:
        if k not in spec:
            raise err(
                f"{path}.{k}",
                f"unknown key {k!r} for a {kind} step; known: {', '.join(spec)}."
                f"{did_you_mean(str(k), spec)}",
            )
    out: dict[str, Any] = {}
    for k, o in spec.items():
        if k in given:
            out[k] = check_type(f"{path}.{k}", given[k], o.type)
        elif o.default is REQUIRED:
            raise err(f"{path}.{k}", f"missing; a {kind} step needs {k!r}.")
        else:
            out[k] = list(o.default) if isinstance(o.default, tuple) else o.default
    return out


def _step_ref(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(STEP_PREFIX):
        return value[len(STEP_PREFIX) :]
    return None


def step_refs(step: StepSpec) -> Iterator[tuple[str, str, str]]:
    """``(key, what, name)`` for every reference of a step: ``what`` is ``input``,
    ``network`` or ``step:<kinds>`` (an earlier step of one of those kinds)."""
    o = step.options
    if o.get("data"):
        yield "data", "input", o["data"]
    for key in ("network", "compare_network"):
        if o.get(key):
            yield key, "network", o[key]
    for n in o.get("networks") or ():
        yield "networks", "network", str(n)
    for key in ("layer", "at"):
        ref = _step_ref(o.get(key))
        if ref is not None:
            yield key, "step:profile,prune", ref
    for v in o.get("variants") or ():
        if str(v).startswith("pruned:"):
            ref = _step_ref(str(v)[len("pruned:") :])
            if ref is not None:
                yield "variants", "step:profile,prune", ref


def step_deps(step: StepSpec, config: ReproConfig) -> set[str]:
    """The earlier steps this step needs (results or finetuned models)."""
    deps = {name for _, what, name in step_refs(step) if what.startswith("step")}
    for _, what, name in step_refs(step):
        if what == "network":
            src = config.networks[name].from_step
            if src is not None:
                deps.add(src)
    return deps


def _layer_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return []
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def step_layers(step: StepSpec) -> Iterator[tuple[str, str, list[str]]]:
    """``(key, network id, layer names)`` a step names explicitly (``step:<id>`` and
    ``all`` are resolved at run time and left out)."""
    o = step.options
    nets = [o["network"]] if o.get("network") else [str(n) for n in o.get("networks") or ()]
    if o.get("compare_network"):
        nets.append(o["compare_network"])
    for key in ("layers", "layer", "at"):
        names = [x for x in _layer_list(o.get(key)) if _step_ref(x) is None]
        for n in nets:
            if names:
                yield key, n, names
    pruned = [
        str(v)[len("pruned:") :]
        for v in o.get("variants") or ()
        if str(v).startswith("pruned:") and _step_ref(str(v)[len("pruned:") :]) is None
    ]
    if pruned and nets:
        yield "variants", nets[0], pruned


# --- the kinds --------------------------------------------------------------------------


def _kw(ctx: StepContext, step: StepSpec, *, cache: bool = True) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "batch_size": step.get("batch_size") or ctx.batch_size,
        "device": ctx.device,
        "progress": ctx.progress,
        "command": ctx.command,
    }
    if cache:
        kw["cache_dir"] = ctx.cache_dir
    return kw


def _profile(ctx: StepContext, step: StepSpec) -> Result:
    from rcvlab.analyses import layer_profile

    layers = step["layers"]
    return layer_profile(
        ctx.net(step["network"]),
        ctx.data(step),
        measure=step["measure"],
        layers=None if _layer_list(layers) == [] else _layer_list(layers),
        baselines=list(step["baselines"]),
        regressor=step["regressor"],
        alpha=step["alpha"],
        reps=step["reps"],
        test_fraction=step["test_fraction"],
        seed=ctx.seed(step),
        split=step["split"],
        pooling=step["pooling"],
        min_std=step["min_std"],
        **_kw(ctx, step),
    )


def _write_profile(folder: Path, res: Result, ctx: StepContext) -> Any:
    from rcvlab.report.run import write_profile_run

    return write_profile_run(folder, [res])  # type: ignore[list-item]


def _est_profile(ctx: StepContext, step: StepSpec) -> int:
    return ctx.n_images(step) * (1 + ("random" in step["baselines"]))


def _prune(ctx: StepContext, step: StepSpec) -> Result:
    from rcvlab.prune import check_prune_layer, prune

    net = ctx.net(step["network"])
    layer = ctx.layer(step["at"])
    check_prune_layer(net, layer)
    pm = prune(net, at=layer)
    d = pm.describe()
    folder = ctx.step_dir(step.id)
    pm.save(folder / "pruned.pt")
    full = int(sum(p.numel() for p in net.module.parameters()))
    kept = int(sum(p.numel() for p in pm.parameters()))
    return PruneResult(
        model=net.name,
        weights=str(net.weights),
        layer=layer,
        params_full=full,
        params_pruned=kept,
        describe=d,
        meta=provenance(command=ctx.command, seed=ctx.seed(step)),
    )


def _write_prune(folder: Path, res: Result, ctx: StepContext) -> Any:
    from rcvlab.runio import write_text

    res.to_json(folder / "prune.json")
    write_text(folder / "prune.csv", res.to_frame().to_csv(index=False))


def _transfer_variants(ctx: StepContext, step: StepSpec) -> list[str]:
    out = []
    for v in step["variants"]:
        v = str(v)
        if v.startswith("pruned:"):
            v = f"pruned:{ctx.layer(v[len('pruned:') :])}"
        out.append(v)
    return out


def _transfer(ctx: StepContext, step: StepSpec) -> Result:
    from rcvlab.analyses.transfer import parse_variants, transfer

    net = ctx.net(step["network"])
    variants = _transfer_variants(ctx, step)
    parse_variants(variants, net)
    kw = _kw(ctx, step)
    kw["feature_batch_size"] = kw["batch_size"]
    folder = ctx.step_dir(step.id)
    return transfer(
        net,
        ctx.data(step),
        variants,
        seeds=step["seeds"],
        mode=step["mode"],
        measure=step["measure"],
        epochs=step["epochs"],
        lr=step["lr"],
        seed=ctx.seed(step),
        checkpoint_dir=folder / "checkpoints" if step["mode"] == "finetune" else None,
        **kw,
    )


def _write_transfer(folder: Path, res: Result, ctx: StepContext) -> Any:
    from rcvlab.report.transfer import write_transfer_run

    return write_transfer_run(folder, res)  # type: ignore[arg-type]


def _est_transfer(ctx: StepContext, step: StepSpec) -> int:
    n = ctx.n_images(step)
    variants = [str(v) for v in step["variants"]]
    if step["mode"] == "finetune":
        return n * step["epochs"] * step["seeds"] * len(variants)
    # linear heads on cached features: the pretrained network (pruned variants read the
    # same pass) and the random twin of ``scratch``
    return n * (1 + ("scratch" in variants))


def _one_layer(ctx: StepContext, step: StepSpec) -> dict[str, Any]:
    kw = _kw(ctx, step)
    kw.pop("progress", None)
    command = kw.pop("command")
    return dict(
        layer=ctx.layer(step["layer"]),
        measure=step["measure"],
        seed=ctx.seed(step),
        command=command,
        progress=ctx.progress,
        **kw,
    )


def _alphas(value: Any) -> list[float]:
    import numpy as np

    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) == 3:
            return np.linspace(float(parts[0]), float(parts[1]), int(parts[2])).tolist()
        return [float(v) for v in value.split(",") if v.strip()]
    return [float(v) for v in value]


def _sparsity(ctx: StepContext, step: StepSpec) -> Result:
    from rcvlab.analyses import sparsity

    tc = step["test_classes"]
    return sparsity(
        ctx.net(step["network"]),
        ctx.data(step),
        train_class=str(step["train_class"]),
        test_classes=_layer_list(tc) or None,
        alphas=_alphas(step["alphas"]),
        reps=step["reps"],
        test_fraction=step["test_fraction"],
        **_one_layer(ctx, step),
    )


def _alignment(ctx: StepContext, step: StepSpec) -> Result:
    from rcvlab.analyses import alignment

    return alignment(
        ctx.net(step["network"]),
        ctx.data(step),
        train_class=step["train_class"],
        alpha=step["alpha"],
        max_dims=step["max_dims"],
        **_one_layer(ctx, step),
    )


def _consistency(ctx: StepContext, step: StepSpec) -> Result:
    from rcvlab.analyses import consistency

    return consistency(
        ctx.net(step["network"]),
        ctx.data(step),
        classes=_layer_list(step["classes_compared"]) or None,
        reps=step["reps"],
        alpha=step["alpha"],
        **_one_layer(ctx, step),
    )


def _relevance(ctx: StepContext, step: StepSpec) -> Result:
    from rcvlab.analyses import relevance

    kw = _kw(ctx, step, cache=False)
    return relevance(
        ctx.net(step["network"]),
        ctx.data(step),
        layer=ctx.layer(step["layer"]),
        measures=_layer_list(step["measures"]),
        target_class=step["target_class"],
        regressor=step["regressor"],
        alpha=step["alpha"],
        reps=step["reps"],
        seed=ctx.seed(step),
        **kw,
    )


def _encoding_writer(name: str) -> Callable[[Path, Result, StepContext], Any]:
    def write(folder: Path, res: Result, ctx: StepContext) -> Any:
        import rcvlab.report.encoding as enc
        import rcvlab.report.relevance as rel

        mod = rel if name == "relevance" else enc
        return getattr(mod, f"write_{name}_run")(folder, res)

    return write


def _est_images(ctx: StepContext, step: StepSpec) -> int:
    return ctx.n_images(step)


def _finetune(ctx: StepContext, step: StepSpec) -> Result:
    from rcvlab.analyses.finetune import check_binary_classes, finetune

    data = ctx.data(step)
    check_binary_classes(data, step["positive"])
    return finetune(
        ctx.net(step["network"]),
        data,
        epochs=step["epochs"],
        lr=step["lr"],
        decay=step["decay"],
        momentum=step["momentum"],
        batch_size=step.get("batch_size") or ctx.batch_size,
        positive=step["positive"],
        val_fraction=step["val_fraction"],
        augment=step["augment"],
        seed=ctx.seed(step),
        device=ctx.device,
        progress=ctx.progress,
        command=ctx.command,
    )


def _write_finetune(folder: Path, res: Result, ctx: StepContext) -> Any:
    from rcvlab.report.finetune import write_finetune_run

    return write_finetune_run(folder, res)  # type: ignore[arg-type]


def _load_finetune(folder: Path) -> Result:
    from rcvlab.report.finetune import read_finetune_run

    return read_finetune_run(folder)


def _est_finetune(ctx: StepContext, step: StepSpec) -> int:
    # every epoch: the training images forward (and backward), the validation images forward
    return ctx.n_images(step) * step["epochs"]


def _target(value: Any) -> int | str:
    s = str(value).strip()
    return int(s) if s.lstrip("-").isdigit() else s


def _cam(ctx: StepContext, step: StepSpec) -> Result:
    from rcvlab.analyses.cam import cam, check_methods, fallback_target, resolve_target

    net = ctx.net(step["network"])
    data = ctx.data(step)
    target = _target(step["target"])
    resolve_target(net, target)
    kw: dict[str, Any] = dict(
        layer=None if step["layer"] is None else ctx.layer(step["layer"]),
        method=check_methods(_layer_list(step["methods"])),
        batch_size=step.get("batch_size") or 16,
        device=ctx.device,
        command=ctx.command,
    )
    res = cam(net, data, target=target, top=step["top"], min_prob=step["min_prob"], **kw)
    if step["compare_network"]:
        other = ctx.net(step["compare_network"])
        ref = cam(other, data, target=fallback_target(other, target), indices=res.indices, **kw)
        ctx.extra[step.id] = ref
    return res


def _write_cam(folder: Path, res: Result, ctx: StepContext) -> Any:
    from rcvlab.report.cam import write_cam_run

    return write_cam_run(folder, res, compare=ctx.extra.get(folder.name))  # type: ignore[arg-type]


def _est_cam(ctx: StepContext, step: StepSpec) -> int:
    n = ctx.n_images(step)
    # probabilities of every image, then forward + backward of the kept ones, per network
    return (n + min(n, step["top"] or n)) * (1 + bool(step["compare_network"]))


def _visualize(ctx: StepContext, step: StepSpec) -> Result:
    from rcvlab.analyses.visualize import schedule, visualize

    schedule(step["steps"], step["lr"], step["tv"])
    net = ctx.net(step["network"])
    return visualize(
        net,
        ctx.layer(step["layer"]),
        step["channels"],
        seed=ctx.seed(step),
        steps=step["steps"],
        size=step["size"],
        lr=step["lr"],
        tv=step["tv"],
        device=ctx.device,
        progress=ctx.progress,
        command=ctx.command,
    )


def _write_visualize(folder: Path, res: Result, ctx: StepContext) -> Any:
    from rcvlab.report.visualize import write_visualize_run

    return write_visualize_run(folder, [res])  # type: ignore[list-item]


def _est_visualize(ctx: StepContext, step: StepSpec) -> int:
    from rcvlab.analyses.visualize import parse_channels, schedule

    stages = schedule(step["steps"], step["lr"], step["tv"])
    n_steps = sum(s.steps for s in stages)
    return len(parse_channels(step["channels"], None)) * n_steps


def _texture(ctx: StepContext, step: StepSpec) -> Result:
    from rcvlab.analyses.weights import compare_weights

    nets = [ctx.net(str(n)) for n in step["networks"]]
    layers = _layer_list(step["layers"])
    kw = _kw(ctx, step)
    return compare_weights(
        nets,
        ctx.data(step),
        measures=_layer_list(step["measures"]),
        layers=layers or None,
        reps=step["reps"],
        test_fraction=step["test_fraction"],
        regressor=step["regressor"],
        alpha=step["alpha"],
        split=step["split"],
        seed=ctx.seed(step),
        insample=step["insample"],
        min_std=step["min_std"],
        **kw,
    )


def _write_texture(folder: Path, res: Result, ctx: StepContext) -> Any:
    from rcvlab.report.weights import write_weights_run

    return write_weights_run(folder, res)  # type: ignore[arg-type]


def _est_texture(ctx: StepContext, step: StepSpec) -> int:
    return ctx.n_images(step) * len(step["networks"])


def _resize(ctx: StepContext, step: StepSpec) -> Result:
    from rcvlab.analyses.resize import parse_interps, resize_sweep
    from rcvlab.sizes import parse_sizes

    net = ctx.net(step["network"])
    kw = _kw(ctx, step, cache=False)
    return resize_sweep(
        net,
        ctx.data(step),
        sizes=parse_sizes(step["sizes"]),
        interps=parse_interps(step["interps"]),
        seed=ctx.seed(step),
        **kw,
    )


def _write_resize(folder: Path, res: Result, ctx: StepContext) -> Any:
    from rcvlab.report.resize import write_resize_run

    return write_resize_run(folder, res)  # type: ignore[arg-type]


def _est_resize(ctx: StepContext, step: StepSpec) -> int:
    from rcvlab.analyses.resize import parse_interps
    from rcvlab.sizes import parse_sizes

    sizes = parse_sizes(step["sizes"])
    return ctx.n_images(step) * len(sizes) * len(parse_interps(step["interps"]))


def _noise(ctx: StepContext, step: StepSpec) -> Result:
    from rcvlab.analyses.noise import check_noise_options, noise_size
    from rcvlab.sizes import parse_sizes

    kw = dict(
        sizes=parse_sizes(step["sizes"]),
        n_train=step["n_train"],
        n_test=step["n_test"],
        reps=step["reps"],
        regressor=step["regressor"],
        alpha=step["alpha"],
        seed=ctx.seed(step),
    )
    batch = step.get("batch_size") or ctx.batch_size
    check_noise_options(**kw, batch_size=batch)
    layers = _layer_list(step["layers"])
    return noise_size(
        ctx.net(step["network"]),
        layers=layers or None,
        batch_size=batch,
        device=ctx.device,
        progress=ctx.progress,
        command=ctx.command,
        **kw,
    )


def _write_noise(folder: Path, res: Result, ctx: StepContext) -> Any:
    from rcvlab.report.noise import write_noise_run

    return write_noise_run(folder, res)  # type: ignore[arg-type]


def _est_noise(ctx: StepContext, step: StepSpec) -> int:
    # every repetition draws n_train + n_test new noise images
    return (step["n_train"] + step["n_test"]) * step["reps"]


_LAYER_ONE = {"layer": Opt("str", REQUIRED), "measure": Opt("str", "scale_ratio")}

STEP_KINDS: dict[str, StepKind] = {
    "profile": StepKind(
        options=_opts(
            _NET,
            _DATA,
            measure=Opt("str", "scale_ratio"),
            layers=Opt("list|str", "all"),
            baselines=Opt("list", ("random", "shuffled")),
            regressor=Opt("str", "ols"),
            alpha=Opt("float|null"),
            reps=Opt("int", 10),
            test_fraction=Opt("float", 0.3),
            split=Opt("str|null"),
            pooling=Opt("str", "gap"),
            min_std=Opt("float|null"),
        ),
        run=_profile,
        write=_write_profile,
        result_file="profile.json",
        estimate=_est_profile,
        help="layer-wise RCV profile with the random-weights and shuffled baselines",
    ),
    "resize_sweep": StepKind(
        options=_opts(
            _NET, _DATA, sizes=Opt("str|list", "75:500:25"), interps=Opt("list|str", "lanczos")
        ),
        run=_resize,
        write=_write_resize,
        result_file="sweep.json",
        estimate=_est_resize,
        help="probability of the correct class per input size",
    ),
    "noise_size": StepKind(
        options=_opts(
            _NET,
            layers=Opt("list|str", "all"),
            sizes=Opt("str|list", "150:500:50"),
            n_train=Opt("int", 5),
            n_test=Opt("int", 20),
            reps=Opt("int", 10),
            regressor=Opt("str", "ols"),
            alpha=Opt("float|null"),
        ),
        run=_noise,
        write=_write_noise,
        result_file="noise.json",
        estimate=_est_noise,
        help="regress the width of noise images, regular vs corrected GAP",
    ),
    "prune": StepKind(
        options=_opts(_NET, at=Opt("str", REQUIRED)),
        run=_prune,
        write=_write_prune,
        result_file="prune.json",
        estimate=lambda ctx, step: 1,  # the pruned network is checked on one input
        help="cut the network after a layer (parameter counts)",
    ),
    "transfer": StepKind(
        options=_opts(
            _NET,
            _DATA,
            variants=Opt("list", ("pretrained", "scratch")),
            seeds=Opt("int", 10),
            mode=Opt("str", "linear"),
            measure=Opt("str", "nuclei_area"),
            epochs=Opt("int", 5),
            lr=Opt("float", 1e-4),
        ),
        run=_transfer,
        write=_write_transfer,
        result_file="transfer.json",
        estimate=_est_transfer,
        help="single-unit heads on the nuclei area: MAE, kappa, Wilcoxon",
    ),
    "sparsity": StepKind(
        options=_opts(
            _NET,
            _DATA,
            _LAYER_ONE,
            train_class=Opt("str", REQUIRED),
            test_classes=Opt("list|str|null"),
            alphas=Opt("list|str", "0:0.01:21"),
            reps=Opt("int", 10),
            test_fraction=Opt("float", 0.5),
        ),
        run=_sparsity,
        write=_encoding_writer("sparsity"),
        result_file="sparsity.json",
        estimate=_est_images,
        help="Lasso path: non-zero coefficients vs test R², same and other classes",
    ),
    "alignment": StepKind(
        options=_opts(
            _NET,
            _DATA,
            _LAYER_ONE,
            train_class=Opt("str|null"),
            alpha=Opt("float", 0.001),
            max_dims=Opt("int", 200),
        ),
        run=_alignment,
        write=_encoding_writer("alignment"),
        result_file="alignment.json",
        estimate=_est_images,
        help="cumulative norm of the RCV over its largest components",
    ),
    "consistency": StepKind(
        options=_opts(
            _NET,
            _DATA,
            _LAYER_ONE,
            classes_compared=Opt("list|str|null"),
            reps=Opt("int", 10),
            alpha=Opt("float", 0.001),
        ),
        run=_consistency,
        write=_encoding_writer("consistency"),
        result_file="consistency.json",
        estimate=_est_images,
        help="angles between RCVs of splits, classes and shuffled measures",
    ),
    "relevance": StepKind(
        options=_opts(
            _NET,
            _DATA,
            layer=Opt("str", REQUIRED),
            measures=Opt("list|str", ("scale_ratio",)),
            target_class=Opt("str|int", REQUIRED),
            regressor=Opt("str", "ridge"),
            alpha=Opt("float|null"),
            reps=Opt("int", 10),
        ),
        run=_relevance,
        write=_encoding_writer("relevance"),
        result_file="relevance.json",
        estimate=_est_images,
        help="sensitivity of a class logit along the RCV",
    ),
    "finetune": StepKind(
        options=_opts(
            _NET,
            _DATA,
            epochs=Opt("int", 30),
            lr=Opt("float", 1e-4),
            decay=Opt("float", 1e-6),
            momentum=Opt("float", 0.9),
            positive=Opt("str", "tumour"),
            val_fraction=Opt("float", 0.2),
            augment=Opt("bool", True),
        ),
        run=_finetune,
        write=_write_finetune,
        result_file="finetune.json",
        estimate=_est_finetune,
        load=_load_finetune,
        help="finetune end to end on two classes (model.pt)",
    ),
    "cam": StepKind(
        options=_opts(
            _NET,
            _DATA,
            layer=Opt("str|null"),
            methods=Opt("list|str", ("gradcam", "gradcam++")),
            target=Opt("str|int", "tumour"),
            top=Opt("int|null", 16),
            min_prob=Opt("float|null"),
            compare_network=Opt("str|null"),
        ),
        run=_cam,
        write=_write_cam,
        result_file="cam.json",
        estimate=_est_cam,
        help="grad-CAM / grad-CAM++ maps of a class logit",
    ),
    "visualize": StepKind(
        options=_opts(
            _NET,
            layer=Opt("str", REQUIRED),
            channels=Opt("str|list", REQUIRED),
            steps=Opt("int|null"),
            size=Opt("int", 128),
            lr=Opt("float|null"),
            tv=Opt("float|null"),
        ),
        run=_visualize,
        write=_write_visualize,
        result_file="visualize.json",
        estimate=_est_visualize,
        help="activation maximisation of single channels",
    ),
    "texture": StepKind(
        options=_opts(
            _DATA,
            networks=Opt("list", REQUIRED),
            measures=Opt("list|str", ("glcm_asm", "glcm_contrast", "glcm_correlation")),
            layers=Opt("list|str", "all"),
            reps=Opt("int", 10),
            test_fraction=Opt("float", 0.3),
            regressor=Opt("str", "ols"),
            alpha=Opt("float|null"),
            split=Opt("str", "pooled"),
            insample=Opt("bool", True),
            min_std=Opt("float|null"),
        ),
        run=_texture,
        write=_write_texture,
        result_file="weights_comparison.json",
        estimate=_est_texture,
        help="texture RCVs across weights (random / pretrained / finetuned)",
    ),
}


def estimate(ctx: StepContext, step: StepSpec) -> int:
    """Forward passes of a step: images x networks x passes (see each kind's rule)."""
    return int(STEP_KINDS[step.kind].estimate(ctx, step))


__all__ = [
    "STEP_KINDS",
    "Opt",
    "PruneResult",
    "StepContext",
    "StepKind",
    "check_step_options",
    "estimate",
    "reads",
    "step_deps",
    "step_layers",
    "step_refs",
]
