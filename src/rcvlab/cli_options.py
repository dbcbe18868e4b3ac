"""The command line's shared parts: every option declared once, and the run every command starts.

A command declares the shared options it takes with :func:`shared` (``@shared("model",
"data", "out", ...)``, defaults overridable per command) and its own with ``click.option``;
its body reads ``job = Job(common)`` and does three things: parse, call the analysis,
write the run folder. :class:`Job` checks options in a fixed order before any work
(device, cache folder, data, network, then the run folder), so a mistake costs nothing.

Every shared option that a command declares must be read by it: with the environment
variable ``RCVLAB_CHECK_OPTIONS=1`` (the tests set it), :meth:`Job.finish` fails when one
was never read, so an option cannot be accepted and silently ignored.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cached_property, wraps
from pathlib import Path
from typing import Any

import click

from rcvlab.errors import RcvlabError
from rcvlab.probe.fit import REGRESSORS

DEFAULT_CACHE = "~/.cache/rcvlab/features"

_REGRESSORS = click.Choice(list(REGRESSORS))
_POSITIVE = click.IntRange(min=1)


@dataclass(frozen=True)
class Opt:
    decls: tuple[str, ...]
    kw: dict[str, Any] = field(default_factory=dict)


#: Every shared option, once: name -> (flags, click keyword arguments).
OPTIONS: dict[str, Opt] = {
    "model": Opt(
        ("--model",), dict(required=True, help="Registry name or timm:NAME (see `rcvlab models`).")
    ),
    "weights": Opt(
        ("--weights",),
        dict(
            default="imagenet",
            show_default=True,
            help="imagenet, random (the architecture's initialisation), random-xavier "
            "(Xavier-uniform, zero biases), or a weights file (e.g. a finetune run's model.pt).",
        ),
    ),
    "data": Opt(
        ("--data", "data_spec"),
        dict(
            required=True,
            help="voc:DIR, imagenet:DIR, csv:FILE, folder:DIR, janowczyk:DIR, histo[:real|"
            "synthetic|ihc], tumour[:real|synthetic|both], camelyon:FILE.csv|DIR, "
            "scaleset[:CLASS,...] (see the README).",
        ),
    ),
    "cls": Opt(("--class", "cls"), dict(default=None, help="Keep one class (synset or name).")),
    "n_per_class": Opt(
        ("--n-per-class",),
        dict(
            type=_POSITIVE,
            default=None,
            help="Images per class: scaleset/filled make this many; other data keep at most "
            "this many per class (a draw seeded by --seed).",
        ),
    ),
    "strict": Opt(
        ("--strict",),
        dict(
            is_flag=True,
            help="Stop at the first unreadable image or annotation instead of "
            "skipping it (skips are listed in skipped.csv).",
        ),
    ),
    "layers": Opt(
        ("--layers", "layer_names"),
        dict(default="all", show_default=True, help="Comma-separated layer names, or all."),
    ),
    "layer": Opt(
        ("--layer",), dict(required=True, help="One layer name (see `rcvlab layers MODEL`).")
    ),
    "input_size": Opt(
        ("--input-size",),
        dict(type=_POSITIVE, default=None, help="Square input size (default: the model's own)."),
    ),
    "measure": Opt(
        ("--measure",),
        dict(
            default="scale_ratio",
            show_default=True,
            help="Concept measure: scale_ratio[_sqrt], a CSV column, or one of `rcvlab measures`.",
        ),
    ),
    "regressor": Opt(("--regressor",), dict(type=_REGRESSORS, default="ols", show_default=True)),
    "alpha": Opt(
        ("--alpha",),
        dict(
            type=click.FloatRange(min=0),
            default=None,
            help="Ridge/Lasso penalty (scikit-learn's convention); ridge without it chooses alpha "
            "by leave-one-out on the training split.",
        ),
    ),
    "reps": Opt(
        ("--reps",),
        dict(
            type=_POSITIVE,
            default=10,
            show_default=True,
            help="Repeated random splits (25 in paper 000).",
        ),
    ),
    "test_fraction": Opt(
        ("--test-fraction",),
        dict(
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            default=0.3,
            show_default=True,
        ),
    ),
    "seed": Opt(("--seed",), dict(type=click.IntRange(min=0), default=0, show_default=True)),
    "batch_size": Opt(("--batch-size",), dict(type=_POSITIVE, default=32, show_default=True)),
    "device": Opt(
        ("--device",), dict(default=None, help="cpu, cuda, cuda:1 (default: cuda if present).")
    ),
    "cache_dir": Opt(
        ("--cache-dir",),
        dict(
            default=None,
            help=f"Feature cache (default $RCVLAB_CACHE or {DEFAULT_CACHE}; 'none' to disable).",
        ),
    ),
    "cluster": Opt(
        ("--cluster",),
        dict(
            default=None,
            metavar="local:N",
            help="Run the command's work on a Dask LocalCluster of N worker processes on this "
            "machine (loopback only; with CUDA each worker gets one device, cycling). Needs "
            "rcvlab[dask].",
        ),
    ),
    "scheduler": Opt(
        ("--scheduler",),
        dict(
            default=None,
            metavar="tcp://HOST:PORT",
            help="Run on an existing Dask cluster; its workers must see --cache-dir.",
        ),
    ),
    "precision": Opt(
        ("--precision",),
        dict(
            type=click.Choice(["fp32", "bf16", "fp16"]),
            default="fp32",
            show_default=True,
            help="Forward pass under torch.autocast (features pooled and stored in float32). "
            "bf16: a GPU of compute capability >= 8.0, or a CPU with AVX-512 (fast only with "
            "AMX); fp16: a GPU, or a CPU with AVX512-FP16.",
        ),
    ),
    "out": Opt(("--out",), dict(required=True, help="Run folder to write.")),
    "force": Opt(
        ("--force",), dict(is_flag=True, help="Overwrite files in an existing --out folder.")
    ),
}


def shared(*groups: str, **defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add shared options to a command, in order: ``shared("model weights", "out force")``.

    Each argument is one or more option names separated by spaces.

    ``defaults`` overrides a keyword per option: ``shared("measure", measure={"default":
    "nuclei_area"})`` or, for the default alone, ``measure="nuclei_area"``.
    """
    names = [n for g in groups for n in g.split()]
    unknown = [n for n in names if n not in OPTIONS] + [n for n in defaults if n not in names]
    if unknown:  # a programming error in this package, not a user's
        raise KeyError(f"unknown shared option(s) or override(s) {unknown}")

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            o = OPTIONS[name]
            kw = dict(o.kw)
            over = defaults.get(name)
            if isinstance(over, Mapping):
                kw.update(over)
            elif name in defaults:
                kw["default"] = over
                kw.pop("required", None)
            f = click.option(*o.decls, **kw)(f)
        return f

    return deco


