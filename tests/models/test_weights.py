import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from skimage import data

from rcvlab import WeightsError, load_model
from rcvlab.models.weights import hub_checkpoint_path, shipped_mobilenet_v2_checkpoint

CAT = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def top5(model, image):
    x = model.preprocessing([Image.fromarray(image)], mode="crop")
    with torch.inference_mode():
        p = model.module(x).softmax(-1)[0]
    return [model.categories[i] for i in p.topk(5).indices]


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


def test_efficientnet_lite0_imagenet_weights_are_real():
    m = load_model("efficientnet_lite0", "imagenet")
    assert CAT & set(top5(m, data.chelsea()))
    assert {"espresso", "cup"} & set(top5(m, data.coffee()))


def test_mobilenet_v2_imagenet_through_torchvision_cache(torch_home):
    assert shipped_mobilenet_v2_checkpoint() is not None
    url = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url
    assert not hub_checkpoint_path(url).exists()
    m = load_model("mobilenet_v2", "imagenet")
    assert hub_checkpoint_path(url).is_file()  # the shipped file was put where torchvision looks
    assert CAT & set(top5(m, data.chelsea()))
    assert {"espresso", "cup"} & set(top5(m, data.coffee()))


def test_imagenet_weights_missing_is_one_clear_error(torch_home):
    with pytest.raises(WeightsError) as e:
        load_model("inception_v3", "imagenet")
    msg = str(e.value)
    assert "inception_v3_google-0cc3c7bd.pth" in msg and str(torch_home) in msg
    assert "\n" not in msg


def test_inception_v3_imagenet_path_loads_the_cached_checkpoint(torch_home):
    # torchvision's file holds the AuxLogits head too; write one like it.
    ref = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    url = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1.url
    path = hub_checkpoint_path(url)
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)
    m = load_model("inception_v3", "imagenet")
    assert m.weights_id == f"imagenet:{path.name}"
    got = m.module.state_dict()
    for k, v in got.items():
        torch.testing.assert_close(v, ref.state_dict()[k])
    assert m.module.transform_input is True
    assert not any(k.startswith("AuxLogits") for k in got)


def test_resnet50_imagenet_path_and_state_dict_file(torch_home, tmp_path):
    ref = torchvision.models.resnet50(weights=None)
    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    path = hub_checkpoint_path(url)
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)
    m = load_model("resnet50", "imagenet")
    torch.testing.assert_close(m.module.fc.weight, ref.fc.weight)
    f = tmp_path / "mine.pt"
    torch.save({"state_dict": ref.state_dict()}, f)
    m2 = load_model("resnet50", str(f))
    torch.testing.assert_close(m2.module.conv1.weight, ref.conv1.weight)


def test_bad_weights_files(tmp_path):
    with pytest.raises(WeightsError, match="'random', 'random-xavier' or an existing"):
        load_model("resnet50", str(tmp_path / "nope.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="Cannot read weights file"):
        load_model("resnet50", str(junk))
    wrong = tmp_path / "wrong.pt"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), wrong)
    with pytest.raises(WeightsError, match="do not fit"):
        load_model("resnet50", str(wrong))


def test_efficientnet_twin_is_random_and_same_architecture():
    m = load_model("efficientnet_lite0", "imagenet")
    t = m.twin("random", seed=3)
    assert t.weights == "random" and t.layers == m.layers
    assert not torch.equal(t.module.conv_stem.weight, m.module.conv_stem.weight)
    assert np.isfinite(t.module.conv_stem.weight.detach().numpy()).all()
