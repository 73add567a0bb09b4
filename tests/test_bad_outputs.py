"""Nothing the user has is lost or overwritten, and nothing half-written is left: exclusive
creation, the umask, temporaries removed on error and after a killed writer, weights rescued
when their folder cannot be written, outputs checked before the work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_cofusion.cli import main
from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CofusionWarning, CubeError
from napari_cofusion.core.io import read_cube, write_cube
from napari_cofusion.core.io.common import PARTIAL, new_files, temp_beside
from napari_cofusion.degrade.simulate import save_pair, simulate_pair
from napari_cofusion.learn.models import CoFusion, CoFusionConfig
from napari_cofusion.learn.weights import make_card, save_weights
from napari_cofusion.samples import bundled_reference

SMALL = dict(width=16, depths=(1, 1, 1), top_k=4)


def _cube(seed: int = 0) -> Cube:
    return Cube(np.random.default_rng(seed).random((4, 8, 8), dtype=np.float32), name=f"c{seed}")


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_name_taken_while_writing_is_not_replaced(tmp_path):
    """Two writers on one name: the one that finishes second fails and the first file stays."""
    target = tmp_path / "out.tif"
    with pytest.raises(CubeError, match="created by someone else"):
        with new_files([target]) as (tmp,):
            tmp.write_bytes(b"second writer")
            target.write_bytes(b"first writer")  # another process got there meanwhile
    assert target.read_bytes() == b"first writer"
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_umask_permissions(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        written = write_cube(_cube(), tmp_path / "c.hdr") + write_cube(_cube(), tmp_path / "c.npy")
    finally:
        os.umask(old)
    for f in written:
        assert Path(f).stat().st_mode & 0o777 == mode, f


def test_a_failed_write_leaves_no_temporaries_and_no_half_pair(tmp_path, monkeypatch):
    import napari_cofusion.core.io.envi as envi

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(envi.np, "ascontiguousarray", broken)
    with pytest.raises(OSError, match="disk full"):
        write_cube(_cube(), tmp_path / "c.hdr")
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    """A writer killed with SIGKILL cannot clean up: its ``.NAME.PID.XXXX.partial`` file is found
    and removed by the next write in that folder (its process is gone)."""
    code = ("import os, sys; from pathlib import Path; from napari_cofusion.core.io.common import temp_beside;"
            "t = temp_beside(Path(sys.argv[1])); t.write_bytes(b'x' * 1000); os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.hdr")])
    stale = _hidden(tmp_path)
    assert len(stale) == 1 and stale[0].endswith(PARTIAL)
    mine = temp_beside(tmp_path / "other.tif")  # this process's own partial is kept
    write_cube(_cube(), tmp_path / "next.tif")
    assert _hidden(tmp_path) == [mine.name]


def test_simulate_into_a_folder_with_a_recipe_writes_nothing(tmp_path):
    (tmp_path / "recipe.json").write_text("{}")
    pair = simulate_pair(bundled_reference(), protocol="cave-x4")
    with pytest.raises(CubeError, match="recipe.json: already exists"):
        save_pair(pair, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.json"]


def test_weights_are_rescued_when_their_folder_cannot_be_written(tmp_path, monkeypatch):
    import napari_cofusion.learn.weights as wmod

    monkeypatch.setenv("NAPARI_COFUSION_RESCUE", str(tmp_path / "rescued"))
    model = CoFusion(CoFusionConfig(hs_bands=6, ms_bands=3, scale=4, **SMALL))
    real = wmod._write_pair

    def read_only(p, card_path, *a, **k):
        if p.parent == tmp_path / "ro":
            raise OSError(30, "Read-only file system", str(p))
        return real(p, card_path, *a, **k)

    monkeypatch.setattr(wmod, "_write_pair", read_only)
    (tmp_path / "ro").mkdir()
    with pytest.warns(CofusionWarning, match="could not write .*ro/w.safetensors.*saved to .*rescued"):
        st, js = save_weights(model, tmp_path / "ro" / "w", make_card(model))
    assert Path(st).parent == tmp_path / "rescued" and Path(st).is_file()
    assert json.loads(Path(js).read_text())["rescued_from"].endswith("ro/w.safetensors")


def test_fuse_checks_its_output_before_the_work(tmp_path, capsys):
    pair = simulate_pair(bundled_reference(), protocol="cave-x4")
    save_pair(pair, tmp_path / "p")
    args = ["fuse", "--lr", str(tmp_path / "p" / "lr.hdr"), "--msi", str(tmp_path / "p" / "msi.hdr")]
    assert main(args + ["--out", str(tmp_path / "f.hdr")]) == 0
    first = (tmp_path / "f.img").read_bytes()
    assert main(args + ["--method", "bicubic", "--out", str(tmp_path / "f.hdr")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "f.img").read_bytes() == first  # the first result is kept
    assert main(args + ["--out", str(tmp_path / "missing" / "f.hdr")]) == 2
    assert "folder does not exist" in capsys.readouterr().err


def test_finetune_refuses_an_unusable_output_before_training(tmp_path, capsys):
    pair = simulate_pair(bundled_reference(), protocol="cave-x4")
    save_pair(pair, tmp_path / "p")
    (tmp_path / "taken.json").write_text("{}")
    for out, says in ((tmp_path / "missing" / "w", "folder does not exist"), (tmp_path / "taken", "already exists")):
        rc = main(["finetune", "--lr", str(tmp_path / "p" / "lr.hdr"), "--msi", str(tmp_path / "p" / "msi.hdr"),
                   "--steps", "1", "--out", str(out)])
        err = capsys.readouterr()
        assert rc == 2 and says in err.err
        assert "step" not in err.out  # no training ran


def test_evaluate_json_is_json_even_for_a_perfect_result(tmp_path, capsys):
    cube = _cube()
    write_cube(cube, tmp_path / "a.tif")
    assert main(["evaluate", "--fused", str(tmp_path / "a.tif"), "--ref", str(tmp_path / "a.tif"), "--scale", "4",
                 "--json"]) == 0
    text = capsys.readouterr().out
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["psnr"] is None  # identical cubes: infinite PSNR, written as null


def test_warnings_are_one_line_in_the_cli(tmp_path, capsys):
    data = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    data[0, :2] = -0.2
    np.save(tmp_path / "neg.npy", data)
    assert main(["evaluate", "--fused", str(tmp_path / "neg.npy"), "--ref", str(tmp_path / "neg.npy"),
                 "--scale", "4"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert err and all(line.startswith("napari-cofusion evaluate: warning:") for line in err)
    assert "32 values below 0" in err[0]
    assert read_cube(tmp_path / "neg.npy", band_axis=0).meta["clipped"] == 32
