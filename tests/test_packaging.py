"""A plain (non-editable) install still exposes the manifest, the samples and the weights.

The test builds the wheel from this checkout, installs it into a private folder and runs a fresh
interpreter that imports the package from there (that folder comes first on its path).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = r"""
import json, sys
from pathlib import Path
import napari_cofusion, npe2
from napari_cofusion.learn.weights import list_weights, load_weights
from napari_cofusion.samples import cave_pair, houston_pair

pm = npe2.PluginManager.instance()
pm.discover()
mf = pm.get_manifest("napari-cofusion")
lr, msi, ref = cave_pair("cave-x4")
hs, rgb = houston_pair()
weights = list_weights()
model, card = load_weights(weights[0])
print(json.dumps({
    "package": napari_cofusion.__file__,
    "manifest": str(mf.package_metadata and mf.name),
    "widgets": sorted(w.display_name for w in mf.contributions.widgets),
    "samples": sorted(s.key for s in mf.contributions.sample_data),
    "weights": [Path(w).name for w in weights],
    "weights_dir": str(Path(weights[0]).parent),
    "cave": list(lr.shape), "houston": list(hs.shape),
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = out.glob("napari_cofusion-*.whl")
    return whl


def test_wheel_holds_the_manifest_samples_and_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "napari_cofusion/napari.yaml" in names
    assert {"napari_cofusion/data/cave_peppers_crop.npz", "napari_cofusion/data/houston2018_crop.npz"} <= names
    shipped = sorted(p.name for p in (ROOT / "weights").glob("*.safetensors"))
    assert shipped
    for name in shipped:
        assert f"napari_cofusion/weights/{name}" in names
        assert f"napari_cofusion/weights/{name[:-len('.safetensors')]}.json" in names
    ep = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "napari-cofusion = napari_cofusion:napari.yaml" in ep


def test_plain_install_is_found_by_npe2(wheel, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(got["package"]).is_relative_to(target), got["package"]  # not the editable checkout
    assert got["manifest"] == "napari-cofusion"
    assert len(got["widgets"]) == 4 and set(got["samples"]) == {"cave_pair", "houston_pair"}
    assert Path(got["weights_dir"]).is_relative_to(target)
    assert set(got["weights"]) == {p.name for p in (ROOT / "weights").glob("*.safetensors")}
    assert got["cave"][0] == 31 and got["houston"][0] == 48
