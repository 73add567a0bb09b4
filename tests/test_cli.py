"""The command line runs the same core end to end and fails cleanly on bad input."""

import json

import numpy as np
import pytest

from napari_cofusion.cli import main
from napari_cofusion.core.cube import Cube
from napari_cofusion.core.io import read_cube, write_cube
from napari_cofusion.samples import bundled_reference


@pytest.fixture
def ref_file(tmp_path):
    path = tmp_path / "ref.npz"
    write_cube(bundled_reference(), path)
    return path


def test_simulate_fuse_evaluate(tmp_path, ref_file, capsys):
    out = tmp_path / "pair"
    assert main(["simulate", "--ref", str(ref_file), "--scale", "4", "--psf", "weak", "--srf", "nikon-d700",
                 "--out-dir", str(out)]) == 0
    for name in ("lr.hdr", "lr.img", "msi.hdr", "ref.hdr", "recipe.json"):
        assert (out / name).exists()
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["scale"] == 4 and recipe["psf"]["kind"] == "weak" and len(recipe["srf_matrix"]) == 3
    assert read_cube(out / "lr.hdr").shape == (31, 32, 32)
    assert read_cube(out / "msi.hdr").shape == (3, 128, 128)

    fused = {}
    for method in ("bicubic", "glp-hs"):
        fused[method] = tmp_path / f"{method}.tif"
        assert main(["fuse", "--lr", str(out / "lr.hdr"), "--msi", str(out / "msi.hdr"), "--method", method,
                     "--out", str(fused[method])]) == 0
    capsys.readouterr()
    scores = {}
    for method, path in fused.items():
        assert main(["evaluate", "--fused", str(path), "--ref", str(out / "ref.hdr"), "--scale", "4", "--json"]) == 0
        scores[method] = json.loads(capsys.readouterr().out)
    assert set(scores["glp-hs"]) == {"psnr", "ssim", "sam", "ergas", "rmse", "cc"}
    assert scores["glp-hs"]["psnr"] > scores["bicubic"]["psnr"] + 8
    assert scores["glp-hs"]["sam"] < scores["bicubic"]["sam"]

    assert main(["evaluate", "--fused", str(fused["glp-hs"]), "--lr", str(out / "lr.hdr"), "--msi",
                 str(out / "msi.hdr"), "--json"]) == 0
    nr = json.loads(capsys.readouterr().out)
    assert set(nr) == {"d_lambda", "d_s", "qnr"} and 0 < nr["qnr"] <= 1


def test_simulate_with_noise_is_seeded(tmp_path, ref_file):
    for d in ("a", "b"):
        assert main(["simulate", "--ref", str(ref_file), "--protocol", "cave-x2", "--snr", "30", "--seed", "7",
                     "--format", ".npz", "--out-dir", str(tmp_path / d)]) == 0
    a, b = read_cube(tmp_path / "a" / "lr.npz"), read_cube(tmp_path / "b" / "lr.npz")
    np.testing.assert_array_equal(a.data, b.data)


def test_bad_input_is_one_line_error(tmp_path, ref_file, capsys):
    out = tmp_path / "pair"
    main(["simulate", "--ref", str(ref_file), "--protocol", "cave-x4", "--out-dir", str(out)])
    capsys.readouterr()
    # swapped inputs
    assert main(["fuse", "--lr", str(out / "msi.hdr"), "--msi", str(out / "lr.hdr"), "--out", str(tmp_path / "f.tif")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "swapped" in err
    # missing file
    assert main(["fuse", "--lr", str(tmp_path / "nope.hdr"), "--msi", str(out / "msi.hdr"), "--out", str(tmp_path / "g.tif")]) == 2
    assert "nope.hdr" in capsys.readouterr().err
    # output exists: refused, old file untouched
    target = tmp_path / "exists.tif"
    target.write_bytes(b"keep me")
    assert main(["fuse", "--lr", str(out / "lr.hdr"), "--msi", str(out / "msi.hdr"), "--out", str(target)]) == 2
    assert target.read_bytes() == b"keep me"
    assert "already exists" in capsys.readouterr().err
    # simulate into a folder that already has a pair: refused before writing anything
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["simulate", "--ref", str(ref_file), "--protocol", "cave-x4", "--out-dir", str(out)]) == 2
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # scale mismatch
    write_cube(Cube(np.zeros((3, 100, 90), np.float32) + 0.5, name="m"), tmp_path / "m.npy")
    assert main(["fuse", "--lr", str(out / "lr.hdr"), "--msi", str(tmp_path / "m.npy"), "--out", str(tmp_path / "h.tif")]) == 2
    assert "integer scale" in capsys.readouterr().err


def test_demo_runs(capsys):
    assert main(["demo"]) == 0
    text = capsys.readouterr().out
    assert "glp-hs" in text and "PSNR" in text
