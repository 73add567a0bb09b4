"""The fusion-method registry: a name → :class:`FusionMethod` table that imports no method.

Methods add themselves with :func:`register` when their module is imported: the classical ones
in :mod:`napari_cofusion.fusion.classical`, the learned ones in
:mod:`napari_cofusion.learn.method`. :mod:`napari_cofusion.api` imports every such module
explicitly, so a broken method module fails loudly at import instead of vanishing from the list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from napari_cofusion.core.errors import CubeError

__all__ = ["FusionMethod", "register", "get_method", "method_names", "iter_methods"]


@dataclass
class FusionMethod:
    """One way of turning (LRHSI, HRMSI) into an HR hyperspectral cube.

    ``run(lr, msi, scale, kernel, phase, **options) -> (C, H, W) array`` does the work on
    band-first float32 arrays.
    """

    name: str
    description: str
    run: Callable[..., Any]
    needs_weights: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    #: ``defaults(lr, msi, scale, options) -> {"psf": ..., "phase": ...}``: the degradations to
    #: assume when neither the call nor the LRHSI's recipe gives them (e.g. the weights card's)
    defaults: Callable[..., dict[str, Any]] | None = None
    #: the data-consistency step (``napari_cofusion.degrade.consistency``) used when ``fuse`` is
    #: not told: "off" for the classical baselines (kept as defined), "auto" for learned models
    consistency: str = "off"
    #: ``provenance(lr, msi, scale, options) -> dict`` recorded in the result's metadata (for
    #: learned methods: which weights file was used)
    provenance: Callable[..., dict[str, Any]] | None = None
    #: ``reach(scale, kernel) -> HR pixels``: how far from a pixel the method looks (the margin
    #: block-wise fusion gives each block, :mod:`napari_cofusion.fusion.blocks`)
    reach: Callable[[int, Any], int] | None = None
    #: ``bytes_per_pixel(hs_bands, ms_bands) -> bytes`` of working memory per HR pixel of a block
    bytes_per_pixel: Callable[[int, int], float] | None = None
    #: ``prepare(lr, msi, scale, kernel, phase, options) -> options``: run once on the whole pair
    #: before any block, to make the scene-wide choices (glp-hs's regression) that every block
    #: must share; what it returns is passed to ``run`` and recorded in the result's metadata
    prepare: Callable[..., dict[str, Any]] | None = None
    #: ``choose_weights(lr, msi, scale, kernel, phase) -> name``: for learned methods called
    #: without ``weights=``/``model=``, the shipped weights for the pair's bands, scale and PSF
    #: (``fuse`` passes the name on as ``weights=``, so the run, its record and its checks agree)
    choose_weights: Callable[..., str] | None = None
    #: ``align(scale, options) -> HR pixels``: what block origins and sides must be multiples of
    #: (default lcm(scale, 8)); a network whose layers see a fixed grid (attention windows, stride-2
    #: pooling on the LR grid) asks for that grid, so that its blocks see the whole frame's;
    #: ``options`` are the run's (the chosen ``weights`` or ``model``, whose configuration sets it)
    align: Callable[[int, dict[str, Any]], int] | None = None


_REGISTRY: dict[str, FusionMethod] = {}


def register(method: FusionMethod) -> FusionMethod:
    """Add (or replace) a method under its name; returns it."""
    _REGISTRY[method.name] = method
    return method


def method_names() -> list[str]:
    """The registered methods' names, in registration order."""
    return list(_REGISTRY)


def get_method(name: str) -> FusionMethod:
    """The method called ``name``; :class:`CubeError` naming the choices otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CubeError(f"unknown fusion method {name!r}: choose one of {', '.join(_REGISTRY)}") from None


def iter_methods() -> Iterator[FusionMethod]:
    yield from _REGISTRY.values()
