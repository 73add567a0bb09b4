"""The ``fuse`` command: one pair, or many (``--pairs``), in this process or on dask."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from napari_cofusion.cli.common import _check_out, _print_json
from napari_cofusion.core.errors import CubeError


def _cmd_fuse_many(a: argparse.Namespace, opts: dict[str, Any]) -> int:
    """``fuse --pairs``: every pair of a folder or list, one dask task each."""
    from napari_cofusion.api import find_pairs, fuse_many

    if a.lr or a.msi or a.recipe:
        raise CubeError("--pairs fuses the pairs it finds: leave out --lr, --msi and --recipe")
    jobs = find_pairs(a.pairs)
    out = Path(a.out)
    if not out.is_dir():
        raise CubeError(f"{out}: with --pairs, --out is an existing folder")
    if not a.json:
        print(f"[fuse] {len(jobs)} pairs, {a.method}, {a.workers or 1} worker(s)"
              + (f" on {a.scheduler}" if a.scheduler else ""), flush=True)

    def show(row: dict[str, Any]) -> None:
        if a.json:
            return
        if row["error"]:
            print(f"[fuse] {row['name']}: error: {row['error']}", flush=True)
        else:
            print(f"[fuse] {row['name']}: {row['seconds']:.2f} s -> {row['out']}", flush=True)

    import time

    t0 = time.perf_counter()
    rows = fuse_many(jobs, out, a.method, fmt=a.format, scheduler=a.scheduler, workers=a.workers,
                     overwrite=a.overwrite, progress=show, psf=a.psf, phase=a.phase, consistency=a.consistency, tile=a.tile, **opts)
    wall = time.perf_counter() - t0
    failed = [r for r in rows if r["error"]]
    if a.json:
        _print_json({"method": a.method, "pairs": rows, "seconds": wall, "failed": len(failed)})
    else:
        print(f"[fuse] {len(rows) - len(failed)} of {len(rows)} pairs fused in {wall:.1f} s "
              f"({len(rows) / wall * 60:.1f} pairs a minute)", flush=True)
    if failed:
        raise CubeError(f"{len(failed)} of {len(rows)} pairs failed: " + "; ".join(f"{r['name']}: {r['error']}"
                                                                              for r in failed))
    return 0


def _cmd_fuse(a: argparse.Namespace) -> int:
    from napari_cofusion.api import fuse, write_cube
    from napari_cofusion.core.io.zarr import is_zarr_path
    from napari_cofusion.degrade.consistency import describe_consistency
    from napari_cofusion.degrade.simulate import read_pair

    opts = {k: v for k, v in (("weights", a.weights), ("device", a.device)) if v}
    if a.pairs:
        return _cmd_fuse_many(a, opts)
    if not (a.lr and a.msi):
        raise CubeError("give --lr and --msi (one pair), or --pairs (many)")
    out = _check_out(a.out, a.overwrite)
    zarr_out = is_zarr_path(out)
    lr, msi = read_pair(a.lr, a.msi, a.recipe)
    # ENVI and zarr are written block by block as the blocks are fused (memory follows the
    # block); other formats are written whole at the end
    streamed = out.suffix.lower() in (".hdr", ".img") or zarr_out
    common = dict(psf=a.psf, phase=a.phase, consistency=a.consistency, tile=a.tile,
                  **({"out": out, "overwrite": a.overwrite} if streamed else {}), **opts)
    if a.scheduler or a.workers or zarr_out:  # the blocks as dask tasks
        from napari_cofusion.api import fuse_dask

        res = fuse_dask(lr, msi, a.method, scheduler=a.scheduler, workers=a.workers, **common)
    else:
        res = fuse(lr, msi, a.method, **common)
    if not streamed:
        res.cube.name = out.stem
        write_cube(res.cube, out, overwrite=a.overwrite)
    weights, estimate = res.meta.get("weights"), res.meta.get("estimate")
    if a.json:
        _print_json({"method": a.method, "scale": res.scale, "seconds": res.seconds, "out": str(out),
                     "weights": weights, "consistency": res.consistency, "estimate": estimate,
                     "options": _shown_options(res.meta)})
        return 0
    if estimate:  # --psf auto
        print(f"estimated from the pair: PSF {estimate['psf'].get('kind')} sigma {estimate['sigma']:.3f} px, "
              f"phase {estimate['phase']}, SRF fit residual {estimate['fit_residual']:.2g}")
        for doubt in estimate["doubts"]:
            print(f"warning: {doubt}")
    print(f"fused with {a.method} (x{res.scale}) in {res.seconds:.2f} s -> {out}")
    shown = _shown_options(res.meta)
    if shown:
        print("chosen from the pair: " + ", ".join(_shown(k, v) for k, v in shown.items()))
    if weights:
        print(f"weights: {weights}")
    if res.consistency:
        print(f"data consistency: {describe_consistency(res.consistency)}")
    return 0


def _shown_options(meta: dict) -> dict:
    """The scene-wide choices a method made (glp-hs's regression, pnp-gf's fit and fallback),
    without the bulky ones (the SRF matrix, the selection tables, the per-band radius and shrink:
    ``bands`` counts the bands whose mean each candidate is in)."""
    return {k: v for k, v in (meta.get("options") or {}).items()
            if k not in ("srf", "selection", "cross", "allowed", "scene_fit") and not isinstance(v, list)}


def _shown(key: str, value) -> str:
    if key == "bands":  # glp-hs's regression, band by band: in how many bands' means each candidate is
        ranked = sorted(value.items(), key=lambda kv: -kv[1])
        return "regression (each band the mean of its best candidates) " + ", ".join(
            f"{name} in {n} band{'s' if n > 1 else ''}" for name, n in ranked)
    if key == "network" and isinstance(value, dict):  # pnp-zsl's residual network: used or not, and why
        return f"network {'used' if value.get('used') else 'not used'} ({value.get('reason', '')})"
    return f"{key} {value:.2g}" if isinstance(value, float) else f"{key} {value}"


class _ListMethods(argparse.Action):
    """``fuse --list-methods``: print the registered methods and exit (like ``--help``)."""
    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ARG002
        from napari_cofusion.api import iter_methods

        for m in iter_methods():
            print(f"{m.name:<10} {m.description}" + (" [--weights]" if m.needs_weights else ""))
        parser.exit(0)
