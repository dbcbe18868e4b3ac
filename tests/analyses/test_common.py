"""The start every model + data analysis shares (rcvlab.analyses.common.class_features)."""

from __future__ import annotations

import pytest

from rcvlab.analyses import alignment, consistency, sparsity
from rcvlab.analyses.common import ExtractOptions, check_classes, class_features
from rcvlab.errors import DataError, UnknownNameError


@pytest.mark.parametrize(
    ("analysis", "options"),
    [
        (sparsity, {"train_class": "bird"}),
        (alignment, {}),
        (consistency, {}),
    ],
)
def test_a_misspelt_extraction_option_is_refused_before_the_work(
    analysis, options, blobs_model, two_classes, no_extraction
):
    with pytest.raises(TypeError, match=r"'batchsize'.* batch_size"):
        analysis(
            blobs_model, two_classes, layer="conv", measure="scale_ratio", batchsize=8, **options
        )


def test_order_of_the_checks(blobs_model, two_classes, no_extraction):
    calls = []

    def check_options():
        calls.append("options")
        raise DataError("bad option")

    def classes(data):
        calls.append("classes")
        return check_classes(data, None)

    kw = {"layer": "conv", "measure": "scale_ratio", "classes": classes}
    with pytest.raises(DataError, match="bad option"):
        class_features(blobs_model, two_classes, seed=0, check_options=check_options, **kw)
    assert calls == ["options"]  # nothing else ran
    with pytest.raises(UnknownNameError, match="Unknown layer 'conv9'"):
        class_features(
            blobs_model, two_classes, seed=0, check_options=lambda: None, **{**kw, "layer": "conv9"}
        )
    assert calls == ["options", "classes"]  # classes chosen, then the layer refused
    assert set(ExtractOptions.__annotations__) == {
        "weights",
        "batch_size",
        "pooling",
        "cache_dir",
        "device",
        "progress",
        "strict",
        "precision",
        "client",
    }


def test_class_lists(two_classes):
    assert check_classes(two_classes, None) == ["bird", "car"]
    assert check_classes(two_classes, "car") == ["car"]
    with pytest.raises(DataError, match="classes is empty; name at least one class"):
        check_classes(two_classes, [])
    with pytest.raises(DataError, match=r"classes are repeated: \['car', 'car'\]"):
        check_classes(two_classes, ["car", "car"])
    with pytest.raises(UnknownNameError, match=r"unknown class 'cra'; available: bird, car.*'car'"):
        check_classes(two_classes, ["cra"])
