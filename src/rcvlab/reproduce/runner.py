"""Run a reproduction config: every step in order, resumable, with a manifest.

Each step writes ``out/steps/<id>/`` (its analysis's own run files and a ``run.json``
marked complete last). A rerun of the same config loads every complete step from its
result file and runs only the rest; features come from the feature cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from rcvlab.reproduce.config import ReproConfig, StepSpec, check_inputs, check_layers
from rcvlab.reproduce.steps import STEP_KINDS, StepContext, estimate, reads, step_deps
from rcvlab.result import Result, dump_json, provenance

STATUSES = ("ran", "loaded", "skipped", "planned")


@dataclass(frozen=True)
class StepRecord:
    """One step of a reproduction: what it is, what became of it.

    ``status`` is ran, loaded (a complete step of an earlier run), skipped (an optional
    input not given, or a step it needs skipped; ``note`` says which) or planned (dry run).
    """

    id: str
    kind: str
    status: str
    seconds: float
    result_file: str
    forward_passes: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "seconds": self.seconds,
            "result_file": self.result_file,
            "forward_passes": self.forward_passes,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepRecord:
        """Rebuild from :meth:`to_dict`."""
        from rcvlab.result import nan_if_none

        return cls(
            id=str(d["id"]),
            kind=str(d["kind"]),
            status=str(d["status"]),
            seconds=nan_if_none(d["seconds"]),
            result_file=str(d["result_file"]),
            forward_passes=int(d["forward_passes"]),
            note=str(d.get("note", "")),
        )


@dataclass(frozen=True)
class ReproduceResult(Result):
    """A reproduction run: the config and every step's record.

    Attributes
    ----------
    name, paper, title : str
        Of the config.
    config_hash : str
        SHA-256 of the config text and its overrides.
    steps : tuple of StepRecord
        In order.
    meta : dict
        Provenance (with ``inputs``: input name -> path or embedded spec).

    ``to_frame()`` has one row per step: ``step`` (its id), ``kind``, ``status`` (ran,
    loaded, skipped, planned), ``seconds`` (wall time of the run that computed it; NaN for
    a skipped or planned step), ``result_file`` (relative to the run folder),
    ``forward_passes`` (the estimate: images x networks x passes) and ``note``.
    """

    kind: ClassVar[str] = "reproduce"
    frame_columns: ClassVar[tuple[str, ...]] = (
        "step",
        "kind",
        "status",
        "seconds",
        "result_file",
        "forward_passes",
        "note",
    )
    name: str
    paper: str
    title: str
    config_hash: str
    steps: tuple[StepRecord, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per step (see the class docstring)."""
        rows = [
            {
                "step": s.id,
                "kind": s.kind,
                "status": s.status,
                "seconds": s.seconds,
                "result_file": s.result_file,
                "forward_passes": s.forward_passes,
                "note": s.note,
            }
            for s in self.steps
        ]
        return pd.DataFrame(rows, columns=list(self.frame_columns))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "name": self.name,
            "paper": self.paper,
            "title": self.title,
            "config_hash": self.config_hash,
            "steps": [s.to_dict() for s in self.steps],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReproduceResult:
        """Rebuild from :meth:`to_dict`."""
        return cls(
            name=str(d["name"]),
            paper=str(d["paper"]),
            title=str(d["title"]),
            config_hash=str(d["config_hash"]),
            steps=tuple(StepRecord.from_dict(s) for s in d["steps"]),
            meta=dict(d.get("meta", {})),
        )

    def load_step(self, out: str | os.PathLike[str], step_id: str) -> Result:
        """The result of one finished step of the run folder ``out``."""
        rec = next((s for s in self.steps if s.id == step_id), None)
        if rec is None or rec.status not in ("ran", "loaded"):
            from rcvlab.errors import UnknownNameError

            raise UnknownNameError(f"No finished step {step_id!r} in {out}.")
        return STEP_KINDS[rec.kind].read(Path(out) / "steps" / step_id)


def step_results(out: str | os.PathLike[str], result: ReproduceResult) -> dict[str, Result]:
    """Every finished step's result of a run folder, by step id (for reports and
    :func:`rcvlab.reproduce.published.compare`)."""
    return {
        s.id: result.load_step(out, s.id) for s in result.steps if s.status in ("ran", "loaded")
    }


