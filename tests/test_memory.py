"""Memory follows the block, not the scene: block-wise fusion gives the whole-frame result, the
block side comes from a budget that counts the bands, and ENVI output is written block by block.
(The peak-memory figures themselves are benchmarks/memory.py's.)"""

from __future__ import annotations

import numpy as np
import pytest

from napari_cofusion.api import fuse, get_method, simulate_pair
from napari_cofusion.core.io import read_cube
from napari_cofusion.fusion import classical
from napari_cofusion.fusion.blocks import block_side, memory_budget, plan_blocks
from napari_cofusion.learn.models import CoFusion, CoFusionConfig
from napari_cofusion.samples import bundled_reference


@pytest.fixture(scope="module")
def pair():
    return simulate_pair(bundled_reference(), protocol="cave-wald-x4")


@pytest.mark.parametrize("H, W, side, margin, scale", [(128, 128, 32, 16, 4), (96, 200, 24, 5, 2), (64, 64, 64, 0, 8),
                                                       (136, 72, 40, 33, 8)])
def test_block_interiors_cover_every_pixel_once(H, W, side, margin, scale):
    count = np.zeros((H, W), int)
    for b in plan_blocks(H, W, side, margin, scale):
        count[b.y0:b.y1, b.x0:b.x1] += 1
        assert b.ey0 % scale == 0 and b.ex0 % scale == 0  # each block has an exact LR counterpart
        assert b.ey0 <= b.y0 and b.ey1 >= b.y1 and (b.y0 - b.ey0 >= min(margin, b.y0))
    assert (count == 1).all()


def test_the_block_side_counts_the_bands():
    glp = get_method("glp-hs").bytes_per_pixel
    cof = get_method("cofusion").bytes_per_pixel
    budget = 1 << 30
    assert block_side(glp(128, 4), 4, 40, budget) < block_side(glp(31, 3), 4, 40, budget)
    assert block_side(cof(128, 4), 4, 40, budget) < block_side(cof(31, 3), 4, 40, budget)
    # a CAVE scene is fused whole by default, as before blocks existed
    assert 512 * 512 * cof(31, 3) <= memory_budget()


@pytest.mark.parametrize("method, tol", [("bicubic", 1e-5), ("glp-hs", 1e-5)])
def test_classical_blocks_equal_the_whole_frame(pair, method, tol):
    whole = fuse(pair.lr, pair.msi, method)
    blocks = fuse(pair.lr, pair.msi, method, tile=32)
    assert whole.blocks == 1 and blocks.blocks == 16
    assert np.abs(whole.cube.data - blocks.cube.data).max() < tol


@pytest.mark.parametrize("options", [{"radius": 0}, {"radius": 3, "shrink": 0.1},
                                     {"radius": [[0, 2, 1]] * 31, "shrink": [[0.0, 0.0, 0.01]] * 31}])
def test_glp_hs_blocks_use_the_scenes_global_fit(pair, options, monkeypatch):
    """The global candidate and the shrink's target are the whole pair's in every block (a block's
    own global fit differs from the scene's: the blocks would not match the whole frame)."""
    whole = fuse(pair.lr, pair.msi, "glp-hs", **options)
    blocks = fuse(pair.lr, pair.msi, "glp-hs", tile=32, **options)
    assert blocks.blocks == 16 and "scene_fit" in blocks.meta["options"]
    assert np.abs(whole.cube.data - blocks.cube.data).max() < 1e-5
    # without the scene's fit (each block its own), the blocks are measurably different
    monkeypatch.setattr(classical, "global_fit", lambda *a, **k: None)
    own = fuse(pair.lr, pair.msi, "glp-hs", tile=32, **options)
    assert np.abs(whole.cube.data - own.cube.data).max() > 1e-4


def test_network_and_consistency_blocks_match_the_whole_frame(pair):
    model = CoFusion(CoFusionConfig(hs_bands=31, ms_bands=3, scale=4, base="glp-hs", width=16, depths=(1, 1, 1),
                                    top_k=4)).eval()
    whole = fuse(pair.lr, pair.msi, "cofusion", model=model, consistency="on")
    blocks = fuse(pair.lr, pair.msi, "cofusion", model=model, consistency="on", tile=32)
    assert whole.consistency["applied"] and blocks.consistency["applied"]
    assert np.abs(whole.cube.data - blocks.cube.data).max() < 1e-3
    for k in ("lr_mismatch_after", "msi_mismatch_after"):
        assert blocks.consistency[k] < 2 * whole.consistency[k] + 1e-4


def test_envi_output_is_written_block_by_block_and_equals_the_in_memory_result(pair, tmp_path):
    ticks = []
    res = fuse(pair.lr, pair.msi, "glp-hs", tile=48, out=tmp_path / "f.hdr", progress=lambda i, n: ticks.append(i))
    assert res.cube is None and res.blocks == len(ticks) == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.hdr", "f.img"]
    back = read_cube(tmp_path / "f.hdr")
    np.testing.assert_array_equal(back.data, fuse(pair.lr, pair.msi, "glp-hs", tile=48).cube.data)
    np.testing.assert_allclose(back.wavelengths, pair.lr.wavelengths)


def test_a_failed_block_leaves_no_partial_output(pair, tmp_path):
    def stop(i, n):
        if i == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fuse(pair.lr, pair.msi, "glp-hs", tile=48, out=tmp_path / "f.hdr", progress=stop)
    assert list(tmp_path.iterdir()) == []
