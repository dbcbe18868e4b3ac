"""A reproduction config: YAML -> a validated, frozen :class:`ReproConfig`.

A config names the data a paper reads (``inputs``), the networks it uses (``networks``)
and the analyses it runs, in order (``steps``). Every key is checked before any work,
and every mistake is one line naming its key path (``steps.profile.reps``) and the fix.

Overrides (the command line's ``--set KEY=VALUE``) are dotted key paths applied to the
YAML before validation: ``networks.iv3.model=timm:resnet10t``, ``steps.profile.reps=2``
(a step is addressed by its ``id``), ``seed=1``. A value given as text is read as YAML
(``2`` is a number, ``[a, b]`` a list, ``all`` a string).
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rcvlab.errors import DataError, RcvlabError, UnknownNameError, did_you_mean

#: Kinds of input data and the ``open_data`` prefix each is read with by default.
INPUT_KINDS: dict[str, str | None] = {
    "imagenet": "imagenet",
    "histology": "janowczyk",
    "camelyon": "camelyon",
    "embedded": None,
}
TOP_KEYS = ("name", "paper", "title", "seed", "inputs", "networks", "steps", "published")
INPUT_KEYS = ("kind", "required", "help", "data", "format", "n_per_class", "classes", "options")
NETWORK_KEYS = ("model", "weights", "input_size")
STEP_PREFIX = "step:"


class ConfigError(RcvlabError):
    """A reproduction config that cannot be run (one line: key path, value, fix)."""


@dataclass(frozen=True)
class InputSpec:
    """One input of a config.

    Attributes
    ----------
    name : str
        The input's name (the command line's ``--<name> PATH``).
    kind : str
        imagenet, histology, camelyon or embedded.
    required : bool
        Whether a run needs it (steps reading an optional input that is not given are
        skipped).
    help : str
    data : str or None
        For ``embedded``: the :func:`rcvlab.data.open_data` spec (``scaleset``, ``histo``,
        ``tumour:real``).
    format : str or None
        The ``open_data`` prefix a path is read with (default per kind: ``imagenet``,
        ``janowczyk``, ``camelyon``).
    n_per_class : int or None
    classes : tuple of str or None
    options : dict
        Further :func:`rcvlab.data.open_data` options (``size``, ``patch``, ...).
    """

    name: str
    kind: str
    required: bool = True
    help: str = ""
    data: str | None = None
    format: str | None = None
    n_per_class: int | None = None
    classes: tuple[str, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkSpec:
    """One network: a registry name, its weights and input size.

    ``weights`` is imagenet, random, random-xavier, a weights file, or ``step:<id>``: the
    model a finetune step wrote (its ``model.pt``).
    """

    id: str
    model: str
    weights: str = "imagenet"
    input_size: int | None = None

    @property
    def from_step(self) -> str | None:
        """The finetune step whose model these weights are, or None."""
        w = self.weights
        return w[len(STEP_PREFIX) :] if w.startswith(STEP_PREFIX) else None


@dataclass(frozen=True)
class StepSpec:
    """One step: its id, kind and options (each kind's defaults filled in)."""

    id: str
    kind: str
    options: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.options[key]

    def get(self, key: str, default: Any = None) -> Any:
        """An option, or ``default``."""
        return self.options.get(key, default)


@dataclass(frozen=True)
class ReproConfig:
    """A validated reproduction config (see :func:`load_config`)."""

    name: str
    paper: str
    title: str
    seed: int
    inputs: dict[str, InputSpec]
    networks: dict[str, NetworkSpec]
    steps: tuple[StepSpec, ...]
    published: tuple[str, ...]
    text: str
    source: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """SHA-256 of the config text and the overrides (a run resumes only the same one)."""
        h = hashlib.sha256(self.text.encode("utf-8"))
        for k in sorted(self.overrides):
            h.update(f"\n{k}={self.overrides[k]!r}".encode())
        return h.hexdigest()

    def step(self, step_id: str) -> StepSpec:
        """The step with this id."""
        for s in self.steps:
            if s.id == step_id:
                return s
        raise UnknownNameError(
            f"No step {step_id!r} in config {self.name}; steps: "
            f"{', '.join(s.id for s in self.steps)}.{did_you_mean(step_id, self.step_ids)}"
        )

    @property
    def step_ids(self) -> list[str]:
        """The step ids, in order."""
        return [s.id for s in self.steps]


#: The inputs ``rcvlab reproduce`` takes from the command line (``--imagenet DIR`` ...).
FLAG_INPUTS: tuple[str, ...] = ("imagenet", "histology", "camelyon")


def _configs_dir() -> Path:
    return Path(str(resources.files("rcvlab.reproduce") / "configs"))


def list_configs() -> dict[str, str]:
    """The packaged configs: name -> title.

    Returns
    -------
    dict of str to str
    """
    import yaml

    found: dict[str, str] = {}
    for p in sorted(_configs_dir().glob("*.yaml")):
        try:
            d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            d = {}
        found[p.stem] = str(d.get("title", "")) if isinstance(d, dict) else ""
    return found


def _locate(name_or_path: str | os.PathLike[str]) -> Path:
    s = os.fspath(name_or_path)
    packaged = _configs_dir() / f"{s}.yaml"
    if os.sep not in s and "/" not in s and not s.endswith((".yaml", ".yml")):
        if packaged.is_file():
            return packaged
        names = list(list_configs())
        raise UnknownNameError(
            f"No packaged config {s!r}; known: {', '.join(names)} (or give a .yaml file)."
            f"{did_you_mean(s, names)}"
        )
    p = Path(s).expanduser()
    if not p.is_file():
        raise DataError(f"Config file {p} does not exist; give a .yaml file or a packaged name.")
    return p


def config_text(name: str | os.PathLike[str]) -> str:
    """The YAML text of a packaged config (or of a config file), for ``--show``."""
    p = _locate(name)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"Cannot read config {p}: {e.strerror or e}.") from e


