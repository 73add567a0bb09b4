"""Bundled sample data (a small real CAVE crop) and the Houston 2018 pair when present."""

from __future__ import annotations

from importlib import resources

import numpy as np

from .cube import Cube

__all__ = ["bundled_reference", "CAVE_CITATION"]

CAVE_CITATION = (
    "Yasuma, Mitsunaga, Iso, Nayar, 'Generalized Assorted Pixel Camera', IEEE TIP 2010 (Columbia CAVE)"
)


def bundled_reference() -> Cube:
    """A 128×128×31 crop of the CAVE scene fake_and_real_peppers, scaled by 1/65535."""
    ref = resources.files("napari_cofusion").joinpath("data", "cave_peppers_crop.npz")
    with ref.open("rb") as fh, np.load(fh, allow_pickle=False) as z:
        raw, wl = z["data"], z["wavelengths"]
    return Cube(raw.astype(np.float32) / 65535.0, wavelengths=wl, norm_scale=65535.0,
                name="CAVE peppers crop", source=f"bundled crop; {CAVE_CITATION}")
