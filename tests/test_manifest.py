"""The npe2 manifest is found and valid, and its readers/writers work through npe2."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")


def test_npe2_validate_with_imports():
    exe = Path(sys.executable).with_name("npe2")
    r = subprocess.run([str(exe), "validate", "napari-cofusion", "--imports"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "valid" in r.stdout


def test_manifest_is_the_root_file():
    pm = npe2.PluginManager.instance()
    pm.discover()
    mf = pm.get_manifest("napari-cofusion")
    from importlib import resources

    root = Path(__file__).resolve().parents[1] / "napari.yaml"
    installed = resources.files("napari_cofusion").joinpath("napari.yaml")
    assert installed.read_text() == root.read_text()  # the package ships the root manifest
    assert {r.command for r in mf.contributions.readers} == {"napari-cofusion.get_reader"}
    assert len(mf.contributions.writers) == 3


def test_reader_through_npe2(tmp_path):
    from napari_cofusion.core.cube import Cube
    from napari_cofusion.core.io import write_cube

    cube = Cube(np.random.default_rng(0).random((4, 8, 9), dtype=np.float32), wavelengths=[450, 550, 650, 850], name="c")
    path = tmp_path / "c.tif"
    write_cube(cube, path)
    layers = npe2.read([str(path)], stack=False, plugin_name="napari-cofusion")
    assert len(layers) == 1
    data, kwargs, kind = layers[0]
    assert kind == "image" and kwargs["rgb"] is False
    assert data.shape == (4, 8, 9)
    assert kwargs["metadata"]["wavelengths"] == [450, 550, 650, 850]


def test_writer_through_npe2_refuses_overwrite(tmp_path):
    data = np.random.default_rng(1).random((5, 6, 7), dtype=np.float32)
    meta = {"name": "x", "metadata": {"wavelengths": [400, 500, 600, 700, 800]}}
    out = tmp_path / "x.hdr"
    written = npe2.write(str(out), [(data, meta, "image")], plugin_name="napari-cofusion")
    assert Path(written[0]).exists()
    from napari_cofusion.core.io import read_cube

    back = read_cube(out)
    np.testing.assert_allclose(back.data, data)
    np.testing.assert_allclose(back.wavelengths, [400, 500, 600, 700, 800])
    with pytest.raises(Exception, match="already exists"):
        npe2.write(str(out), [(data, meta, "image")], plugin_name="napari-cofusion")