def parse_override(item: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(KEY, value read as YAML)`` (the command line's ``--set``)."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. steps.profile.reps=2.")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def _apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    import yaml

    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            pass
    parts = key.split(".")
    node: Any = raw
    path: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(path) or "the config"
        if isinstance(node, list):  # steps: addressed by id
            ids = [s.get("id") for s in node if isinstance(s, dict)]
            match = [s for s in node if isinstance(s, dict) and s.get("id") == part]
            if not match:
                raise ConfigError(
                    f"--set {key}: no step {part!r} in {where}; steps: "
                    f"{', '.join(map(str, ids))}.{did_you_mean(part, map(str, ids))}"
                )
            if last:
                raise ConfigError(f"--set {key}: give a key of the step, e.g. {key}.reps=2.")
            node = match[0]
        elif isinstance(node, dict):
            if last:
                node[part] = value
                return
            if part not in node:
                if path and path[0] in ("networks", "inputs") and len(path) == 1:
                    raise ConfigError(
                        f"--set {key}: no {path[0][:-1]} {part!r}; known: "
                        f"{', '.join(node)}.{did_you_mean(part, node)}"
                    )
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(f"--set {key}: {where} is a value, not a mapping.")
        path.append(part)


def _err(path: str, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {msg}")


def _unknown(path: str, keys: Mapping[str, Any], allowed: Any, what: str) -> None:
    allowed = list(allowed)
    for k in keys:
        if k not in allowed:
            raise _err(
                f"{path}.{k}" if path else str(k),
                f"unknown {what} key {k!r}; known: {', '.join(allowed)}."
                f"{did_you_mean(str(k), allowed)}",
            )


def check_type(path: str, value: Any, kind: str) -> Any:
    """Check (and lightly normalise) one value of type ``kind``."""
    bad = _err(path, f"expected {kind.replace('|', ' or ')}, got {value!r}.")
    if value is None and "null" in kind:
        return None
    for k in kind.split("|"):
        if k == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if k == "float" and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if k == "float" and isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
        if k == "str" and isinstance(value, str) and value.strip():
            return value.strip()
        if k == "bool" and isinstance(value, bool):
            return value
        if k == "list" and isinstance(value, list | tuple):
            if not all(isinstance(v, str | int | float) for v in value):
                raise bad
            return [v.strip() if isinstance(v, str) else v for v in value]
    raise bad


def load_config(
    name_or_path: str | os.PathLike[str], *, overrides: Mapping[str, Any] | None = None
) -> ReproConfig:
    """Read and validate a reproduction config.

    Parameters
    ----------
    name_or_path : str or path
        A packaged config name (:func:`list_configs`) or a YAML file.
    overrides : mapping, optional
        Dotted key paths -> values, applied before validation (``"steps.profile.reps": 2``;
        a step is addressed by its id). Text values are read as YAML.

    Returns
    -------
    ReproConfig

    Raises
    ------
    ConfigError
        One line naming the key path: unknown key (with did-you-mean), unknown step kind,
        duplicate step id, a reference to an unknown network, input or earlier step, a
        value of the wrong type.
    """
    import yaml

    text = config_text(name_or_path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{name_or_path}: not valid YAML ({first}).") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{name_or_path}: a config is a mapping with name, inputs, steps, ...")
    raw = copy.deepcopy(raw)
    for key, value in (overrides or {}).items():
        _apply_override(raw, key, value)
    return _validate(raw, text, os.fspath(name_or_path), dict(overrides or {}))


def _validate(
    raw: dict[str, Any], text: str, source: str, overrides: dict[str, Any]
) -> ReproConfig:
    from rcvlab.reproduce.steps import STEP_KINDS, check_step_options

    _unknown("", raw, TOP_KEYS, "top-level")
    for key in ("name", "steps"):
        if key not in raw:
            raise _err(key, f"missing; a config needs {key!r}.")
    name = check_type("name", raw["name"], "str")
    paper = str(raw.get("paper", "") or "")
    title = str(raw.get("title", "") or "")
    seed = check_type("seed", raw.get("seed", 0), "int")

    inputs: dict[str, InputSpec] = {}
    raw_inputs = raw.get("inputs") or {}
    if not isinstance(raw_inputs, dict):
        raise _err("inputs", "expected a mapping input-name -> {kind, required, help}.")
    for iname, d in raw_inputs.items():
        path = f"inputs.{iname}"
        if not isinstance(d, dict):
            raise _err(path, "expected a mapping with kind, required, help.")
        _unknown(path, d, INPUT_KEYS, "input")
        kind = check_type(f"{path}.kind", d.get("kind"), "str")
        if kind not in INPUT_KINDS:
            raise _err(
                f"{path}.kind",
                f"unknown input kind {kind!r}; known: {', '.join(INPUT_KINDS)}."
                f"{did_you_mean(kind, INPUT_KINDS)}",
            )
        data = d.get("data")
        if kind != "embedded" and str(iname) not in FLAG_INPUTS:
            raise _err(
                path,
                f"an input read from disk is named after its command-line option: one of "
                f"{', '.join(FLAG_INPUTS)} (--{' DIR, --'.join(FLAG_INPUTS)} PATH).",
            )
        if kind == "embedded":
            data = check_type(f"{path}.data", data, "str")
        elif data is not None:
            raise _err(f"{path}.data", "only embedded inputs name their data; leave it out.")
        classes = d.get("classes")
        if classes is not None:
            classes = tuple(str(c) for c in check_type(f"{path}.classes", classes, "list|str"))
            if isinstance(d.get("classes"), str):
                classes = tuple(c.strip() for c in str(d["classes"]).split(",") if c.strip())
        options = d.get("options") or {}
        if not isinstance(options, dict):
            raise _err(f"{path}.options", "expected a mapping of open_data options.")
        inputs[str(iname)] = InputSpec(
            name=str(iname),
            kind=kind,
            required=check_type(f"{path}.required", d.get("required", kind != "embedded"), "bool"),
            help=str(d.get("help", "") or ""),
            data=data,
            format=check_type(f"{path}.format", d.get("format"), "str|null"),
            n_per_class=check_type(f"{path}.n_per_class", d.get("n_per_class"), "int|null"),
            classes=classes,
            options=dict(options),
        )

    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _err("steps", "expected a non-empty list of {id, kind, ...}.")
    step_ids: list[str] = []
    for i, s in enumerate(raw_steps):
        if not isinstance(s, dict):
            raise _err(f"steps[{i}]", "expected a mapping with id and kind.")
        sid = check_type(f"steps[{i}].id", s.get("id"), "str")
        if sid in step_ids:
            raise _err(f"steps.{sid}", f"duplicate step id {sid!r}; give each step its own id.")
        step_ids.append(sid)

    networks: dict[str, NetworkSpec] = {}
    raw_nets = raw.get("networks") or {}
    if not isinstance(raw_nets, dict):
        raise _err("networks", "expected a mapping net-id -> {model, weights, input_size}.")
    for nid, d in raw_nets.items():
        path = f"networks.{nid}"
        if not isinstance(d, dict):
            raise _err(path, "expected a mapping with model, weights, input_size.")
        _unknown(path, d, NETWORK_KEYS, "network")
        weights = str(check_type(f"{path}.weights", d.get("weights", "imagenet"), "str"))
        net = NetworkSpec(
            id=str(nid),
            model=check_type(f"{path}.model", d.get("model"), "str"),
            weights=weights,
            input_size=check_type(f"{path}.input_size", d.get("input_size"), "int|null"),
        )
        networks[str(nid)] = net
        if net.from_step is not None and net.from_step not in step_ids:
            raise _err(
                f"{path}.weights",
                f"no step {net.from_step!r} to take the model from; steps: "
                f"{', '.join(step_ids)}.{did_you_mean(net.from_step, step_ids)}",
            )

    steps: list[StepSpec] = []
    for s in raw_steps:
        sid = str(s["id"]).strip()
        path = f"steps.{sid}"
        kind = check_type(f"{path}.kind", s.get("kind"), "str")
        if kind not in STEP_KINDS:
            raise _err(
                f"{path}.kind",
                f"unknown step kind {kind!r}; known: {', '.join(STEP_KINDS)}."
                f"{did_you_mean(kind, STEP_KINDS)}",
            )
        opts = {k: v for k, v in s.items() if k not in ("id", "kind")}
        options = check_step_options(path, kind, opts, _err)
        step = StepSpec(id=sid, kind=kind, options=options)
        earlier = [x.id for x in steps]
        _check_refs(path, step, inputs, networks, earlier, raw_steps)
        steps.append(step)

    published = raw.get("published") or []
    if not isinstance(published, list):
        raise _err("published", "expected a list of published-number keys.")
    return ReproConfig(
        name=name,
        paper=paper,
        title=title,
        seed=seed,
        inputs=inputs,
        networks=networks,
        steps=tuple(steps),
        published=tuple(str(p) for p in published),
        text=text,
        source=source,
        overrides=overrides,
    )


def _check_refs(
    path: str,
    step: StepSpec,
    inputs: Mapping[str, InputSpec],
    networks: Mapping[str, NetworkSpec],
    earlier: list[str],
    raw_steps: list[Any],
) -> None:
    from rcvlab.reproduce.steps import step_refs

    kinds = {str(s.get("id")).strip(): s.get("kind") for s in raw_steps}
    for key, ref_kind, value in step_refs(step):
        if ref_kind == "input" and value not in inputs:
            raise _err(
                f"{path}.{key}",
                f"no input {value!r}; inputs: {', '.join(inputs) or 'none'}."
                f"{did_you_mean(value, inputs)}",
            )
        if ref_kind == "network":
            if value not in networks:
                raise _err(
                    f"{path}.{key}",
                    f"no network {value!r}; networks: {', '.join(networks) or 'none'}."
                    f"{did_you_mean(value, networks)}",
                )
            src = networks[value].from_step
            if src is not None:
                if src not in earlier:
                    raise _err(
                        f"{path}.{key}",
                        f"network {value!r} takes its weights from step {src!r}, which does "
                        "not run before this step; move the step after it.",
                    )
                if kinds.get(src) != "finetune":
                    raise _err(
                        f"networks.{value}.weights",
                        f"step {src!r} is a {kinds.get(src)} step; step:<id> weights come "
                        "from a finetune step's model.",
                    )
        if ref_kind.startswith("step"):
            if value not in earlier:
                raise _err(
                    f"{path}.{key}",
                    f"no earlier step {value!r}; steps before this one: "
                    f"{', '.join(earlier) or 'none'}.{did_you_mean(value, earlier)}",
                )
            want = ref_kind.partition(":")[2]
            if want and kinds.get(value) not in want.split(","):
                raise _err(
                    f"{path}.{key}",
                    f"step {value!r} is a {kinds.get(value)} step; expected a {want} step.",
                )


def check_inputs(config: ReproConfig, paths: Mapping[str, str | os.PathLike[str] | None]) -> None:
    """Check the data paths of a run before any work.

    Parameters
    ----------
    config : ReproConfig
    paths : mapping
        Input name -> path (None or absent: not given).

    Raises
    ------
    RcvlabError
        A required input not given, a path that does not exist, a name the config does not
        have, or a path given to an embedded input.
    """
    for name, p in paths.items():
        if p is None:
            continue
        if name not in config.inputs:
            raise UnknownNameError(
                f"Config {config.name} reads no input {name!r}; its inputs: "
                f"{', '.join(config.inputs) or 'none'}.{did_you_mean(name, config.inputs)}"
            )
        spec = config.inputs[name]
        if spec.kind == "embedded":
            raise ConfigError(
                f"Input {name} of config {config.name} is embedded ({spec.data}); leave out "
                f"--{name}."
            )
        if not Path(p).expanduser().exists():
            raise DataError(
                f"--{name} {p} does not exist; give the {spec.kind} data "
                f"({spec.help or INPUT_KINDS[spec.kind]})."
            )
    for name, spec in config.inputs.items():
        if spec.required and spec.kind != "embedded" and paths.get(name) is None:
            raise ConfigError(
                f"Config {config.name} needs --{name} DIR: {spec.help or spec.kind + ' data'}."
            )


def check_layers(config: ReproConfig) -> None:
    """Check that every layer a step names exists in its network (before any work).

    The architectures are built with random weights (no download), at each network's
    input size.

    Raises
    ------
    ConfigError
        ``steps.<id>.<key>: ...`` naming the layer and the network, with did-you-mean.
    """
    from rcvlab.models import load_model
    from rcvlab.reproduce.steps import step_layers

    built: dict[tuple[str, int | None], Any] = {}
    for step in config.steps:
        for key, net_id, layers in step_layers(step):
            net = config.networks[net_id]
            arch = (net.model, net.input_size)
            if arch not in built:
                built[arch] = load_model(net.model, "random", input_size=net.input_size)
            m = built[arch]
            for layer in layers:
                try:
                    m.resolve([layer])
                except RcvlabError as e:
                    raise _err(
                        f"steps.{step.id}.{key}",
                        f"network {net_id} ({net.model}) has no layer {layer!r}."
                        f"{did_you_mean(layer, m.layers)} (see `rcvlab layers {net.model}`)",
                    ) from e


__all__ = [
    "INPUT_KINDS",
    "ConfigError",
    "InputSpec",
    "NetworkSpec",
    "ReproConfig",
    "StepSpec",
    "check_inputs",
    "check_layers",
    "check_type",
    "config_text",
    "list_configs",
    "load_config",
    "parse_override",
]
