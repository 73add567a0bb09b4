"""Scale-out on dask: one scene larger than memory in blocks on many workers, and many pairs.

Both run the engine's own code (:func:`~napari_cofusion.fusion.engine.plan_fusion` and
:meth:`~napari_cofusion.fusion.engine.FusionPlan.block`), so a block fused here equals the same
block fused by :func:`~napari_cofusion.fusion.engine.fuse` in one process.

* :func:`fuse_dask`: the scene-wide choices are made once (the method's ``prepare``, the PSF,
  the consistency step's SRF); every block of the plan (:mod:`napari_cofusion.fusion.blocks`: an
  interior plus the margin the method's reach needs) becomes a dask task, the results form a
  ``dask.array`` with one chunk per block, and ``dask.array.store`` writes each chunk to the
  output (a zarr store or an ENVI file) as soon as its block is done, so memory follows the
  blocks in flight, not the scene.
* :func:`fuse_many`: one task per pair (read, fuse, write), for a folder or a list of pairs.

Schedulers (``scheduler``): None or ``"threads"``, dask's local threaded scheduler (the default;
``workers`` threads); ``"synchronous"``, one block after the other in this thread; ``"processes"``
(pairs only), dask's local process pool; anything else is the address of a
``dask.distributed`` scheduler (``tcp://HOST:PORT``), whose workers must see the same files.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.fusion.blocks import Block
from napari_cofusion.fusion.engine import FusionPlan, FusionResult, _sink, finish, plan_fusion
from napari_cofusion.fusion.engine import fuse as engine_fuse

__all__ = ["LOCAL_SCHEDULERS", "fuse_dask", "fuse_many", "find_pairs", "PairJob", "connect"]

LOCAL_SCHEDULERS = ("threads", "synchronous", "processes")


def connect(scheduler: str | None, local: Sequence[str] = LOCAL_SCHEDULERS):
    """The ``dask.distributed`` client for a scheduler address, None for one of the ``local``
    schedulers; any other name is refused with the choices."""
    if scheduler is None or scheduler in local:
        return None
    if ":" not in str(scheduler):
        raise CubeError(f"scheduler {scheduler!r}: use {', '.join(local)}, or a dask.distributed address "
                        "such as tcp://HOST:8786")
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - a dependency of the package
        raise CubeError("a scheduler address needs dask.distributed (pip install distributed)") from None
    try:
        return Client(scheduler, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise CubeError(f"cannot reach the dask scheduler at {scheduler!r} ({exc})") from None


def _block_task(plan: FusionPlan, b: Block, lr: np.ndarray, msi: np.ndarray, amp: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """One block: cut its extended area from the inputs and fuse it (the engine's step)."""
    ly, lx = b.lr_slices(plan.scale)
    hy, hx = b.hr_slices()
    return plan.block(b, np.ascontiguousarray(lr[:, ly, lx]), np.ascontiguousarray(msi[:, hy, hx]),
                      None if amp is None else amp[hy, hx])


def _grid(blocks: list[Block]) -> list[list[int]]:
    """The block indices as rows × columns (plan_blocks lists them row by row)."""
    rows: dict[int, list[int]] = {}
    for i, b in enumerate(blocks):
        rows.setdefault(b.y0, []).append(i)
    return [rows[y] for y in sorted(rows)]


def fuse_dask(lr: Cube, msi: Cube, method: str = "glp-hs", *, out: "str | os.PathLike | None" = None,
              overwrite: bool = False, scheduler: str | None = None, workers: int | None = None,
              tile: int | None = None, chunk: int | None = None, progress: Callable[[int, int], Any] | None = None,
              **kwargs: Any) -> FusionResult:
    """:func:`~napari_cofusion.fusion.engine.fuse` with the blocks as dask tasks (module docstring).

    ``out``: a ``.zarr`` store or an ENVI ``.hdr`` written as blocks complete (None: the cube in
    memory). ``tile``: the block side (default: from the memory budget, as ``fuse``). The other
    keyword arguments are ``fuse``'s (``psf``, ``phase``, ``consistency``, ``overlap``, the
    method's options). ``progress(done, total)`` after each block (local schedulers).
    """
    import dask
    import dask.array as da

    t0 = time.perf_counter()
    client = connect(scheduler, LOCAL_SCHEDULERS[:2])  # first: a bad address costs no planning, leaves no file
    sink = None
    try:
        plan = plan_fusion(lr, msi, method, tile=tile, **kwargs)
        blocks = plan.blocks
        sink = _sink(out, lr.bands, msi.spatial_shape, overwrite, chunk=chunk or max(b.y1 - b.y0 for b in blocks))
        shipped = replace(plan, amp=None)  # the edge map travels once, as its own input
        if client is not None:
            lr_d, msi_d, plan_d = client.scatter([lr.data, msi.data, shipped], broadcast=False)
            amp_d = client.scatter(plan.amp) if plan.amp is not None else None
        else:
            lr_d, msi_d, plan_d, amp_d = lr.data, msi.data, shipped, plan.amp
        task = dask.delayed(_block_task, nout=2, pure=True)
        run_id = uuid.uuid4().hex[:12]  # keys unique to this run (a shared cluster may hold another's)
        results = [task(plan_d, b, lr_d, msi_d, amp_d, dask_key_name=f"fuse-block-{run_id}-{i}")
                   for i, b in enumerate(blocks)]
        C = lr.bands
        chunks = [[da.from_delayed(results[i][0], shape=(C, blocks[i].y1 - blocks[i].y0, blocks[i].x1 - blocks[i].x0),
                                   dtype=np.float32) for i in row] for row in _grid(blocks)]
        cube = da.block(chunks)
        terms = [r[1] for r in results]
        target = None if out is None else sink.target()
        if client is not None:
            if target is None:
                data, tlist = client.compute([cube, terms], sync=True)
                sink.data[...] = data
            else:
                stored = da.store(cube, target, lock=False, compute=False)
                _, tlist = client.compute([stored, terms], sync=True)
            if progress is not None:
                progress(len(blocks), len(blocks))
        else:
            stored = da.store(cube, sink.data if target is None else target, lock=False, compute=False)
            with _counting(progress, len(blocks)):
                _, tlist = dask.compute(stored, terms, scheduler=scheduler or "threads",
                                        num_workers=workers or os.cpu_count() or 1)
    except BaseException:
        if hasattr(sink, "abort"):
            sink.abort()
        raise
    finally:
        if client is not None:
            client.close()
    rep = plan.consistency(np.sum(np.asarray(tlist, dtype=np.float64), axis=0) if len(tlist) else np.zeros((2, 4)))
    return finish(plan, lr, msi, sink, time.perf_counter() - t0, rep, out)


class _counting:
    """A dask callback that calls ``progress(done, total)`` after each block task (local schedulers)."""

    def __init__(self, progress: Callable[[int, int], Any] | None, total: int) -> None:
        self.progress, self.total, self.done, self.cb = progress, total, 0, None

    def __enter__(self):
        if self.progress is None:
            return self
        from dask.callbacks import Callback

        def post(key, result, dsk, state, worker_id):  # noqa: ARG001
            name = key[0] if isinstance(key, tuple) else key
            if isinstance(name, str) and name.startswith("fuse-block-"):
                self.done += 1
                self.progress(self.done, self.total)

        self.cb = Callback(posttask=post)
        self.cb.__enter__()
        return self

    def __exit__(self, *exc):
        if self.cb is not None:
            self.cb.__exit__(*exc)
        return False


# ---------------------------------------------------------------------------- many pairs
@dataclass(frozen=True)
class PairJob:
    """One pair to fuse: its two files (and the recipe beside the LRHSI, if any) and a name."""

    name: str
    lr: str
    msi: str


_PAIR_EXTS = (".hdr", ".tif", ".tiff", ".npy", ".npz", ".mat")


def _one(folder: Path, stem: str) -> Path | None:
    hits = sorted(p for p in folder.iterdir() if p.stem == stem and p.suffix.lower() in _PAIR_EXTS)
    if len(hits) > 1:
        raise CubeError(f"{folder}: several files named {stem}.* ({', '.join(p.name for p in hits)}); keep one")
    return hits[0] if hits else None


def find_pairs(spec: str | os.PathLike) -> list[PairJob]:
    """The pairs of a folder or a list file.

    * a folder of pair folders, each holding ``lr.*`` and ``msi.*`` (what ``simulate`` writes,
      with its ``recipe.json``); or a folder that is itself one such pair;
    * a text file, one pair per line: ``LRHSI HRMSI [NAME]`` (spaces or commas; paths relative to
      the list's folder; ``#`` starts a comment).
    """
    p = Path(spec)
    if p.is_file():
        jobs = []
        for n, line in enumerate(p.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = [x for x in line.replace(",", " ").split() if x]
            if len(parts) not in (2, 3):
                raise CubeError(f"{p}, line {n}: expected 'LRHSI HRMSI [NAME]', got {line!r}")
            lr_p, ms_p = ((p.parent / x) if not Path(x).is_absolute() else Path(x) for x in parts[:2])
            for q in (lr_p, ms_p):
                if not q.exists():
                    raise CubeError(f"{p}, line {n}: {q} does not exist")
            name = parts[2] if len(parts) == 3 else f"{lr_p.parent.name}-{lr_p.stem}"
            jobs.append(PairJob(name, str(lr_p), str(ms_p)))
    elif p.is_dir():
        folders = [p] if _one(p, "lr") else sorted(q for q in p.iterdir() if q.is_dir())
        jobs = []
        for f in folders:
            lr_p, ms_p = _one(f, "lr"), _one(f, "msi")
            if lr_p is not None and ms_p is not None:
                jobs.append(PairJob(f.name, str(lr_p), str(ms_p)))
    else:
        raise CubeError(f"{p}: no such folder or pair list")
    if not jobs:
        raise CubeError(f"{p}: no pairs found (a folder of pair folders with lr.* and msi.*, or a list file)")
    names = [j.name for j in jobs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CubeError(f"{p}: several pairs are named {', '.join(dup)}; name them in the list (third column)")
    return jobs


def _fuse_pair_task(fuser: Callable[..., FusionResult], job: PairJob, out: str, method: str, kwargs: dict[str, Any],
                    threads: int | None, overwrite: bool) -> dict[str, Any]:
    """Read, fuse and write one pair (runs in a worker); returns what happened, errors included."""
    import torch

    from napari_cofusion.core.errors import CofusionError
    from napari_cofusion.core.io import write_cube
    from napari_cofusion.degrade.simulate import read_pair

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        lr, msi = read_pair(job.lr, job.msi, None)
        streamed = Path(out).suffix.lower() in (".hdr", ".img") or out.lower().endswith(".zarr")
        res = fuser(lr, msi, method, **({"out": out, "overwrite": overwrite} if streamed else {}), **kwargs)
        if not streamed:
            res.cube.name = Path(out).stem
            write_cube(res.cube, out, overwrite=overwrite)
        return {"name": job.name, "out": out, "seconds": time.perf_counter() - t0, "error": None,
                "weights": res.meta.get("weights")}
    except CofusionError as exc:
        return {"name": job.name, "out": out, "seconds": time.perf_counter() - t0, "error": str(exc)}


def fuse_many(jobs: Sequence[PairJob], out_dir: str | os.PathLike, method: str = "glp-hs", *,
              fuser: Callable[..., FusionResult] = engine_fuse, fmt: str = ".hdr", scheduler: str | None = None,
              workers: int | None = None, threads: int | None = None, overwrite: bool = False,
              progress: Callable[[dict[str, Any]], Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """Fuse every pair into ``out_dir/NAME{fmt}``, one dask task per pair (``workers`` at a time on
    the local schedulers; default ``processes`` with one torch thread per core and worker).
    ``fuser`` is the function a worker fuses with: pass :func:`napari_cofusion.api.fuse` (what
    ``api.fuse_many`` does), whose module registers every method in a fresh worker process.
    A pair that fails (bad input) is reported in its row and the others go on. Outputs that exist
    are refused before any work unless ``overwrite``. Returns one row per pair, in order."""
    import dask

    from napari_cofusion.core.io import check_output

    folder = Path(out_dir)
    if not folder.is_dir():
        raise CubeError(f"{folder}: output folder does not exist")
    if fmt not in (".hdr", ".tif", ".npy", ".zarr"):
        raise CubeError(f"output format {fmt!r}: use .hdr, .tif, .npy or .zarr")
    outs = [str(folder / f"{j.name}{fmt}") for j in jobs]
    for o in outs:
        check_output(o, overwrite)
    workers = max(1, int(workers or 1))
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    client = connect(scheduler)
    task = dask.delayed(_fuse_pair_task, pure=False)
    tasks = [task(fuser, j, o, method, dict(kwargs), threads, overwrite) for j, o in zip(jobs, outs)]
    try:
        if client is not None:
            from distributed import as_completed

            futures = client.compute(tasks)
            rows = {}
            with client.as_current():  # the client is not the process default (set_as_default=False)
                for fut in as_completed(futures):
                    row = fut.result()
                    rows[row["name"]] = row
                    if progress is not None:
                        progress(row)
            return [rows[j.name] for j in jobs]
        sched = scheduler or ("processes" if workers > 1 else "synchronous")
        if sched == "synchronous":
            rows_list = []
            for t in tasks:
                row = t.compute(scheduler="synchronous")
                rows_list.append(row)
                if progress is not None:
                    progress(row)
            return rows_list
        rows_list = list(dask.compute(*tasks, scheduler=sched, num_workers=workers))
        if progress is not None:
            for row in rows_list:
                progress(row)
        return rows_list
    finally:
        if client is not None:
            client.close()
