"""How rcvlab.features is put together: no import cycle, positions as documented."""

import ast
from pathlib import Path

import numpy as np
import torch.nn as nn

import rcvlab
from rcvlab import extract_features, load_model
from rcvlab.features.pooling import layer_pools

SRC = Path(rcvlab.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str]) -> dict[str, bool]:
    """rcvlab modules imported anywhere in ``path`` (function bodies too): name -> lazily."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: dict[str, bool] = {}
    # imports for type annotations only (``if TYPE_CHECKING:``) never run
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # "from pkg import mod" imports the module pkg.mod, "from pkg import f" pkg itself
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for name in names:
            if name.startswith("rcvlab"):
                found[name] = found.get(name, True) and id(node) not in top
    return found


def graph(packages: tuple[str, ...]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    files = [p for pkg in packages for p in (SRC / pkg).glob("*.py")]
    known = {module_name(p) for p in files}
    edges: dict[str, set[str]] = {m: set() for m in known}
    lazy: dict[str, set[str]] = {m: set() for m in known}
    for p in files:
        for name, is_lazy in imports(p, known).items():
            if name in known and name != module_name(p):
                edges[module_name(p)].add(name)
                if is_lazy:
                    lazy[module_name(p)].add(name)
    return edges, lazy


def cycle(edges: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = 2
        stack.pop()
        return []

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return []


def test_features_and_models_have_no_import_cycle():
    edges, _ = graph(("features", "models"))
    assert "rcvlab.features.hooks" in edges["rcvlab.features.receptive"]  # the graph is read
    assert cycle(edges) == []


def test_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_module_of_features_imports_another_lazily():
    _, lazy = graph(("features",))
    features = {m: {n for n in v if n.startswith("rcvlab.features")} for m, v in lazy.items()}
    assert all(not v for v in features.values()), features


def conv_net() -> nn.Module:
    net = nn.Sequential()
    net.add_module("conv", nn.Conv2d(3, 2, 3, padding=1))  # 8x8 -> 8x8, border touches padding
    net.add_module("conv2", nn.Conv2d(2, 2, 3, padding=1))
    return net.eval()


def test_positions_are_counted_only_for_corrected_gap(rng):
    m = load_model(conv_net(), input_size=8, layers=["conv", "conv2"])
    specs = m.resolve(None)
    # by hand: each 3x3 padded conv loses one ring of positions: 6x6, then 4x4
    assert layer_pools("corrected-gap", m.module, specs, 8)[2] == {"conv": 36, "conv2": 16}
    for name in ("gap", "max"):
        pools, _, positions = layer_pools(name, m.module, specs, 8)
        assert positions == {} and set(pools) == {"conv", "conv2"}
    imgs = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    f = extract_features(m, imgs, pooling="max")
    assert f.positions == {} and f.positions.get("conv", -1) == -1
    assert extract_features(m, imgs, pooling="corrected-gap").positions["conv2"] == 16