def csv_list(value: str | None) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; None stays None."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def cache_dir(value: str | None) -> str | None:
    """The feature cache folder: the option, ``$RCVLAB_CACHE`` or the default; none = off."""
    if value is not None and value.strip().lower() in ("none", "off", ""):
        return None
    return os.path.expanduser(value or os.environ.get("RCVLAB_CACHE", DEFAULT_CACHE))


def command_line() -> str:
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


def friendly(f: Callable[..., Any]) -> Callable[..., Any]:
    """rcvlab's own errors and unwritable files -> one stderr line, exit 2; Ctrl-C -> a hint."""

    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except RcvlabError as e:
            Job.close_engines()
            Job.abandon_current()
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except OSError as e:  # the file system refused: not a bug of the user's input
            Job.abandon_current()
            where = f" {e.filename}" if e.filename else ""
            click.echo(f"error: cannot access{where}: {e.strerror or e}.", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo(
                "interrupted: rerun the same command to resume (with a feature cache, the "
                "features extracted so far are reused).",
                err=True,
            )
            sys.exit(130)
        finally:
            Job.close_engines()

    return wrapper


class Group(click.Group):
    """A click group whose usage errors are one line on stderr (exit 2), like rcvlab's own."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as e:
            ctx = getattr(e, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            click.echo(f"error: {e.format_message()}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted.", err=True)
            sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def check_options_read() -> bool:
    return os.environ.get("RCVLAB_CHECK_OPTIONS", "") not in ("", "0")


class Job:
    """The start of every command: its shared options, checked in order before any work.

    Parameters
    ----------
    params : dict
        The shared options the command received (``**common``).
    """

    _current: Job | None = None
    # Dask clients and clusters opened by commands; closed when the command ends, however.
    _engines = ExitStack()

    def __init__(self, params: Mapping[str, Any]) -> None:
        self._params = dict(params)
        self._read: set[str] = set()
        self._created = False
        self.command = command_line()
        Job._current = self
        if "device" in self._params:
            from rcvlab.features.extract import check_precision_on, choose_device

            dev = choose_device(self["device"])
            if "precision" in self._params:
                check_precision_on(self["precision"], dev)
        if self.get("cluster") is not None or self.get("scheduler") is not None:
            from rcvlab.distributed.client import check_engine

            check_engine(cluster=self["cluster"], scheduler=self["scheduler"])
        if "cache_dir" in self._params:
            from rcvlab.features.cache import check_cache_dir

            self.cache = cache_dir(self["cache_dir"])
            if self.cache is not None:
                check_cache_dir(self.cache)
            elif self.get("cluster") is not None or self.get("scheduler") is not None:
                raise RcvlabError(
                    "--cluster and --scheduler need the feature cache (the workers write "
                    "their shards there); drop --cache-dir none."
                )

    def __getitem__(self, name: str) -> Any:
        self._read.add(name)
        return self._params[name]

    def get(self, name: str, default: Any = None) -> Any:
        """An option that only some commands declare."""
        return self[name] if name in self._params else default

    @cached_property
    def data(self) -> Any:
        """The data set of ``--data`` with ``--class``, ``--strict`` and ``--n-per-class``."""
        from rcvlab.data import open_data
        from rcvlab.data.spec import EMBEDDED_KINDS

        kw: dict[str, Any] = {}
        if self.get("cls") is not None:
            kw["cls"] = self["cls"]
        if self.get("strict"):
            kw["strict"] = True
        if self.get("n_per_class") is not None:
            kw["n_per_class"] = self["n_per_class"]
        kind = str(self["data_spec"]).split(":", 1)[0].strip().lower()
        if "seed" in self._params and (kind in EMBEDDED_KINDS or "n_per_class" in kw):
            kw["seed"] = self["seed"]  # the seed makes the embedded sets and draws subsets
        return open_data(self["data_spec"], **kw)

    @cached_property
    def net(self) -> Any:
        """The network of ``--model`` with ``--weights``, ``--seed`` and ``--input-size``."""
        from rcvlab.models import load_model

        return load_model(
            self["model"],
            self["weights"],
            seed=self.get("seed", 0),
            input_size=self.get("input_size"),
        )

    @cached_property
    def out(self) -> Path:
        """The run folder, created and marked running (a finished one needs ``--force``)."""
        from rcvlab.runio import prepare_out

        self._created = not Path(self["out"]).exists()
        return prepare_out(self["out"], force=self["force"], command=self.command)

    @cached_property
    def client(self) -> Any:
        """The Dask client of ``--cluster`` / ``--scheduler`` (None without them), opened on
        first use and closed when the command ends."""
        cluster, scheduler = self.get("cluster"), self.get("scheduler")
        if cluster is None and scheduler is None:
            return None
        from rcvlab.distributed.client import open_client

        return Job._engines.enter_context(open_client(cluster=cluster, scheduler=scheduler))

    @classmethod
    def close_engines(cls) -> None:
        """Close every Dask client and local cluster the command opened."""
        stack, cls._engines = cls._engines, ExitStack()
        stack.close()

    @classmethod
    def abandon_current(cls) -> None:
        """After a user error: remove the run folder this job created if nothing but its
        ``run.json`` is in it (a mistake found early leaves no empty run behind)."""
        job, cls._current = cls._current, None
        if job is None or not job._created or "out" not in job.__dict__:
            return
        from rcvlab.runio import RUN_FILE

        out: Path = job.__dict__["out"]
        try:
            if [f.name for f in out.iterdir()] == [RUN_FILE]:
                (out / RUN_FILE).unlink()
                out.rmdir()
        except OSError:
            pass

    @property
    def kw(self) -> dict[str, Any]:
        """Keyword options every analysis takes: batch size, cache, device, progress, command."""
        kw: dict[str, Any] = {"progress": True, "command": self.command}
        for name in ("batch_size", "device"):
            if name in self._params:
                kw[name] = self[name]
        if "cache_dir" in self._params:
            kw["cache_dir"] = self.cache
        if "precision" in self._params:
            kw["precision"] = self["precision"]
        if "cluster" in self._params:
            kw["client"] = self.client
        return kw

    def write_skipped(self, skipped: Any) -> None:
        """``skipped.csv`` from ``[(path, reason)]`` or ``[{"path":, "reason":}]``."""
        from rcvlab.runio import write_skipped

        rows = [(s["path"], s["reason"]) if isinstance(s, Mapping) else tuple(s) for s in skipped]
        write_skipped(self.out / "skipped.csv", rows)

    def finish(self, **info: Any) -> None:
        """Mark the run folder complete; under RCVLAB_CHECK_OPTIONS, check every option was read."""
        if check_options_read():
            unread = sorted(set(self._params) - self._read)
            if unread:
                raise RuntimeError(f"{self.command}: option(s) {unread} were never read")
        if "out" in self.__dict__:  # the command opened its run folder through the job
            from rcvlab.runio import finish_run

            finish_run(self.out, **info)


__all__ = [
    "DEFAULT_CACHE",
    "OPTIONS",
    "Group",
    "Job",
    "cache_dir",
    "command_line",
    "csv_list",
    "friendly",
    "shared",
]
