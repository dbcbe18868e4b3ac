"""Common checks run on every result type (as scikit-learn's common estimator checks)."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rcvlab.analyses  # registers every result class, as rcvlab.pipelines does
import rcvlab.pipelines  # noqa: F401
from rcvlab.errors import DataError
from rcvlab.result import RESULT_KINDS, Result, load_result


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"rcvlab_contract_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


EXAMPLES = {
    p.stem.removeprefix("ex_"): _load(p)
    for p in sorted((Path(__file__).parent / "examples").glob("ex_*.py"))
}


def test_every_result_kind_has_an_example():
    assert sorted(EXAMPLES) == sorted(RESULT_KINDS)


@pytest.fixture(params=sorted(RESULT_KINDS), scope="module")
def result(request) -> Result:
    r = EXAMPLES[request.param].example()
    assert type(r) is RESULT_KINDS[request.param]
    return r


def _same(a, b) -> bool:
    """Deep equality that treats NaN == NaN and compares arrays by value."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            _same(getattr(a, f.name), getattr(b, f.name))
            for f in dataclasses.fields(a)
            if f.compare
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray | float | np.floating) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    return a == b


def test_frozen_dataclass_with_meta(result):
    cls = type(result)
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen
    assert "meta" in {f.name for f in dataclasses.fields(cls)}
    assert isinstance(result.meta, dict)
    for key in ("command", "rcvlab_version", "versions", "seed"):
        assert key in result.meta, f"{cls.__name__}.meta has no {key!r}"


def test_json_round_trip_text_and_path(result, tmp_path):
    cls = type(result)
    text = result.to_json()
    d = json.loads(text)  # strict JSON: no NaN tokens
    assert d["kind"] == cls.kind
    assert "NaN" not in text and "Infinity" not in text
    assert _same(cls.from_json(text), result)
    path = tmp_path / f"{cls.kind}.json"
    assert result.to_json(path) == text
    again = cls.from_json(path)
    assert _same(again, result)
    assert _same(load_result(path), result)
    assert again.to_json() == text


def test_signatures_are_the_same(result):
    cls = type(result)
    assert list(inspect.signature(cls.to_json).parameters) == ["self", "path"]
    assert list(inspect.signature(cls.from_json).parameters) == ["path_or_text"]
    assert list(inspect.signature(cls.to_frame).parameters) == ["self"]


def test_frame_columns_are_declared_and_documented(result):
    cls = type(result)
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) > 0
    assert list(frame.columns) == [c for c in cls.frame_columns if c in frame.columns]
    undeclared = set(frame.columns) - set(cls.frame_columns)
    assert not undeclared, f"{cls.__name__}.to_frame() has undeclared columns {undeclared}"
    doc = inspect.getdoc(cls.to_frame) or ""
    doc += inspect.getdoc(cls) or ""
    missing = [c for c in cls.frame_columns if c not in doc]
    assert not missing, f"{cls.__name__}: columns {missing} are not documented"


def test_wrong_kind_is_one_clear_error(result):
    cls = type(result)
    other = next(k for k in sorted(RESULT_KINDS) if k != cls.kind)
    text = json.dumps({**json.loads(result.to_json()), "kind": other})
    with pytest.raises(DataError, match=f"'{other}' result, not '{cls.kind}'"):
        cls.from_json(text)


def test_unreadable_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not a"):
        load_result(bad)
    with pytest.raises(DataError, match="Cannot read"):
        load_result(tmp_path / "missing.json")
