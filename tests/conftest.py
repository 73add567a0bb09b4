"""Shared fixtures.

The real data lives outside the repository, in ``../shared/data`` (see its README.md). A user's
clone has no such folder: every test that needs it asks for the ``shared_data`` fixture, which
skips with a reason instead of failing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real test data not found at {SHARED_DATA} (a clone without ../shared/data): "
            "tests on real sensor data are skipped"
        )
    return SHARED_DATA


@pytest.fixture(scope="module")
def cave_val_ref(shared_data):
    """The CAVE validation scene ``oil_painting`` cropped to its top-left 128×128 pixels
    (31 bands, 400–700 nm, DN / 65535): small enough to keep the suite fast."""
    from napari_cofusion.core.io import read_cube

    folder = shared_data / "cave" / "oil_painting_ms"
    if not folder.is_dir():
        pytest.skip(f"CAVE scene folder {folder} not found")
    cube = read_cube(folder)
    return cube.with_data(cube.data[:, :128, :128].copy())
