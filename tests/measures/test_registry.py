import math

import numpy as np
import pytest
from skimage.draw import disk

from rcvlab.data import ArrayImageSet
from rcvlab.data.base import ImageSet
from rcvlab.errors import DataError, RcvlabError, UnknownNameError
from rcvlab.measures import (
    MEASURES,
    colourfulness,
    compute_measure,
    compute_measures,
    get_measure,
    glcm_features,
    nuclei_area,
    register,
    register_family,
)

REQUIRED = {
    "nuclei_area": "mask",
    "nuclei_count": "mask",
    "nuclei_max_area": "mask",
    "nuclei_eccentricity": "mask",
    "nuclei_perimeter": "mask",
    "nuclei_solidity": "mask",
    "nuclei_euler": "mask",
    "colourfulness": "image",
    "blueness": "image",
    "redness": "image",
}
for _p in ("asm", "energy", "contrast", "correlation", "homogeneity", "dissimilarity"):
    REQUIRED[f"glcm_{_p}"] = "image"
    REQUIRED[f"glcm_{_p}_nuclei"] = "image+mask"


@pytest.fixture
def scratch_registry():
    """Lets a test register measures and puts the registry back afterwards."""
    saved = dict(MEASURES)
    yield MEASURES
    MEASURES.clear()
    MEASURES.update(saved)


