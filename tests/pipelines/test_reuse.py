"""The feature-reuse chain (paper 004) end to end on the embedded H&E, small."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from rcvlab.errors import RcvlabError
from rcvlab.models import load_model
from rcvlab.pipelines.reuse import ReuseChainResult, run_reuse_demo
from rcvlab.runio import check_complete


@pytest.mark.slow
def test_reuse_chain_writes_every_part_and_its_numbers_agree(tmp_path):
    out = tmp_path / "reuse"
    lines: list[str] = []
    res = run_reuse_demo(
        out,
        models=["mobilenet_v2"],
        n_per_class=8,
        input_size=64,
        epochs=1,
        cam_top=3,
        vis_channels=(0, 1),
        vis_steps=2,
        vis_size=32,
        reps=2,
        cache_dir=tmp_path / "cache",
        echo=lines.append,
        progress=False,
    )
    check_complete(out)
    sub = out / "mobilenet_v2"
    for name in (
        "finetune/model.pt",
        "finetune/history.csv",
        "cam/cams.npz",
        "cam/comparison.json",
        "visualize/features.6/visualize.png",
        "visualize/features.14/visualize.png",
        "texture/weights_comparison.csv",
    ):
        assert (sub / name).is_file(), name
    html = (out / "report.html").read_text()
    for needle in ("Finetune", "Class activation maps", "Activation maximisation", "Concept RCVs"):
        assert needle in html
    again = ReuseChainResult.from_json(out / "reuse_chain.json")
    row = again.to_frame().iloc[0]
    ft = res.finetunes[0]
    # the chain's AUC is the finetune run's, recomputed from its stored predictions
    assert row["val_auc"] == pytest.approx(roc_auc_score(ft.val_labels, ft.val_probabilities))
    # the CAMs are of validation patches only, the reference CAMs of the same ones
    data_ids = np.array(res.cams[0].ids)
    assert set(data_ids) <= set(ft.val_ids)
    assert res.reference_cams[0].ids == res.cams[0].ids
    excess = res.cams[0].to_frame()["excess_gradcam++"]
    assert row["cam_excess_gradcam++"] == pytest.approx(float(np.nanmean(excess)))
    # texture: three networks, the finetuned one is the saved model
    tex = res.textures[0]
    assert [w.split(":")[0] for w in tex.weights][:2] == ["random-xavier", "imagenet"]
    best = tex.to_frame().query("measure == 'glcm_contrast' and weights == @tex.labels[1]")
    assert row["glcm_contrast_best_pretrained"] == pytest.approx(best["r2_mean"].max())
    tuned = load_model("mobilenet_v2", sub / "finetune" / "model.pt")
    assert tuned.categories == ("tumour",)
    assert any("finetuned" in line for line in lines)


def test_reuse_demo_refuses_a_network_it_has_no_layers_for(tmp_path):
    with pytest.raises(RcvlabError, match="resnet50"):
        run_reuse_demo(tmp_path / "o", models=["resnet50"])
    assert not (tmp_path / "o").exists()
