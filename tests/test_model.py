"""The CoFusion network: shapes, gradients, learning, weights and tiled inference."""

import json

import numpy as np
import pytest
import torch

from napari_cofusion.core.errors import CubeError, WeightsError
from napari_cofusion.learn.models import CoFusion, CoFusionConfig
from napari_cofusion.learn.models.layers import HaarDWT, MaxPoolSame
from napari_cofusion.learn.weights import load_weights, save_weights

SMALL = dict(width=16, depths=(1, 1, 1), top_k=4)


def _perturb_head(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = model.head[-1].weight
        w.copy_(torch.randn(w.shape, generator=g) * 0.02)


def test_paper_configuration_parameter_count():
    m = CoFusion(CoFusionConfig(hs_bands=31, ms_bands=3, scale=4))
    n = m.n_params()
    assert m.cfg.width == 64
    assert abs(n - 4.91e6) / 4.91e6 < 0.02, n  # the paper reports 4.91 M


@pytest.mark.parametrize("hs,ms,scale,h,w", [(31, 3, 4, 8, 8), (103, 4, 2, 9, 7), (8, 3, 8, 5, 6), (191, 4, 4, 6, 10)])
def test_shapes_any_bands_scale_and_size(hs, ms, scale, h, w):
    m = CoFusion(CoFusionConfig(hs_bands=hs, ms_bands=ms, scale=scale, **SMALL)).eval()
    lr = torch.rand(2, hs, h, w)
    msi = torch.rand(2, ms, h * scale, w * scale)
    with torch.no_grad():
        out = m(lr, msi)
    assert out.shape == (2, hs, h * scale, w * scale)
    assert torch.isfinite(out).all()


def test_untrained_model_returns_its_base():
    m = CoFusion(CoFusionConfig(hs_bands=6, ms_bands=3, scale=4, **SMALL)).eval()
    lr, msi = torch.rand(1, 6, 8, 8), torch.rand(1, 3, 32, 32)
    base = torch.rand(1, 6, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(lr, msi, base), base)
        assert torch.allclose(m(lr, msi), m.upsample_lr(lr, (32, 32)))


def test_wrong_band_count_is_a_clear_error():
    m = CoFusion(CoFusionConfig(hs_bands=6, ms_bands=3, scale=4, **SMALL))
    with pytest.raises(ValueError, match="expects 6 HS and 3 MS bands"):
        m(torch.rand(1, 5, 8, 8), torch.rand(1, 3, 32, 32))


def test_haar_is_perfectly_invertible():
    dwt = HaarDWT()
    x = torch.rand(2, 5, 12, 10)
    ll, hf = dwt(x)
    assert ll.shape == (2, 5, 6, 5) and hf.shape == (2, 15, 6, 5)
    torch.testing.assert_close(dwt.inverse(ll, hf), x)


def test_haar_matches_its_filters():
    """The polyphase Haar equals the strided convolution with the orthonormal 2×2 filters."""
    a = 0.5
    k = torch.tensor([[[a, a], [a, a]], [[a, a], [-a, -a]], [[a, -a], [a, -a]], [[a, -a], [-a, a]]]).unsqueeze(1)
    x = torch.randn(2, 3, 8, 6)
    ref = torch.nn.functional.conv2d(x.reshape(6, 1, 8, 6), k, stride=2).reshape(2, 3, 4, 4, 3)
    ll, hf = HaarDWT()(x)
    torch.testing.assert_close(ll, ref[:, :, 0])
    torch.testing.assert_close(hf, ref[:, :, 1:].reshape(2, 9, 4, 3))


def test_haar_matches_pywavelets():
    """PyWavelets' one-level ``dwt2(x, "haar")`` is the reference: LL = cA, and the detail bands
    in the model's order [LH, HL, HH] are pywt's (cH, cV, cD), on odd channel counts and
    non-square sizes; the inverse equals ``pywt.idwt2``."""
    pywt = pytest.importorskip("pywt")
    x = np.random.default_rng(3).standard_normal((2, 5, 12, 6))
    cA, (cH, cV, cD) = pywt.dwt2(x, "haar", axes=(-2, -1))
    ll, hf = HaarDWT()(torch.from_numpy(x))
    hf = hf.reshape(2, 5, 3, 6, 3).numpy()
    np.testing.assert_allclose(ll.numpy(), cA, atol=1e-12)
    for i, ref in enumerate((cH, cV, cD)):
        np.testing.assert_allclose(hf[:, :, i], ref, atol=1e-12)
    back = HaarDWT().inverse(ll, torch.from_numpy(np.stack([cH, cV, cD], 2).reshape(2, 15, 6, 3)))
    np.testing.assert_allclose(back.numpy(), pywt.idwt2((cA, (cH, cV, cD)), "haar", axes=(-2, -1)), atol=1e-12)


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])
def test_max_pool_equals_torch(k):
    x = torch.randn(2, 4, 11, 13)
    want = torch.nn.functional.max_pool2d(x, k, 1, k // 2)
    with torch.no_grad():
        assert torch.equal(MaxPoolSame(k)(x), want)  # inference path
    xg = x.clone().requires_grad_(True)
    assert torch.equal(MaxPoolSame(k)(xg), want)  # training path


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    m = CoFusion(CoFusionConfig(hs_bands=6, ms_bands=3, scale=4, dropout=0.0, **SMALL))
    _perturb_head(m)
    lr, msi, ref = torch.rand(2, 6, 8, 8), torch.rand(2, 3, 32, 32), torch.rand(2, 6, 32, 32)
    loss = torch.nn.functional.l1_loss(m(lr, msi), ref)
    loss.backward()
    dead = [n for n, p in m.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, dead


def test_overfits_a_tiny_problem():
    from napari_cofusion.learn.train import fusion_loss

    torch.manual_seed(0)
    m = CoFusion(CoFusionConfig(hs_bands=6, ms_bands=3, scale=2, dropout=0.0, **SMALL))
    g = torch.Generator().manual_seed(1)
    ref = torch.nn.functional.avg_pool2d(torch.rand(1, 6, 32, 32, generator=g), 3, 1, 1)
    msi = torch.einsum("mc,bchw->bmhw", torch.rand(3, 6, generator=g).softmax(1), ref)
    lr = torch.nn.functional.avg_pool2d(ref, 2)
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    first = None
    for _ in range(500):  # LayerScale starts the blocks near the identity: a slower start
        loss = fusion_loss(m(lr, msi), ref)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first / 5, (first, float(loss.detach()))


def test_weights_roundtrip_is_safetensors_and_card(tmp_path):
    cfg = CoFusionConfig(hs_bands=6, ms_bands=3, scale=4, **SMALL)
    m = CoFusion(cfg)
    _perturb_head(m)
    card = {"architecture": "cofusion", "config": cfg.to_json(), "hs_bands": 6, "ms_bands": 3, "scale": 4}
    st, js = save_weights(m, tmp_path / "tiny", card)
    assert st.endswith(".safetensors") and js.endswith(".json")
    assert json.loads(open(js).read())["n_params"] == m.n_params()
    m2, card2 = load_weights(st)
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(CubeError, match="already exists"):
        save_weights(m, tmp_path / "tiny", card)


def test_loading_refuses_pickles_and_mismatched_cards(tmp_path):
    bad = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="safetensors"):
        load_weights(bad)
    cfg = CoFusionConfig(hs_bands=6, ms_bands=3, scale=4, **SMALL)
    full = {"architecture": "cofusion", "config": cfg.to_json(), "hs_bands": 6, "ms_bands": 3, "scale": 4}
    st, js = save_weights(CoFusion(cfg), tmp_path / "a", full)
    card = json.loads(open(js).read())
    card["config"]["hs_bands"] = card["hs_bands"] = 7  # a card for another model than the tensors
    open(js, "w").write(json.dumps(card))
    with pytest.raises(WeightsError, match="do not match the architecture"):
        load_weights(st)
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    (tmp_path / "junk.json").write_text(json.dumps(full))
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_weights(tmp_path / "junk.safetensors")


def test_fuse_with_weights_checks_band_counts(tmp_path):
    from napari_cofusion.core.cube import Cube
    from napari_cofusion.api import fuse

    cfg = CoFusionConfig(hs_bands=6, ms_bands=3, scale=4, **SMALL)
    st, _ = save_weights(CoFusion(cfg), tmp_path / "w6", {"architecture": "cofusion", "config": cfg.to_json(),
                                                          "hs_bands": 6, "ms_bands": 3, "scale": 4})
    rng = np.random.default_rng(0)
    lr = Cube(rng.random((6, 8, 8), dtype=np.float32), name="lr")
    msi = Cube(rng.random((3, 32, 32), dtype=np.float32), name="msi")
    res = fuse(lr, msi, "cofusion", weights=st)
    assert res.cube.shape == (6, 32, 32)
    lr7 = Cube(rng.random((7, 8, 8), dtype=np.float32), name="lr7")
    with pytest.raises(WeightsError, match="expects 6 HS bands"):
        fuse(lr7, msi, "cofusion", weights=st)


def test_tiled_matches_full_frame_on_a_real_scene(shared_data, monkeypatch):
    """The margin covers the network's reach: blocks equal the whole frame to 1e-4 in float32; the
    CPU's default bf16 path (learn.infer.cpu_fast_path) rounds the correction differently per
    block size, to a few 1e-4."""
    from napari_cofusion.learn.infer import cpu_fast_path, fuse_tensor
    from napari_cofusion.core.io import read_cube
    from napari_cofusion.degrade.simulate import simulate_pair

    ref = read_cube(shared_data / "cave" / "paints_ms")
    ref = ref.with_data(np.ascontiguousarray(ref.data[:, 100:356, 60:316]))
    pair = simulate_pair(ref, protocol="cave-x4")
    torch.manual_seed(0)
    m = CoFusion(CoFusionConfig(width=16, depths=(1, 1, 1), top_k=4)).eval()
    _perturb_head(m)
    lr, msi = torch.from_numpy(pair.lr.data), torch.from_numpy(pair.msi.data)
    fast = (fuse_tensor(m, lr, msi, tile=None), fuse_tensor(m, lr, msi, tile=160, overlap=128))
    monkeypatch.setenv("NAPARI_COFUSION_PRECISION", "float32")
    assert cpu_fast_path(m) == {"bf16": False, "channels_last": False}
    full = fuse_tensor(m, lr, msi, tile=None)
    calls = []
    tiled = fuse_tensor(m, lr, msi, tile=160, overlap=128, progress=lambda i, n: calls.append((i, n)))
    assert len(calls) > 1
    assert (full - m.upsample_lr(lr[None], msi.shape[-2:])[0]).abs().max() > 1e-3  # the model does something
    assert (full - tiled).abs().max() < 1e-4
    assert (fast[0] - fast[1]).abs().max() < 1e-3 and (fast[0] - full).abs().max() < 1e-3


def test_shipped_weights_lookup_by_band_counts(tmp_path, monkeypatch):
    from napari_cofusion.learn.weights import find_weights, resolve_weights, shipped_weights_dir

    monkeypatch.setenv("NAPARI_COFUSION_WEIGHTS", str(tmp_path))
    cfg = CoFusionConfig(hs_bands=6, ms_bands=3, scale=4, **SMALL)
    save_weights(CoFusion(cfg), tmp_path / "six", {"architecture": "cofusion", "config": cfg.to_json(),
                                                   "hs_bands": 6, "ms_bands": 3, "scale": 4})
    assert shipped_weights_dir() == tmp_path
    assert find_weights(6, 3, 4).name == "six.safetensors"
    assert resolve_weights("six", 6, 3, 4).name == "six.safetensors"
    with pytest.raises(WeightsError, match=r"no shipped cofusion weights for 48 HS bands.*six \(cofusion, 6 HS / 3 MS bands, ×4\)"):
        find_weights(48, 3, 4)
    with pytest.raises(WeightsError, match=r"no shipped csakd weights for 6 HS bands"):
        find_weights(6, 3, 4, architecture="csakd")  # another architecture's weights are not taken
    with pytest.raises(WeightsError, match="not found"):
        resolve_weights("nope", 6, 3, 4)


def test_package_sees_the_weights_folder():
    from pathlib import Path

    from napari_cofusion.learn.weights import shipped_weights_dir

    d = shipped_weights_dir()
    assert d.is_dir() and (d / "README.md").is_file()
    assert d.resolve() == (Path(__file__).resolve().parents[1] / "weights").resolve()
