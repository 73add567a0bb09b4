"""The classical fusion methods and the pair checks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cofusion.core import metrics
from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.api import check_pair, fuse, get_method, method_names
from napari_cofusion.degrade.simulate import simulate_pair


@pytest.fixture(scope="module")
def cave_pair(cave_val_ref):
    return simulate_pair(cave_val_ref, protocol="cave-x4")


@pytest.fixture(scope="module")
def fused(cave_pair):
    return {m: fuse(cave_pair.lr, cave_pair.msi, m) for m in ("bicubic", "glp-hs")}


@pytest.mark.parametrize("method", ["bicubic", "glp-hs"])
def test_fuse_shapes_and_metadata(cave_pair, fused, method):
    res = fused[method]
    assert res.method == method and res.scale == 4
    cube = res.cube
    assert cube.shape == cave_pair.reference.shape == (31, 128, 128)
    assert cube.data.dtype == np.float32
    assert np.isfinite(cube.data).all()
    assert cube.data.min() >= 0.0 and cube.data.max() <= 1.0
    np.testing.assert_allclose(cube.wavelengths, cave_pair.lr.wavelengths)
    assert cube.meta["method"] == method and cube.meta["psf"] == {"kind": "weak"}
    assert res.seconds >= 0.0


def test_bicubic_passes_through_the_lr_samples(cave_pair, fused):
    """Phase-aware: LR sample i sits at HR pixel 4·i + 2, where the decimation took it."""
    up = fused["bicubic"].cube.data
    np.testing.assert_allclose(up[:, 2::4, 2::4], cave_pair.lr.data, atol=1e-5)


def test_glp_hs_beats_bicubic(cave_pair, fused):
    p_bic = metrics.psnr(fused["bicubic"].cube, cave_pair.reference)
    p_glp = metrics.psnr(fused["glp-hs"].cube, cave_pair.reference)
    assert p_glp > p_bic + 8.0, (p_bic, p_glp)
    assert metrics.sam(fused["glp-hs"].cube, cave_pair.reference) < metrics.sam(fused["bicubic"].cube, cave_pair.reference)


def test_glp_hs_is_consistent_with_the_lr(cave_pair, fused):
    """Detail injection adds back the LR residual: degrading the fused cube gives ~the LRHSI."""
    import torch

    from napari_cofusion.core import ops

    k = cave_pair.recipe.kernel()
    with torch.inference_mode():
        back = ops.degrade(torch.from_numpy(fused["glp-hs"].cube.data).double(), k, 4).numpy()
    err = np.sqrt(np.mean((back - cave_pair.lr.data) ** 2))
    assert err < 2e-3


def test_global_regression_option(cave_pair):
    res = fuse(cave_pair.lr, cave_pair.msi, "glp-hs", radius=0)
    assert metrics.psnr(res.cube, cave_pair.reference) > metrics.psnr(
        fuse(cave_pair.lr, cave_pair.msi, "bicubic").cube, cave_pair.reference
    )


# ============================================================================ errors
def _cube(shape, name):
    return Cube(np.random.default_rng(0).random(shape, dtype=np.float32), name=name)


def test_check_pair_ok():
    assert check_pair(_cube((31, 16, 16), "lr"), _cube((3, 64, 64), "ms")) == 4


def test_check_pair_swapped():
    lr, ms = _cube((31, 16, 16), "hsi"), _cube((3, 64, 64), "rgb")
    with pytest.raises(CubeError, match="swapped") as exc:
        check_pair(ms, lr)
    assert "rgb" in str(exc.value) and "hsi" in str(exc.value)
    with pytest.raises(CubeError, match="swapped"):
        fuse(ms, lr, "bicubic")


def test_check_pair_non_integer_scale():
    with pytest.raises(CubeError, match="integer scale") as exc:
        check_pair(_cube((31, 16, 16), "lr"), _cube((3, 40, 40), "ms"))
    assert "16×16" in str(exc.value) and "40×40" in str(exc.value)
    with pytest.raises(CubeError, match="integer scale"):
        check_pair(_cube((31, 16, 16), "lr"), _cube((3, 64, 48), "ms"))


def test_check_pair_same_size():
    with pytest.raises(CubeError, match="nothing to fuse"):
        check_pair(_cube((31, 16, 16), "lr"), _cube((3, 16, 16), "ms"))


def test_unknown_method_lists_the_available_ones():
    lr, ms = _cube((31, 16, 16), "lr"), _cube((3, 64, 64), "ms")
    with pytest.raises(CubeError, match="unknown fusion method 'magic'") as exc:
        fuse(lr, ms, "magic")
    for name in ("bicubic", "glp-hs"):
        assert name in str(exc.value)
    assert {"bicubic", "glp-hs"} <= set(method_names())
    assert get_method("glp-hs").options == {"radius": "auto", "eps": 1e-8, "shrink": 0.0}
