"""Misuse from Python gets a clear error before any work, never a silent different result or a
traceback from inside torch."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from napari_cofusion.api import fuse, simulate_pair
from napari_cofusion.core.errors import CubeError, DeviceError
from napari_cofusion.learn.device import resolve_device
from napari_cofusion.learn.infer import fuse_tensor
from napari_cofusion.learn.models import CoFusion, CoFusionConfig
from napari_cofusion.learn.selfsup import scene_config
from napari_cofusion.learn.train import TrainConfig
from napari_cofusion.samples import bundled_reference

SMALL = dict(width=16, depths=(1, 1, 1), top_k=4)


@pytest.fixture(scope="module")
def pair():
    return simulate_pair(bundled_reference(), protocol="cave-x4")


def test_fuse_refuses_unknown_keywords(pair):
    with pytest.raises(CubeError, match="glp-hs does not take radious"):
        fuse(pair.lr, pair.msi, "glp-hs", radious=3)


def test_fuse_refuses_weights_for_a_classical_method(pair, tmp_path):
    with pytest.raises(CubeError, match="bicubic does not take weights.*learned methods \\(cofusion, csakd, hyfusion, s3rnet\\)"):
        fuse(pair.lr, pair.msi, "bicubic", weights=str(tmp_path / "w.safetensors"))


def test_fuse_refuses_a_constant_pair(pair):
    zero = pair.lr.with_data(np.zeros_like(pair.lr.data))
    with pytest.raises(CubeError, match="constant"):
        fuse(zero, pair.msi.with_data(np.zeros_like(pair.msi.data)), "cofusion")


@pytest.mark.parametrize("phase", [-1, 4, 1.5])
def test_fuse_refuses_a_phase_outside_the_scale(pair, phase):
    with pytest.raises(CubeError, match="phase"):
        fuse(pair.lr, pair.msi, "glp-hs", phase=phase)


def test_the_smallest_tiles_give_a_finite_result_and_smaller_ones_are_refused(pair):
    """tile=8 used to return NaN (blending weights that vanished between tiles)."""
    model = CoFusion(CoFusionConfig(hs_bands=31, ms_bands=3, scale=4, **SMALL)).eval()
    lr, msi = torch.from_numpy(pair.lr.data), torch.from_numpy(pair.msi.data)
    with pytest.raises(CubeError, match="at least lcm\\(scale, 8\\) = 8"):
        fuse_tensor(model, lr, msi, tile=4)
    out = fuse_tensor(model, lr, msi, tile=8, overlap=64)
    assert torch.isfinite(out).all()
    with pytest.raises(CubeError, match="at least"):
        fuse(pair.lr, pair.msi, "glp-hs", tile=4)


@pytest.mark.parametrize("device", ["banana", "cuda:x", "tpu"])
def test_unknown_devices_are_refused(device):
    with pytest.raises(DeviceError, match="device|use cpu"):
        resolve_device(device)


def test_zero_steps_are_refused_not_defaulted():
    with pytest.raises(CubeError, match="steps = 0"):
        scene_config(0)
    with pytest.raises(CubeError, match="lr = -0.001"):
        TrainConfig(lr=-1e-3)
    assert scene_config().steps > 0




def test_simulate_refuses_scale_zero():
    with pytest.raises(CubeError, match="scale"):
        simulate_pair(bundled_reference(), scale=0)


def test_cli_misuse_is_one_line_rc_2(tmp_path, capsys):
    from napari_cofusion.api import write_cube
    from napari_cofusion.cli import main
    from napari_cofusion.degrade.simulate import save_pair

    save_pair(simulate_pair(bundled_reference(), protocol="cave-x4"), tmp_path / "p")
    pair = ["--lr", str(tmp_path / "p" / "lr.hdr"), "--msi", str(tmp_path / "p" / "msi.hdr")]
    tiny = bundled_reference().with_data(np.ascontiguousarray(bundled_reference().data[:, :5, :5]))
    write_cube(tiny, tmp_path / "tiny.tif")
    cases = [
        (["fuse", *pair, "--method", "cofusion", "--device", "banana", "--out", str(tmp_path / "a.hdr")], "banana"),
        (["fuse", *pair, "--method", "glp-hs", "--weights", "cofusion_cave_x4", "--out", str(tmp_path / "b.hdr")],
         "does not take weights"),
        (["fuse", *pair, "--psf", "box:0", "--out", str(tmp_path / "c.hdr")], "PSF size 0"),
        (["fuse", *pair, "--tile", "4", "--out", str(tmp_path / "d.hdr")], "at least"),
        (["simulate", "--ref", str(tmp_path / "tiny.tif"), "--scale", "0", "--out", str(tmp_path / "s")], "scale"),
        (["evaluate", "--fused", str(tmp_path / "tiny.tif"), "--ref", str(tmp_path / "tiny.tif"), "--scale", "4"],
         "at least 6×6"),
        (["finetune", *pair, "--steps", "0", "--out", str(tmp_path / "w")], "steps = 0"),
    ]
    for argv, says in cases:
        rc = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, argv
        assert len(err) == 1 and says in err[0] and "Traceback" not in err[0], (argv, err)