def _patch(seed, radii):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    for k, r in enumerate(radii):
        rr, cc = disk((10 + 12 * (k // 2), 10 + 18 * (k % 2)), r, shape=mask.shape)
        mask[rr, cc] = 255
    return image, mask


def test_required_measures_registered_with_their_inputs():
    for name, needs in REQUIRED.items():
        spec = get_measure(name)
        assert spec.name == name
        assert spec.needs == needs, name
        assert spec.description
        assert callable(spec.function)


def test_unknown_name_suggests_and_lists():
    with pytest.raises(UnknownNameError) as e:
        get_measure("nuclei_aera")
    msg = str(e.value)
    assert "Did you mean 'nuclei_area'?" in msg
    assert "glcm_contrast_nuclei" in msg and "blueness" in msg
    assert isinstance(e.value, KeyError) and isinstance(e.value, RcvlabError)
    with pytest.raises(UnknownNameError):
        compute_measure("no_such_measure", np.zeros((4, 4, 3), np.uint8))


def test_missing_mask_is_a_clear_error():
    with pytest.raises(DataError) as e:
        compute_measure("nuclei_area", np.zeros((4, 4, 3), np.uint8), None)
    assert str(e.value) == "measure 'nuclei_area' needs a nuclei mask; the data source has none"
    with pytest.raises(DataError, match="needs a nuclei mask"):
        compute_measure("glcm_contrast_nuclei", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="needs an image"):
        compute_measure("colourfulness", None, np.zeros((4, 4), bool))


def test_compute_measure_matches_the_functions():
    image, mask = _patch(0, [4, 5, 6])
    assert compute_measure("nuclei_area", image, mask) == nuclei_area(mask)
    assert compute_measure("nuclei_area", None, mask) == nuclei_area(mask)
    assert compute_measure("colourfulness", image) == colourfulness(image)
    assert compute_measure("glcm_contrast", image) == glcm_features(image)["contrast"]
    assert compute_measure("glcm_asm_nuclei", image, mask) == glcm_features(image, mask)["ASM"]
    assert compute_measure("glcm_asm_nuclei", image, mask) != compute_measure("glcm_asm", image)


def test_compute_measures_over_items():
    items = [_patch(0, [4, 5]), _patch(1, [6]), _patch(2, [])]
    images = [im for im, _ in items]
    masks = [m for _, m in items]
    names = ["nuclei_area", "nuclei_count", "glcm_contrast", "glcm_contrast_nuclei", "blueness"]
    table = compute_measures(names, images, masks)
    assert list(table) == names
    for name in names:
        assert table[name].dtype == np.float64 and table[name].shape == (3,)
        for i, (im, m) in enumerate(items):
            expected = compute_measure(name, im, m)
            np.testing.assert_equal(table[name][i], expected)
    assert math.isnan(table["nuclei_area"][2])  # no nuclei: NaN, but not a failure
    assert table["nuclei_count"][2] == 0
    assert table.failures == {}
    assert table.n_nan["nuclei_area"] == 1


def test_compute_measures_failure_is_nan_and_counted():
    good, mask = _patch(0, [5])
    bad = np.zeros((40, 40, 5))  # not an image
    table = compute_measures(["colourfulness", "nuclei_area"], [good, bad, good], [mask] * 3)
    assert np.isnan(table["colourfulness"][1])
    assert not np.isnan(table["colourfulness"][[0, 2]]).any()
    assert table.n_failed == {"colourfulness": 1}
    index, message = table.failures["colourfulness"][0]
    assert index == 1 and "shape" in message
    assert not np.isnan(table["nuclei_area"]).any()  # the mask of item 1 is fine


def test_compute_measures_checks_before_computing():
    image, mask = _patch(0, [5])
    with pytest.raises(UnknownNameError):
        compute_measures(["colourfulness", "nuclei_aera"], [image])
    with pytest.raises(DataError, match="needs a nuclei mask; the data source has none"):
        compute_measures(["nuclei_area"], [image])
    with pytest.raises(DataError, match="needs images"):
        compute_measures(["colourfulness"], None, [mask])
    with pytest.raises(DataError, match="2 images but 1 masks"):
        compute_measures(["nuclei_area"], [image, image], [mask])
    with pytest.raises(DataError, match="more images than masks"):
        compute_measures(["nuclei_area"], iter([image, image]), iter([mask]))


def test_compute_measures_masks_only_and_single_name():
    masks = [_patch(0, [4, 5])[1], _patch(0, [6])[1]]
    table = compute_measures("nuclei_area", None, masks)
    np.testing.assert_allclose(table["nuclei_area"], [nuclei_area(m) for m in masks])


def test_compute_measures_on_an_image_set():
    images = [_patch(s, [])[0] for s in range(3)]
    table = compute_measures(["colourfulness"], ArrayImageSet(images))
    np.testing.assert_allclose(table["colourfulness"], [colourfulness(im) for im in images])


class _Broken(ImageSet):
    def __init__(self):
        super().__init__(["a", "b"], {})

    def _load(self, i):
        if i == 1:
            raise DataError("cannot decode image b")
        return np.zeros((4, 4, 3), np.uint8)


def test_unreadable_image_in_a_set_is_one_failure():
    table = compute_measures(["colourfulness", "blueness"], _Broken())
    assert table["colourfulness"][0] == 0 and np.isnan(table["colourfulness"][1])
    assert table.n_failed == {"colourfulness": 1, "blueness": 1}
    assert table.failures["blueness"] == [(1, "cannot decode image b")]
    # measures of the masks alone never load the images
    masks = [np.ones((4, 4), bool)] * 2
    assert compute_measures(["nuclei_count"], _Broken(), masks).failures == {}


def test_family_computed_once_per_item(scratch_registry):
    calls = []

    def family(image):
        calls.append(1)
        return {"a": float(np.mean(image)), "b": 2.0}

    register_family(family, needs="image", members={"t_a": ("a", "A"), "t_b": ("b", "B")})
    images = [np.full((2, 2, 3), v, np.uint8) for v in (0, 51, 255)]
    table = compute_measures(["t_a", "t_b"], images)
    np.testing.assert_allclose(table["t_a"], [0, 51, 255])
    np.testing.assert_allclose(table["t_b"], [2, 2, 2])
    assert len(calls) == 3
    assert compute_measure("t_b", images[0]) == 2.0


def test_single_family_member_uses_its_own_function(scratch_registry):
    calls = []

    def family(image):
        calls.append("family")
        return {"a": 1.0, "b": 2.0}

    @register("t_a", needs="image", description="A", family=family, key="a")
    def only_a(image):
        calls.append("a")
        return 1.0

    register_family(family, needs="image", members={"t_b": ("b", "B")})
    images = [np.zeros((2, 2, 3), np.uint8)] * 2
    assert compute_measures(["t_a"], images)["t_a"].tolist() == [1.0, 1.0]
    assert calls == ["a", "a"]
    calls.clear()
    compute_measures(["t_a", "t_b"], images)
    assert calls == ["family", "family"]


def test_register_decorator_once_only(scratch_registry):
    @register("t_one", needs="mask", description="number of foreground pixels")
    def one(mask):
        return float(np.count_nonzero(mask))

    assert one(np.ones((2, 3))) == 6  # returned unchanged
    assert compute_measure("t_one", None, np.ones((2, 3))) == 6
    with pytest.raises(ValueError, match="registered twice"):
        register("t_one", needs="mask", description="again")(one)
    with pytest.raises(ValueError, match="needs must be"):
        register("t_two", needs="pixels", description="?")(one)
    with pytest.raises(ValueError, match="registered twice"):
        register("nuclei_area", needs="mask", description="again")(one)
