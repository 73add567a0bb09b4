"""Bundled sample data: a small real CAVE crop (simulated into a pair) and a real Houston 2018 pair."""

from __future__ import annotations

from importlib import resources

import numpy as np

from napari_cofusion.core.cube import Cube

__all__ = ["bundled_reference", "cave_pair", "houston_pair", "CAVE_CITATION", "HOUSTON_CITATION"]

CAVE_CITATION = (
    "Yasuma, Mitsunaga, Iso, Nayar, 'Generalized Assorted Pixel Camera', IEEE TIP 2010 (Columbia CAVE)"
)
HOUSTON_CITATION = "2018 IEEE GRSS Data Fusion Contest (University of Houston, NCALM)"


def _npz(name: str) -> dict[str, np.ndarray]:
    ref = resources.files("napari_cofusion").joinpath("data", name)
    with ref.open("rb") as fh, np.load(fh, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def bundled_reference() -> Cube:
    """A 128×128×31 crop of the CAVE scene fake_and_real_peppers, scaled by 1/65535."""
    z = _npz("cave_peppers_crop.npz")
    return Cube(z["data"].astype(np.float32) / 65535.0, wavelengths=z["wavelengths"], norm_scale=65535.0,
                name="CAVE peppers crop", source=f"bundled crop; {CAVE_CITATION}")


def cave_pair(protocol: str = "cave-x4") -> tuple[Cube, Cube, Cube]:
    """(LRHSI, HRMSI, reference) simulated from the bundled CAVE crop under ``protocol``."""
    from napari_cofusion.degrade.simulate import simulate_pair

    p = simulate_pair(bundled_reference(), protocol=protocol)
    return p.lr, p.msi, p.reference


def houston_pair() -> tuple[Cube, Cube]:
    """A real HS (64×64×48) + RGB (256×256×3) pair from Houston 2018; no high-resolution reference."""
    z = _npz("houston2018_crop.npz")
    full = float(z["hs_full_scale"])
    hs = Cube(z["hs"].astype(np.float32) / full, wavelengths=z["hs_wavelengths"], norm_scale=full,
              name="Houston 2018 HS (CASI)", source=f"bundled crop; {HOUSTON_CITATION}")
    rgb = Cube(z["rgb"].astype(np.float32) / 255.0, wavelengths=z["rgb_wavelengths"], norm_scale=255.0,
               name="Houston 2018 RGB", source=f"bundled crop; {HOUSTON_CITATION}")
    return hs, rgb
