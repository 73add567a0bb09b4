"""The checks every fusion, fine-tune and weights choice makes on a pair: one function each."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError, WeightsError
from napari_cofusion.degrade.simulate import Recipe, infer_scale

__all__ = ["check_pair", "check_fits", "check_recipe"]


def check_pair(lr: Cube, msi: Cube) -> int:
    """Validate an (LRHSI, HRMSI) pair and return the scale; the message names the problem."""
    if lr.bands <= msi.bands:
        raise CubeError(
            f"the LRHSI '{lr.name}' has {lr.bands} bands and the HRMSI '{msi.name}' {msi.bands}: the hyperspectral "
            "input must have more bands than the multispectral one (are the two swapped, or is the HRMSI a "
            "hyperspectral cube?)"
        )
    scale = infer_scale(lr.shape, msi.shape)
    if scale < 2:
        raise CubeError(f"LRHSI '{lr.name}' and HRMSI '{msi.name}' have the same size {lr.spatial_shape}: nothing to fuse")
    return scale


def check_fits(expects: "tuple[Any, Any, Any]", has: "tuple[int, int, int]", what: str, given: str = "the input",
               hint: str = "") -> None:
    """Raise :class:`WeightsError` unless ``expects`` == ``has`` (HS bands, MS bands, scale).

    ``what`` names the weights or model as a singular subject ("the weights file 'cofusion_cave_x4'",
    "the model fine-tuned in this session"), ``given`` the data ("the input", "this scene", "the
    training scenes"); ``hint`` is appended (what to do instead). The one "expects N HS bands" check.
    """
    exp = tuple(None if v is None else int(v) for v in expects)
    got = tuple(int(v) for v in has)
    if exp != got:
        raise WeightsError(
            f"{what} expects {exp[0]} HS bands, {exp[1]} MS bands at ×{exp[2]}; {given} has {got[0]} HS bands, "
            f"{got[1]} MS bands at ×{got[2]}" + (f" ({hint})" if hint else "")
        )


def check_recipe(recipe: Any, lr: Cube, msi: Cube, scale: int) -> dict[str, Any]:
    """The simulation recipe carried by the LRHSI (``recipe.json`` or a layer's metadata), checked
    against the pair it is meant for; ``{}`` when there is none. A recipe of another pair (another
    scale, phase or band count) is refused instead of being trusted."""
    if recipe is None or recipe == {}:
        return {}
    src = "the pair's recipe"
    if not isinstance(recipe, dict):
        raise CubeError(f"{src} must be a JSON object, got {type(recipe).__name__}")
    try:
        r = Recipe.from_json(recipe)
    except CubeError as exc:
        raise CubeError(f"{src}: {exc}") from None
    if r.scale != scale:
        raise CubeError(f"{src} is for ×{r.scale} but LRHSI '{lr.name}' and HRMSI '{msi.name}' are ×{scale}: "
                        "it belongs to another pair (remove it, or give the right one)")
    if r.srf_matrix is not None:
        shape = tuple(np.asarray(r.srf_matrix, dtype=np.float64).shape)
        if shape != (msi.bands, lr.bands):
            raise CubeError(f"{src} has an SRF of {shape[0]}×{shape[1] if len(shape) > 1 else '?'} but the pair has "
                            f"{msi.bands} MS and {lr.bands} HS bands: it belongs to another pair")
    if r.crop is not None and list(r.crop) != list(msi.spatial_shape):
        raise CubeError(f"{src} was made for {r.crop[0]}×{r.crop[1]} pixels but the HRMSI '{msi.name}' is "
                        f"{msi.spatial_shape[0]}×{msi.spatial_shape[1]}: it belongs to another pair")
    return recipe
