"""Long work as plain generators (no Qt): fusion, fine-tuning, degradation estimation.

Each job yields typed :class:`JobUpdate` objects and *returns* its result (the generator's
``StopIteration.value``). The napari widgets run them in a ``thread_worker``; a script can drive
one directly (``result = yield from job`` or :func:`run_to_end`). Closing the generator stops the
job at its next yield and leaves any model usable.

Updates:

* :class:`Status` – a line of text for the status bar;
* :class:`Tiles` – tiled-inference progress, ``done`` of ``total`` tiles;
* :class:`Step` – one training step (:class:`~napari_cofusion.learn.train.Progress`);
* :class:`Heartbeat` – nothing new, but a chance to stop.

Errors: every :class:`~napari_cofusion.core.errors.CofusionError` passes through as it is; any
other exception is re-raised as :class:`JobError` (superqt's workers swallow a ``RuntimeError``,
the type torch raises, without emitting ``errored``).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from napari_cofusion.api import fuse
from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import Cancelled, CofusionError, CubeError
from napari_cofusion.degrade.estimate import Degradation, estimate_degradation
from napari_cofusion.fusion.pair import check_fits
from napari_cofusion.fusion.engine import FusionResult
from napari_cofusion.learn.selfsup import finetune_scene
from napari_cofusion.learn.train import Progress, TrainConfig, make_scene, train

__all__ = ["JobUpdate", "Status", "Tiles", "Step", "Heartbeat", "JobError", "fusion_job", "finetune_job",
           "estimate_job", "run_to_end", "DIHEDRAL_VARIANTS"]

#: dihedral variants (90° rotations, horizontal flip) of the reference used as fine-tuning scenes
DIHEDRAL_VARIANTS: tuple[tuple[int, bool], ...] = ((0, False), (1, False), (2, True), (3, True))


class JobUpdate:
    """Base class of what a job yields."""


@dataclass(frozen=True)
class Status(JobUpdate):
    text: str


@dataclass(frozen=True)
class Tiles(JobUpdate):
    done: int
    total: int


@dataclass(frozen=True)
class Step(JobUpdate):
    progress: Progress


@dataclass(frozen=True)
class Heartbeat(JobUpdate):
    pass


class JobError(Exception):
    """An unexpected failure inside a job (not a :class:`CofusionError`), as a plain Exception."""


def _as_job_error(exc: BaseException) -> BaseException:
    return exc if isinstance(exc, (CofusionError, JobError)) else JobError(f"{type(exc).__name__}: {exc}")


def _reraise(exc: BaseException) -> None:
    err = _as_job_error(exc)
    if err is exc:
        raise exc
    raise err from exc


def run_to_end(job: Iterator[JobUpdate]) -> Any:
    """Drive a job to its end in this thread, ignoring the updates; returns its result."""
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value


# ---------------------------------------------------------------------------- fusion
def fusion_job(lr: Cube, msi: Cube, method: str, options: dict[str, Any], cancel: threading.Event,
               poll: float = 0.1) -> Iterator[JobUpdate]:
    """Fuse a pair with :func:`~napari_cofusion.api.fuse`; yields :class:`Tiles` and
    :class:`Heartbeat` and returns the :class:`~napari_cofusion.fusion.engine.FusionResult`.

    The method runs in a helper thread so that tile progress (``progress=`` callback, used by
    cofusion) can be yielded as it arrives; between reports the job yields a heartbeat every
    ``poll`` seconds so a quit request acts promptly. Setting ``cancel`` stops tiled inference at
    the next tile (:class:`~napari_cofusion.core.errors.Cancelled`).
    """
    reports: queue.Queue = queue.Queue()
    box: dict[str, Any] = {}

    def report(done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled("cancelled")
        reports.put(Tiles(int(done), int(total)))

    def target() -> None:
        try:
            box["result"] = fuse(lr, msi, method, progress=report, **options)
        except BaseException as exc:  # noqa: BLE001 - handed to the generator, re-raised there
            box["error"] = exc
        finally:
            reports.put(None)

    yield Tiles(0, 1)
    worker = threading.Thread(target=target, name=f"napari-cofusion {method}", daemon=True)
    worker.start()
    last = Tiles(0, 1)
    while True:
        try:
            item = reports.get(timeout=poll)
        except queue.Empty:
            yield Heartbeat()  # the worker can stop here when asked to quit
            continue
        if item is None:
            break
        last = item
        yield item
    if "error" in box:
        _reraise(box["error"])
    if last.done < last.total:
        yield Tiles(1, 1)
    result: FusionResult = box["result"]
    return result


# ---------------------------------------------------------------------------- fine-tuning
def _steps(loop: Iterator[Any]) -> Iterator[JobUpdate]:
    try:
        for item in loop:
            yield Status(item) if isinstance(item, str) else Step(item)
    finally:
        loop.close()


def finetune_job(model: Any, reference: Cube | None, recipe: dict[str, Any] | None, cfg: TrainConfig,
                 variants: Sequence[tuple[int, bool]] = DIHEDRAL_VARIANTS,
                 lr: Cube | None = None, msi: Cube | None = None,
                 scene_options: dict[str, Any] | None = None, device: str = "cpu") -> Iterator[JobUpdate]:
    """Fine-tune ``model`` in place; yields :class:`Status` while the scenes are prepared, then a
    :class:`Step` per training step.

    With a ``reference``: training scenes are the dihedral ``variants`` of the reference simulated
    with ``recipe`` (``simulate_pair`` keyword arguments) and ``train`` runs on them. Without one:
    :func:`~napari_cofusion.learn.selfsup.finetune_scene` ``(model, lr, msi, cfg, **scene_options)``
    (degradations estimated from the pair, reduced-resolution training). Closing the generator
    (Cancel) closes the training loop, which leaves the model usable. ``device`` is where it
    trains; the model comes back on the CPU.
    """
    try:
        if reference is not None:
            scenes = []
            with_base = getattr(model.cfg, "base", "bicubic") == "glp-hs"
            for i, (k, flip) in enumerate(variants):
                yield Status(f"simulating training scene {i + 1}/{len(variants)}")
                sc = make_scene(reference, f"{reference.name} rot{k * 90}{' flip' if flip else ''}",
                                recipe or {}, with_base, k_rot=k, flip=flip)
                check_fits((model.cfg.hs_bands, model.cfg.ms_bands, model.cfg.scale),
                           (sc.ref.shape[0], sc.msi.shape[0], sc.scale), "the model", "the training scenes")
                scenes.append(sc)
            loop = train(model, scenes, (), cfg, device=device)
        else:
            if lr is None or msi is None:
                raise CubeError("scene-only fine-tuning needs the LRHSI and the HRMSI")
            yield Status("scene-only fine-tuning")
            loop = finetune_scene(model, lr, msi, cfg, device=device, **(scene_options or {}))
        yield from _steps(loop)
    except Exception as exc:  # GeneratorExit (close) is not an Exception and passes through
        _reraise(exc)


# ---------------------------------------------------------------------------- estimation
def estimate_job(lr: Cube, msi: Cube, psf: str | None, srf: str | None) -> Iterator[JobUpdate]:
    """Estimate the pair's degradations; returns the
    :class:`~napari_cofusion.degrade.estimate.Degradation`."""
    yield Status("estimating the PSF and the SRF from the pair")
    try:
        deg: Degradation = estimate_degradation(lr, msi, psf=psf, srf=srf)
    except Exception as exc:
        _reraise(exc)
    return deg
