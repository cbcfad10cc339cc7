from __future__ import annotations

import pytest
import torch

from tldiag.errors import ModelUnavailableError, SpecError
from tldiag.models import (LOGITS, PRE_LOGITS, ModelSpec, list_models, load_model, model_status,
                           parse_model_id, pool, random_init_id)


# ------------------------------------------------------------------ ids
@pytest.mark.parametrize("model_id, expected", [
    ("efficientnet-lite0", ModelSpec("efficientnet-lite", "efficientnet-lite0")),
    ("torchvision:resnet50:IMAGENET1K_V2", ModelSpec("torchvision", "resnet50", "IMAGENET1K_V2")),
    ("torchvision:resnet50", ModelSpec("torchvision", "resnet50", "IMAGENET1K_V2")),  # DEFAULT resolved
    ("timm:resnet18.a1_in1k", ModelSpec("timm", "resnet18.a1_in1k")),
    ("random:efficientnet-lite0?seed=3", ModelSpec("random", "efficientnet-lite0", None, (("seed", "3"),))),
    ("checkpoint:/m.pt?arch=timm:resnet18", ModelSpec("checkpoint", "/m.pt", None, (("arch", "timm:resnet18"),))),
])
def test_parse_model_id(model_id, expected):
    spec = parse_model_id(model_id)
    assert spec == expected
    assert parse_model_id(str(spec)) == spec


@pytest.mark.parametrize("bad, fragment", [
    ("resnet50", "Unknown model id"),
    ("torchvision:resnet5", "not a torchvision classification model"),
    ("torchvision:resnet50:IMAGENET9K", "valid: IMAGENET1K_V1, IMAGENET1K_V2"),
    ("timm:not_a_model_xyz", "not a timm model"),
    ("timm:resnet18:a1", "after a dot"),
    ("random:random:efficientnet-lite0", "pretrained architecture id"),
    ("random:efficientnet-lite0?colour=1", "Unknown option 'colour'"),
    ("checkpoint:", "names no file"),
])
def test_bad_model_ids(bad, fragment):
    with pytest.raises(SpecError) as info:
        parse_model_id(bad)
    assert fragment in str(info.value)


def test_registry_lists_offline_models_first():
    infos = list_models()
    assert [m.id for m in infos[:3]] == ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
    assert all(m.status == "installed" for m in infos[:3])
    tv = [m for m in infos if m.id.startswith("torchvision:")]
    assert len(tv) > 80 and any(m.id == "torchvision:resnet50:IMAGENET1K_V2" for m in tv)
    assert model_status("random:efficientnet-lite0") == "random init"


# ------------------------------------------------------------------ real pretrained weights
@pytest.mark.slow
def test_efficientnet_lite0_sees_the_cat():
    """Real ImageNet weights offline: scikit-image's chelsea photo is a cat (classes 281-285)."""
    from skimage import data
    from PIL import Image

    from tldiag.forward import ResizeCrop, normalise

    model = load_model("efficientnet-lite0")
    assert model.pretrained and model.preprocessing.input_size == 224
    assert model.preprocessing.mean == (0.5, 0.5, 0.5) and model.preprocessing.interpolation == "bicubic"
    x = normalise(ResizeCrop(model.preprocessing)(Image.fromarray(data.chelsea())).unsqueeze(0),
                  model.preprocessing)
    with torch.inference_mode():
        probs = model.extract(x, [LOGITS])[LOGITS].softmax(1)[0]
    top = int(probs.argmax())
    assert 281 <= top <= 285, f"predicted ImageNet class {top}"
    assert float(probs[281:286].sum()) > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet-lite1", "efficientnet-lite2"])
def test_other_lite_weights_load(name):
    model = load_model(name, resolution=64)
    assert model.pretrained and len(model.weights_hash) == 64
    assert model.weights_hash != load_model("efficientnet-lite0", resolution=64).weights_hash


