"""Every name a public ``__all__`` promises can be imported."""

import importlib

import pytest

MODULES = [
    "rcvlab",
    "rcvlab.analyses",
    "rcvlab.features",
    "rcvlab.viz",
    "rcvlab.report",
    "rcvlab.pipelines",
    "rcvlab.probe",
    "rcvlab.data",
    "rcvlab.prune",
    "rcvlab.distributed",
    "rcvlab.reproduce",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name):
    mod = importlib.import_module(name)
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"{name}.__all__ lists missing names: {missing}"
    assert len(set(mod.__all__)) == len(mod.__all__)
