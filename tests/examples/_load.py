"""Load a sibling example module by file name (the examples are not an importable package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def sibling(name: str):
    path = Path(__file__).with_name(f"ex_{name}.py")
    spec = importlib.util.spec_from_file_location(f"rcvlab_example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.example()