def test_random_init_is_seeded_and_differs_from_pretrained():
    a = load_model("random:timm:test_resnet")
    b = load_model("random:timm:test_resnet")
    c = load_model("random:timm:test_resnet?seed=1")
    pa, pb, pc = (next(m.module.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert not a.pretrained and a.weights_hash == "random-init-seed0"


def test_random_lite_has_the_pretrained_architecture():
    rnd, pre = load_model("random:efficientnet-lite0", resolution=64), load_model("efficientnet-lite0", resolution=64)
    assert rnd.tap_names == pre.tap_names and rnd.preprocessing == pre.preprocessing
    assert not torch.equal(next(rnd.module.parameters()), next(pre.module.parameters()))


# ------------------------------------------------------------------ taps
@pytest.mark.parametrize("model_id", ["random:timm:test_resnet", "random:timm:test_vit",
                                      "random:timm:test_efficientnet", "random:torchvision:resnet18",
                                      "random:torchvision:mobilenet_v3_small", "random:torchvision:swin_t"])
def test_taps_are_ordered_and_extract_pooled_vectors(model_id):
    model = load_model(model_id, resolution=64 if "swin" not in model_id else None)
    names = model.tap_names
    assert len(names) >= 4 and names[-2:] == [PRE_LOGITS, LOGITS]
    depths = [t.depth for t in model.taps]
    assert depths == sorted(depths) and 0 <= depths[0] and depths[-1] == 1.0
    strides = [t.stride for t in model.taps if t.stride]
    assert strides == sorted(strides)
    size = model.preprocessing.input_size
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        out = model.extract(x, names)
        full = model.module(x)
    for t in model.taps:
        assert out[t.name].shape == (2, t.channels), t.name
    torch.testing.assert_close(out[LOGITS], full)  # the logits tap is the model's own output


def test_torchvision_taps_come_from_the_graph():
    model = load_model("random:torchvision:resnet18", resolution=64)
    assert model.tap_names == ["relu", "layer1", "layer2", "layer3", "layer4", PRE_LOGITS, LOGITS]
    assert model.tap("layer3").channels == 256 and model.tap("layer3").stride == 16
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        out = model.extract(x, ["layer2", PRE_LOGITS])
        m = model.module
        h = m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))
        pre = torch.flatten(m.avgpool(m.layer4(m.layer3(h))), 1)
    torch.testing.assert_close(out["layer2"], h.mean(dim=(2, 3)))
    torch.testing.assert_close(out[PRE_LOGITS], pre)


def test_unknown_tap_lists_the_valid_ones():
    model = load_model("random:timm:test_resnet")
    with pytest.raises(SpecError, match="valid taps: act1, layer1"):
        model.extract(torch.zeros(1, 3, 32, 32), ["layer9"])


def test_default_taps_span_shallow_to_deep():
    model = load_model("random:timm:test_vit")
    taps = model.default_taps(4)
    assert len(taps) == 4 and taps[0] == model.tap_names[0] and taps[-1] == PRE_LOGITS


def test_resolution_override_keeps_crop_ratio():
    model = load_model("random:efficientnet-lite0", resolution=128)
    assert model.preprocessing.input_size == 128
    assert abs(model.preprocessing.crop_pct - 0.875) < 0.01
    with pytest.raises(SpecError, match="out of range"):
        load_model("random:efficientnet-lite0", resolution=4)


def test_fixed_size_model_refuses_other_resolutions():
    with pytest.raises(SpecError, match="cannot run at 96x96"):
        load_model("random:torchvision:vit_b_16", resolution=96)


def test_pool_layouts():
    nchw = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    torch.testing.assert_close(pool(nchw), nchw.mean(dim=(2, 3)))
    nhwc = torch.randn(2, 4, 4, 7)
    torch.testing.assert_close(pool(nhwc), nhwc.mean(dim=(1, 2)))
    tokens = torch.randn(2, 5, 7)
    torch.testing.assert_close(pool(tokens), tokens.mean(dim=1))


