"""The public Python API: one import that has every fusion method registered.

``fuse``, ``check_pair`` and the registry look-ups live in :mod:`napari_cofusion.fusion`; this
module imports the modules that register methods (the classical ones and the learned CoFusion)
explicitly, so a broken method module fails here, loudly. The CLI, the napari layer, the jobs
and scripts import from here::

    from napari_cofusion.api import fuse, read_cube
    result = fuse(read_cube("lr.hdr"), read_cube("msi.tif"), "cofusion")
"""

from __future__ import annotations

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CofusionError, CubeError, WeightsError
from napari_cofusion.core.io import read_cube, read_cubes, write_cube
from napari_cofusion.degrade.simulate import simulate_pair
from napari_cofusion.fusion import classical  # noqa: F401  (registers bicubic and glp-hs)
from napari_cofusion.fusion.engine import FusionResult, fuse
from napari_cofusion.fusion.pair import check_fits, check_pair
from napari_cofusion.fusion.registry import get_method, iter_methods, method_names
from napari_cofusion.fusion import scene_prior  # noqa: F401  (registers pnp-gf)
from napari_cofusion.fusion import scaleout
from napari_cofusion.fusion.scaleout import find_pairs, fuse_dask
from napari_cofusion.learn import method as _learned  # noqa: F401  (registers cofusion, csakd, hyfusion, s3rnet)
from napari_cofusion.learn import mossfuse_fit as _mossfuse  # noqa: F401  (registers mossfuse)
from napari_cofusion.learn import zsl_pnp as _zsl_pnp  # noqa: F401  (registers pnp-zsl)

__all__ = ["Cube", "CofusionError", "CubeError", "WeightsError", "read_cube", "read_cubes", "write_cube",
           "simulate_pair", "fuse", "FusionResult", "check_pair", "check_fits", "get_method", "iter_methods",
           "method_names", "fuse_dask", "fuse_many", "find_pairs"]


def _fuse_with_every_method(*args, **kwargs) -> FusionResult:
    """:func:`fuse`, from this module: a worker process that unpickles it imports this module,
    which registers every method."""
    return fuse(*args, **kwargs)


def fuse_many(jobs, out_dir, method: str = "glp-hs", **kwargs) -> list[dict]:
    """:func:`napari_cofusion.fusion.scaleout.fuse_many` whose workers have every method
    registered (its arguments and rows are documented there)."""
    return scaleout.fuse_many(jobs, out_dir, method, fuser=_fuse_with_every_method, **kwargs)
