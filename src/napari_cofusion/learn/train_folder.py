"""Train CoFusion on a folder of reference scenes: the work of the ``train`` command.

Each sub-folder of the data folder is one reference scene (CAVE layout, anything
:func:`~napari_cofusion.core.io.read_cube` reads). The validation scenes (default
:data:`CAVE_VALIDATION`) are kept out of training. Every training reference is simulated under
a named protocol in its 8 dihedral variants (the reference is turned *before* simulation, which
keeps the decimation phase: :func:`~napari_cofusion.learn.train.make_scene`), in worker
processes when asked. The glp-hs baseline is measured on the validation scenes, with and without
the data-consistency step, for the weights card. Qt-free; the CLI drives it::

    train_paths, val_paths = split_scenes(root)
    run = prepare(root, train_paths, val_paths, "cave-x4", training_config(steps=2000))
    last = None
    for last in run.loop():      # learn.train.train: closing the generator stops it
        ...
    run.save("weights/NAME", last, threads=8, device="cpu")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError, TrainingError
from napari_cofusion.core.io import read_cube
from napari_cofusion.core.metrics import full_reference
from napari_cofusion.degrade.simulate import protocol_recipe, simulate_pair
from napari_cofusion.fusion import classical as _classical  # noqa: F401  (registers glp-hs, the baseline)
from napari_cofusion.fusion.engine import fuse
from napari_cofusion.learn.models import ARCHITECTURES, SUPERVISED, CoFusion
from napari_cofusion.learn.train import Progress, Scene, TrainConfig, make_scene, train, validate
from napari_cofusion.learn.weights import make_card, save_weights

__all__ = ["CAVE_VALIDATION", "DIHEDRAL", "FolderTraining", "split_scenes", "training_config", "read_reference",
           "build_scenes", "simulate_scenes", "prepare"]

#: the CAVE scenes held out for validation unless others are named
CAVE_VALIDATION = ("oil_painting", "paints")
#: the 8 dihedral variants (k quarter turns, flip) each training reference is simulated in
DIHEDRAL: tuple[tuple[int, bool], ...] = tuple((k, f) for f in (False, True) for k in range(4))


def _scene_name(path: Path) -> str:
    return path.name.removesuffix("_ms")  # CAVE's folders are NAME_ms


def split_scenes(root: str | os.PathLike, val: Sequence[str] | None = None,
                 only: Sequence[str] | None = None) -> tuple[list[Path], list[Path]]:
    """The (training, validation) scene folders under ``root``: the ones named in ``val``
    (default :data:`CAVE_VALIDATION`; names with or without CAVE's ``_ms``) validate, the others
    train, restricted to ``only`` when given."""
    data = Path(root)
    if not data.is_dir():
        raise CubeError(f"{data}: training data folder not found")
    folders = sorted(p for p in data.iterdir() if p.is_dir())
    val_names = {n.removesuffix("_ms") for n in (val or CAVE_VALIDATION)}
    tr = [p for p in folders if _scene_name(p) not in val_names]
    va = [p for p in folders if _scene_name(p) in val_names]
    if only:
        keep = {n.removesuffix("_ms") for n in only}
        tr = [p for p in tr if _scene_name(p) in keep]
    if not tr:
        raise TrainingError(f"{data}: no training scenes")
    return tr, va


def training_config(**options: Any) -> TrainConfig:
    """A :class:`~napari_cofusion.learn.train.TrainConfig` for folder training: ``options`` are its
    fields (``steps``, ``batch``, ``patch``, ``lr``, ``warmup``, ...); the warm-up is at most a
    tenth of the steps (quick runs)."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TrainingError(f"unknown training option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    cfg = TrainConfig(**options)
    cfg.warmup = min(cfg.warmup, max(cfg.steps // 10, 1))
    return cfg


def read_reference(path: str | os.PathLike, crop: int | None = None) -> Cube:
    """A training/validation reference, cropped to ``crop``² when asked (quick runs)."""
    ref = read_cube(path)
    return ref.with_data(np.ascontiguousarray(ref.data[:, :crop, :crop])) if crop else ref


def _build_one_scene(job: tuple) -> Scene:
    """Worker of :func:`build_scenes`: read a reference, simulate one dihedral variant."""
    path, crop, recipe, with_base, k, f = job
    return make_scene(read_reference(path, crop), Path(path).name, recipe, with_base, k, f)


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent (which stops them), instead of each printing a traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_scenes(jobs: Sequence[tuple], workers: int | None = 1) -> list[Scene]:
    """Simulate scenes, each job ``(path, crop, recipe, with_base, k_rot, flip)``; in ``workers``
    processes when more than one (results in the jobs' order)."""
    workers = min(workers or 1, len(jobs))
    if workers <= 1:
        return [_build_one_scene(j) for j in jobs]
    import multiprocessing as mp

    # a Pool, not a ProcessPoolExecutor: leaving the block on Ctrl-C terminates the workers at once
    with mp.get_context("spawn").Pool(workers, initializer=_ignore_sigint) as pool:
        return pool.map(_build_one_scene, jobs, chunksize=1)


def _mean(rows: list[dict[str, float]]) -> dict[str, float] | None:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else None


@dataclass
class FolderTraining:
    """A prepared training run: the model, its configuration, the simulated scenes and the glp-hs
    baseline on the validation scenes (:func:`prepare` makes it)."""

    root: Path
    protocol: str
    train_paths: list[Path]
    val_paths: list[Path]
    augment: bool
    config: TrainConfig
    model: CoFusion
    train_scenes: list[Scene]
    val_scenes: list[Scene]
    hs_wavelengths: Any = None
    baseline: list[dict[str, float]] = field(default_factory=list)  # glp-hs per validation scene
    baseline_consistency: list[dict[str, float]] = field(default_factory=list)  # glp-hs + consistency step
    #: the step loss, ``loss_fn(out, ref, teacher)`` (None: L1 + 0.1·(1 − SSIM)); the distillation's joint loss
    loss_fn: Any = None
    #: further card fields (the distillation's teacher and losses), and how the training scenes were augmented
    card_fields: dict[str, Any] = field(default_factory=dict)
    augmentation: str | None = None

    def loop(self, ckpt_dir: str | os.PathLike | None = None, resume: bool = False,
             device: Any = "cpu") -> Iterator[Progress]:
        """The training generator (:func:`~napari_cofusion.learn.train.train`): a
        :class:`~napari_cofusion.learn.train.Progress` per step; closing it stops the run and
        keeps the best validated state in the model."""
        return train(self.model, self.train_scenes, self.val_scenes, self.config, ckpt_dir=ckpt_dir, resume=resume,
                     device=device, loss_fn=self.loss_fn)

    def card(self, last: Progress | None, threads: int, device: str) -> dict[str, Any]:
        """The weights card after the run that ended at ``last`` (None: no step done): the
        training data and settings, the best validation metrics, the network's with ``fuse``'s
        default data-consistency step (measured here), and the glp-hs baseline's."""
        proto = protocol_recipe(self.protocol)
        val_dc = validate(self.model, self.val_scenes, consistency="auto") if self.val_scenes and last else None
        augmentation = self.augmentation or ("8 dihedral variants of each reference" if self.augment else "none")
        return make_card(
            self.model, hs_wavelengths=self.hs_wavelengths, srf=proto["srf"], psf=proto["psf"], protocol=self.protocol,
            training_data={"root": str(self.root), "train_scenes": [p.name for p in self.train_paths],
                           "val_scenes": [p.name for p in self.val_paths], "augmentation": augmentation},
            training={**self.config.__dict__, "steps_done": last.step if last else 0,
                      "seconds": round(last.elapsed, 1) if last else 0.0, "threads": threads, "device": device},
            validation=last.best_val if last else None,
            validation_glp_hs=_mean(self.baseline),
            validation_consistency=val_dc,
            validation_glp_hs_consistency=_mean(self.baseline_consistency),
            **self.card_fields,
        )

    def save(self, out: str | os.PathLike, last: Progress | None, threads: int, device: str,
             overwrite: bool = False) -> tuple[tuple[str, str], dict[str, Any]]:
        """Write ``out``.safetensors and its card; returns (the two paths, the card)."""
        card = self.card(last, threads, device)
        return save_weights(self.model, out, card, overwrite=overwrite), card


def simulate_scenes(train_paths: Sequence[Path], val_paths: Sequence[Path], protocol: str, *,
                    crop: int | None = None, variants: Sequence[tuple[int, bool]] = DIHEDRAL, workers: int | None = 1,
                    with_base: bool = True) -> tuple[list[Scene], list[Scene], list[dict], list[dict]]:
    """The training scenes (each reference in ``variants``), the validation scenes, and glp-hs's
    metrics on the validation scenes without and with the data-consistency step."""
    recipe = {"protocol": protocol}
    scale = protocol_recipe(protocol)["scale"]
    jobs = [(str(p), crop, recipe, with_base, k, f) for p in train_paths for k, f in variants]
    jobs += [(str(p), crop, recipe, with_base, 0, False) for p in val_paths]
    built = build_scenes(jobs, workers)
    n_val = len(val_paths)
    baseline, baseline_dc = [], []
    for p in val_paths:
        pair = simulate_pair(read_reference(p, crop), **recipe)
        for rows, mode in ((baseline, "off"), (baseline_dc, "auto")):
            z = fuse(pair.lr, pair.msi, "glp-hs", consistency=mode).cube.data
            rows.append(full_reference(z, pair.reference.data, scale))
    return built[: len(built) - n_val], built[len(built) - n_val:], baseline, baseline_dc


def prepare(root: str | os.PathLike, train_paths: Sequence[Path], val_paths: Sequence[Path], protocol: str,
            config: TrainConfig, *, crop: int | None = None, augment: bool = True, workers: int | None = 1,
            base: str = "glp-hs", depths: Sequence[int] | None = None,
            init: "str | os.PathLike | None" = None, architecture: str = "cofusion",
            options: dict[str, Any] | None = None) -> FolderTraining:
    """Simulate the scenes (the 8 dihedral variants of each training reference with ``augment``)
    in ``workers`` processes, measure glp-hs on the validation scenes, and build a new network of
    ``architecture`` (one of :data:`~napari_cofusion.learn.models.SUPERVISED`) with the global
    residual ``base``, CoFusion's ``depths`` (blocks per level) and further config ``options``, or
    (``init``) a CoFusion that starts from CoFusion weights trained at another scale or PSF
    (:func:`init_from`)."""
    scale = protocol_recipe(protocol)["scale"]
    if architecture not in SUPERVISED:
        raise CubeError(f"cannot train the architecture {architecture!r} on reference scenes "
                        f"(choose {', '.join(SUPERVISED)}; CSAKD is distilled: the distill command)")
    if init is not None and (depths or options):
        raise CubeError("the configuration comes from the weights training starts from (--init): "
                        "leave out --depths and --config")
    if init is not None and architecture != "cofusion":
        raise CubeError(f"--init starts a CoFusion from CoFusion weights; {architecture} trains from scratch")
    if depths and architecture != "cofusion":
        raise CubeError(f"--depths are CoFusion's blocks per level; {architecture} takes --config instead")
    train_scenes, val_scenes, baseline, baseline_dc = simulate_scenes(
        train_paths, val_paths, protocol, crop=crop, variants=DIHEDRAL if augment else ((0, False),), workers=workers,
        with_base=base == "glp-hs")
    ref0 = train_scenes[0]
    C, c = ref0.ref.shape[0], ref0.msi.shape[0]
    extra: dict[str, Any] = {}
    if init is not None:
        model, extra["init"] = init_from(init, C, c, scale)
        if model.cfg.base != base:
            raise CubeError(f"the weights {extra['init']['weights']} refine a {model.cfg.base} base, not {base}")
    else:
        cls, cfg_cls = ARCHITECTURES[architecture]
        fixed = sorted(set(options or {}) & {"hs_bands", "ms_bands", "scale", "base", "phase", "depths"})
        if fixed:
            raise CubeError(f"--config cannot set {', '.join(fixed)}: the band counts, scale and phase come from "
                            f"the training scenes and the protocol, the base from --base, the depths from --depths")
        kw = {**(options or {}), "hs_bands": C, "ms_bands": c, "scale": scale, "base": base}
        if depths:
            kw["depths"] = list(depths)
        model = cls(cfg_cls.from_json(kw))
    return FolderTraining(Path(root), protocol, list(train_paths), list(val_paths), augment, config, model,
                          train_scenes, val_scenes, read_cube(train_paths[0]).wavelengths, baseline, baseline_dc,
                          card_fields=extra)


def init_from(weights: "str | os.PathLike", C: int, c: int, scale: int) -> tuple[CoFusion, dict[str, Any]]:
    """A CoFusion for ``scale`` holding the parameters of the CoFusion ``weights`` (a name in
    weights/ or a path) trained at any scale and PSF: no parameter depends on the scale (the
    network works on the HR grid, on its glp-hs base), so the ×4 weights are a start for ×2.
    The band counts must match. Returns the model and what the card records of the start."""
    from dataclasses import replace

    from napari_cofusion.fusion.pair import check_fits
    from napari_cofusion.learn.weights import load_weights, resolve_weights

    path = resolve_weights(weights, C, c, scale)
    src, card = load_weights(path)
    if card.get("architecture") != "cofusion":
        raise CubeError(f"--init {path.stem}: a {card.get('architecture')} model, not CoFusion")
    check_fits((src.cfg.hs_bands, src.cfg.ms_bands, scale), (C, c, scale), f"the weights '{path.stem}'",
               "the training scenes")
    model = CoFusion(replace(src.cfg, scale=int(scale), phase=None))
    model.load_state_dict(src.state_dict())
    return model, {"weights": path.name, "scale": src.cfg.scale, "protocol": card.get("protocol"),
                   "steps": (card.get("training") or {}).get("steps_done")}
