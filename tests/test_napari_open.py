"""A real napari window opens cubes through the plugin's reader (needs Xvfb)."""

import numpy as np
import pytest

pytest.importorskip("napari")


@pytest.fixture
def shared_data():
    from pathlib import Path

    d = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not d.is_dir():
        pytest.skip(f"shared test data not found at {d}")
    return d


def test_open_envi_and_mat_pair_in_viewer(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    layers = viewer.open(str(shared_data / "envi_aisafenix" / "image.hdr"), plugin="napari-cofusion")
    assert len(layers) == 1
    lyr = layers[0]
    assert lyr.data.shape == (450, 38, 23)
    assert lyr.rgb is False
    assert len(lyr.metadata["wavelengths"]) == 450
    # a .mat fusion pair opens as two layers; the 3-band RGB image is a cube, not an RGB image
    pair = viewer.open(str(shared_data / "houston2018" / "houston_dataset.mat"), plugin="napari-cofusion")
    shapes = sorted(l.data.shape for l in pair)
    assert shapes == [(3, 512, 512), (48, 128, 128)]
    assert all(l.rgb is False for l in pair)
    assert np.isfinite(viewer.screenshot(canvas_only=True)).all()