def step_key(config: ReproConfig, step: StepSpec, ctx: StepContext, earlier: list[str]) -> str:
    """What a finished step was made from: its options, its networks, the fingerprints of the
    data it reads, the seed and the keys of every earlier step. A rerun reuses a finished
    step only when this is unchanged."""
    names = [step.get("network"), step.get("compare_network"), *(step.get("networks") or ())]
    payload = {
        "kind": step.kind,
        "options": step.options,
        "networks": {n: asdict(config.networks[n]) for n in names if n},
        "data": ctx.fingerprint(ctx.data(step)) if reads(step) else None,
        "seed": ctx.seed(step),
        "earlier": earlier,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _command(config: ReproConfig) -> str:
    return f"rcvlab reproduce {config.name} (config {config.hash[:16]})"


def _input_label(config: ReproConfig, inputs: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for name, spec in config.inputs.items():
        if spec.kind == "embedded":
            out[name] = f"embedded:{spec.data}"
        elif inputs.get(name) is not None:
            out[name] = os.fspath(inputs[name])
        else:
            out[name] = "(not given)"
    return out


def _skips(config: ReproConfig, inputs: Mapping[str, Any]) -> dict[str, str]:
    """Steps that cannot run (an optional input not given, or a step they need skipped)."""
    skipped: dict[str, str] = {}
    for step in config.steps:
        for name in reads(step):
            spec = config.inputs[name]
            if spec.kind != "embedded" and inputs.get(name) is None:
                skipped[step.id] = f"input {name} not given (--{name})"
        for dep in sorted(step_deps(step, config)):
            if dep in skipped and step.id not in skipped:
                skipped[step.id] = f"needs step {dep}, skipped"
    return skipped


def reproduce(
    config: ReproConfig,
    inputs: Mapping[str, str | os.PathLike[str] | None],
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    batch_size: int = 32,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> ReproduceResult:
    """Run every step of a config, in order; resume an interrupted run.

    Parameters
    ----------
    config : ReproConfig
        From :func:`rcvlab.reproduce.load_config`.
    inputs : mapping
        Input name -> path (``{"imagenet": DIR, "histology": DIR}``); embedded inputs need
        none. Steps reading an optional input that is not given are skipped.
    out : path
        The run folder: ``steps/<id>/`` per step, ``manifest.json``, ``reproduce.json``,
        ``report.html``, ``run.json``.
    force : bool
        Start over in a folder that holds a finished run (every step is recomputed).
    cache_dir : path, optional
        Feature cache shared by the steps (None: no cache).
    device : str, optional
    batch_size : int
        Default batch size of the steps (a step's ``batch_size`` wins).
    dry_run : bool
        Print the steps, the inputs each reads and the estimated forward passes; check
        everything; write nothing.
    echo : callable
        Progress lines.
    progress : bool
        Progress bars of the analyses.

    Returns
    -------
    ReproduceResult

    Raises
    ------
    RcvlabError
        Before any work: a required input not given or missing, a layer a network lacks,
        an output folder that holds another run.
    """
    from rcvlab.runio import finish_run, prepare_out, read_run

    inputs = {k: v for k, v in inputs.items() if v is not None}
    check_inputs(config, inputs)
    check_layers(config)
    out_dir = Path(out)
    command = _command(config)
    ctx = StepContext(
        config,
        inputs,
        out_dir,
        device=device,
        cache_dir=cache_dir,
        batch_size=batch_size,
        progress=progress,
        command=command,
    )
    skipped = _skips(config, inputs)
    labels = _input_label(config, inputs)
    if dry_run:
        return _dry_run(config, ctx, skipped, labels, echo)

    if force and out_dir.is_dir() and (read_run(out_dir) or {}).get("status") == "complete":
        fresh = True
    else:
        fresh = False
    for step in config.steps:  # every data set opened (and checked) before the first step
        if step.id not in skipped and reads(step):
            ctx.data(step)
    prepare_out(out_dir, force=force, command=command)
    records: list[StepRecord] = []
    keys: list[str] = []
    t_all = time.perf_counter()
    for step in config.steps:
        kind = STEP_KINDS[step.kind]
        folder = ctx.step_dir(step.id)
        rel = f"steps/{step.id}/{kind.result_file}"
        if step.id in skipped:
            echo(f"[{step.id}] skipped: {skipped[step.id]}")
            records.append(
                StepRecord(step.id, step.kind, "skipped", float("nan"), "", 0, skipped[step.id])
            )
            continue
        n_est = estimate(ctx, step)
        key = step_key(config, step, ctx, keys)
        keys.append(key)
        prev = read_run(folder)
        done = prev is not None and prev.get("status") == "complete"
        if done and not fresh and prev.get("step_key") != key:
            echo(f"[{step.id}] its options, data or an earlier step changed: running it again")
        if not fresh and done and prev.get("step_key") == key:
            ctx.results[step.id] = kind.read(folder)
            secs = float(prev.get("seconds", float("nan")))
            echo(f"[{step.id}] {step.kind}: complete in an earlier run, loaded")
            records.append(StepRecord(step.id, step.kind, "loaded", secs, rel, n_est))
            continue
        echo(f"[{step.id}] {step.kind}: running (about {n_est:,} forward passes)")
        if folder.exists():  # no file of an earlier attempt may outlive this one
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        prepare_out(folder, force=True, command=f"{command} step {step.id}")
        t0 = time.perf_counter()
        res = kind.run(ctx, step)
        kind.write(folder, res, ctx)
        secs = time.perf_counter() - t0
        finish_run(
            folder,
            step=step.id,
            kind=step.kind,
            seconds=secs,
            result_file=kind.result_file,
            step_key=key,
        )
        ctx.results[step.id] = res
        echo(f"[{step.id}] {step.kind}: done in {secs:.1f} s")
        records.append(StepRecord(step.id, step.kind, "ran", secs, rel, n_est))

    meta = provenance(
        command=command,
        seed=config.seed,
        inputs=labels,
        config_source=config.source,
        overrides={k: str(v) for k, v in config.overrides.items()},
        seconds=time.perf_counter() - t_all,
    )
    result = ReproduceResult(
        name=config.name,
        paper=config.paper,
        title=config.title,
        config_hash=config.hash,
        steps=tuple(records),
        meta=meta,
    )
    _write_manifest(out_dir, config, ctx, result)
    result.to_json(out_dir / "reproduce.json")
    from rcvlab.reproduce.report import write_reproduce_report

    write_reproduce_report(out_dir, result, config)
    echo(f"wrote {out_dir / 'report.html'}")
    finish_run(out_dir, config=config.name, config_hash=config.hash)
    return result


def _write_manifest(
    out: Path, config: ReproConfig, ctx: StepContext, result: ReproduceResult
) -> None:
    fingerprints = ctx.fingerprints()
    manifest = {
        "config": config.name,
        "paper": config.paper,
        "title": config.title,
        "config_hash": config.hash,
        "config_text": config.text,
        "overrides": {k: str(v) for k, v in config.overrides.items()},
        "seed": config.seed,
        "step_seeds": {s.id: ctx.seed(s) for s in config.steps},
        "rcvlab_version": result.meta.get("rcvlab_version"),
        "versions": result.meta.get("versions"),
        "inputs": result.meta.get("inputs"),
        "data_fingerprints": fingerprints,
        "steps": [s.to_dict() for s in result.steps],
        "seconds": result.meta.get("seconds"),
    }
    dump_json(manifest, out / "manifest.json")


def _dry_run(
    config: ReproConfig,
    ctx: StepContext,
    skipped: Mapping[str, str],
    labels: Mapping[str, str],
    echo: Callable[[str], None],
) -> ReproduceResult:
    echo(f"{config.name}: {config.title} ({len(config.steps)} steps)")
    for name, label in labels.items():
        echo(f"  input {name}: {label}")
    records, total = [], 0
    for i, step in enumerate(config.steps, 1):
        kind = STEP_KINDS[step.kind]
        if step.id in skipped:
            echo(f"{i:2d}. {step.id} [{step.kind}] skipped: {skipped[step.id]}")
            records.append(
                StepRecord(step.id, step.kind, "skipped", float("nan"), "", 0, skipped[step.id])
            )
            continue
        n = estimate(ctx, step)
        total += n
        nets = step.get("network") or ", ".join(map(str, step.get("networks") or ()))
        src = ", ".join(reads(step)) or "no data"
        echo(f"{i:2d}. {step.id} [{step.kind}] network {nets}; reads {src}; ~{n:,} forward passes")
        records.append(
            StepRecord(
                step.id,
                step.kind,
                "planned",
                float("nan"),
                f"steps/{step.id}/{kind.result_file}",
                n,
            )
        )
    echo(f"total ~{total:,} forward passes; nothing written (dry run)")
    return ReproduceResult(
        name=config.name,
        paper=config.paper,
        title=config.title,
        config_hash=config.hash,
        steps=tuple(records),
        meta=provenance(command=_command(config), seed=config.seed, inputs=dict(labels)),
    )


__all__ = ["ReproduceResult", "StepRecord", "reproduce", "step_results"]