# ------------------------------------------------------------------ downloads (offline here)
def test_torchvision_weights_offline_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import torchvision

    def offline(self, *args, **kwargs):
        raise OSError("no network")
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(ModelUnavailableError) as info:
        load_model("torchvision:resnet18")
    msg = str(info.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in msg
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert model_status("torchvision:resnet18") == "needs download"


def test_torchvision_weights_load_from_the_cache(tmp_path, monkeypatch):
    """A weights file placed where torchvision expects it is used with no network."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    path = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url",
                        lambda url, **kw: torch.load(path, weights_only=True), raising=False)
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict",
                        lambda self, *a, **kw: torch.load(path, weights_only=True))
    model = load_model("torchvision:resnet18", resolution=64)
    assert model_status("torchvision:resnet18") == "cached"
    assert model.pretrained and model.preprocessing.mean == (0.485, 0.456, 0.406)
    assert torch.equal(model.module.fc.weight, reference.fc.weight)


def test_timm_weights_offline_error():
    with pytest.raises(ModelUnavailableError) as info:
        load_model("timm:test_resnet.r160_in1k")
    msg = str(info.value)
    assert "Hugging Face hub" in msg and "timm.create_model('test_resnet.r160_in1k', pretrained=True)" in msg


# ------------------------------------------------------------------ local checkpoints
def _tiny_state(num_classes: int | None = None) -> dict:
    import timm

    torch.manual_seed(5)
    kwargs = {"num_classes": num_classes} if num_classes else {}
    return timm.create_model("test_resnet", **kwargs).state_dict()


def test_checkpoint_state_dict(tmp_path):
    state = _tiny_state()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pt")
    model = load_model(f"checkpoint:{tmp_path / 'w.pt'}?arch=timm:test_resnet")
    assert torch.equal(model.module.state_dict()["fc.weight"], state["fc.weight"])
    assert model.pretrained and len(model.weights_hash) == 64


def test_checkpoint_with_another_head_size(tmp_path):
    torch.save(_tiny_state(num_classes=7), tmp_path / "w7.pt")
    model = load_model(f"checkpoint:{tmp_path / 'w7.pt'}?arch=timm:test_resnet")
    assert model.num_classes == 7 and model.tap(LOGITS).channels == 7


def test_checkpoint_errors(tmp_path):
    import timm

    path = tmp_path / "pickled.pt"
    torch.save(timm.create_model("test_resnet"), path)  # a whole pickled module: refused
    with pytest.raises(ModelUnavailableError, match="weights_only=True"):
        load_model(f"checkpoint:{path}?arch=timm:test_resnet")
    torch.save(_tiny_state(), tmp_path / "w.pt")
    with pytest.raises(SpecError, match=r"\?arch=<model id>"):
        load_model(f"checkpoint:{tmp_path / 'w.pt'}")
    with pytest.raises(ModelUnavailableError, match="does not fit arch=timm:test_vit"):
        load_model(f"checkpoint:{tmp_path / 'w.pt'}?arch=timm:test_vit")
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        load_model(f"checkpoint:{tmp_path / 'missing.pt'}?arch=timm:test_resnet")


def test_checkpoint_outside_data_roots(tmp_path, monkeypatch):
    torch.save(_tiny_state(), tmp_path / "w.pt")
    monkeypatch.setenv("TLDIAG_DATA_ROOTS", str(tmp_path / "elsewhere"))
    with pytest.raises(Exception, match="outside the allowed data roots"):
        load_model(f"checkpoint:{tmp_path / 'w.pt'}?arch=timm:test_resnet")


def test_torchscript_checkpoint(tmp_path):
    import timm

    net = timm.create_model("test_resnet").eval()
    torch.jit.trace(net, torch.randn(1, 3, 64, 64)).save(str(tmp_path / "net.ts"))
    model = load_model(f"checkpoint:{tmp_path / 'net.ts'}", resolution=64)
    assert model.backend == "torchscript" and model.tap_names == ["output"]
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model.extract(x, ["output"])["output"], net(x))


def test_registered_finetunes_are_models(tmp_path):
    from tldiag.models import architecture_id, register_model, registered_models, unregister_model

    module = load_model("random:timm:test_resnet").module
    module.reset_classifier(3)
    torch.save(module.state_dict(), tmp_path / "ft.pt")
    with pytest.raises(SpecError, match="No fine-tuned model is registered as 'ft'"):
        parse_model_id("finetuned:ft")
    with pytest.raises(SpecError, match="Model name 'a b' must be"):
        register_model("a b", tmp_path / "ft.pt", "timm:test_resnet")
    with pytest.raises(SpecError, match="arch=random:timm:test_resnet must be a pretrained architecture"):
        register_model("ft", tmp_path / "ft.pt", "random:timm:test_resnet")
    assert register_model("ft", tmp_path / "ft.pt", "timm:test_resnet", description="mine") == "finetuned:ft"
    with pytest.raises(SpecError, match="already registered as 'ft'"):
        register_model("ft", tmp_path / "ft.pt", "timm:test_resnet")
    m = load_model("finetuned:ft", resolution=32)
    assert m.id == "finetuned:ft" and m.num_classes == 3 and m.pretrained
    assert architecture_id("finetuned:ft") == "timm:test_resnet"
    assert random_init_id("finetuned:ft") == "random:timm:test_resnet"
    assert ("finetuned:ft", "fine-tuned") in [(i.id, i.status) for i in list_models()]
    unregister_model("ft")
    assert registered_models() == {}
