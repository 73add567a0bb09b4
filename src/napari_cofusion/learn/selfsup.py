"""Fine-tune CoFusion on a loaded pair that has no high-resolution reference.

Reduced-resolution training (Wald's protocol applied to the observations themselves): with the
PSF ``B``, the decimation phase and the scale ``s`` estimated from the pair
(:mod:`napari_cofusion.degrade.estimate`, or given as presets), the LRHSI and the HRMSI are both degraded
by ``B`` and ``s``; the network learns to map that reduced pair back to the observed LRHSI, and
is then applied to the observed pair. The reduced pair obeys the same model as the real one
(``D(B * MSI) = R · LR``), so it is a simulated pair whose "reference" is the LRHSI.

Training scenes are the 8 dihedral variants of the pair. Flipping a decimated pair moves the
decimation phase from ``p`` to ``s − 1 − p``; :func:`dihedral_pair` crops the flipped HR and LR
images so that every variant has the original phase again (losing at most one LR row/column).

Optional consistency losses at the observed resolution: the output re-degraded by the PSF must
match the LRHSI, and projected by the SRF must match the HRMSI (weight ``consistency``).

Starting point: given weights when their band counts and scale match; otherwise the network
body is kept and only the layers tied to the band counts are re-initialised
(:func:`adapt_model`); or a new model.
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from napari_cofusion.core import ops
from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.degrade.estimate import Degradation, estimate_degradation
from napari_cofusion.degrade.simulate import reduced_pair
from napari_cofusion.fusion.pair import check_fits, check_pair
from napari_cofusion.learn.models import CoFusion, CoFusionConfig
from napari_cofusion.learn.train import Progress, Scene, TrainConfig, classical_base, train
from napari_cofusion.learn.device import resolve_device
from napari_cofusion.learn.weights import make_card

__all__ = ["adapt_model", "dihedral_pair", "reduced_scenes", "finetune_scene", "scene_config", "scene_card", "DEFAULT_STEPS",
           "DEFAULT_LR", "DEFAULT_CONSISTENCY"]

#: The default step budget and peak learning rate of a scene fine-tune: 5 min 8 s on two threads of
#: this project's CPU for the real Houston pair (RGB 512×512, 48 bands), 2–7 minutes on one
#: thread (the other core busy) for the README's simulated crops (README, benchmarks/scene_finetune.py).
#: 200 steps at 1e-4 ended at the same PSNR on DC Mall in twice the time; 200 steps at 4e-4 fitted
#: the reduced pair further and ended below glp-hs there.
DEFAULT_STEPS = 100
DEFAULT_LR = 2e-4
#: Weight of the full-resolution consistency losses (the output re-degraded by the estimated PSF
#: must match the LRHSI, projected by the estimated SRF the HRMSI). The reduced-resolution loss
#: alone fits the reduced pair without the gain carrying over to the full resolution (it ended
#: below glp-hs on DC Mall, PaviaU and Salinas-A); the consistency losses carry the gain. On DC
#: Mall (200 steps, 1e-4): weight 0 47.22 dB, 5 47.54, 20 47.67, 100 47.71 against glp-hs's
#: 47.67; 100 and 300 tied at 100 steps of 2e-4 (README, benchmarks/scene_finetune.py).
DEFAULT_CONSISTENCY = 100.0
#: HR side of the observed-pair patch the consistency losses see each step. Its forward and
#: backward cost as much as the reduced batch's or more (191 bands, two threads: 64² 1.0 s, 128²
#: 2.7 s, the batch of 4 × 32² 1.0–1.4 s); 96 keeps a 512×512 scene's fine-tune near 5 minutes.
#: 64 ended 0.03 dB lower on DC Mall (whose 100×100 scene the table's runs cover with 96).
DEFAULT_CONSISTENCY_PATCH = 96


def scene_config(steps: int | None = None, lr: float | None = None, batch: int = 4, patch: int = 32,
                 seed: int = 0) -> TrainConfig:
    """The training configuration of a scene fine-tune (the CLI's, the widget's, the benchmark's and
    :func:`finetune_scene`'s default): ``steps`` / ``lr`` default to :data:`DEFAULT_STEPS` /
    :data:`DEFAULT_LR`; linear warm-up over a tenth of the steps (at most 50); no validation or
    periodic checkpoints (there is no reference to validate on). An explicit 0 is refused, not
    taken for the default."""
    steps = DEFAULT_STEPS if steps is None else steps
    lr = DEFAULT_LR if lr is None else lr
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise CubeError(f"fine-tuning: steps = {steps!r} must be a whole number, 1 or more")
    return TrainConfig(steps=steps, batch=batch, patch=patch, lr=lr,
                       warmup=max(1, min(50, steps // 10)), val_every=steps + 1, ckpt_every=steps + 1, seed=seed)


# ---------------------------------------------------------------------------- starting model
def adapt_model(model: CoFusion | None, hs_bands: int, ms_bands: int, scale: int, phase: int | None = None,
                base: str = "glp-hs") -> tuple[CoFusion, dict[str, Any]]:
    """A CoFusion for ``hs_bands``/``ms_bands`` at ``scale``, starting from ``model``.

    Same band counts and scale: a copy of ``model`` (its phase set to ``phase``). Otherwise a new
    model of the same architecture whose parameters take ``model``'s values wherever the shapes
    agree (the body), the others (tied to the band counts) keeping their fresh initialisation.
    Returns the model and a report: ``mode`` ("pretrained", "adapted", "new"), ``reinitialised``
    (parameter names), ``kept`` (count).
    """
    if model is None:
        cfg = CoFusionConfig(hs_bands=hs_bands, ms_bands=ms_bands, scale=scale, phase=phase, base=base)
        return CoFusion(cfg), {"mode": "new", "reinitialised": [], "kept": 0}
    src = model.cfg
    if (src.hs_bands, src.ms_bands, src.scale) == (hs_bands, ms_bands, scale):
        out = copy.deepcopy(model)
        out.cfg.phase = phase if phase is not None else src.phase
        return out, {"mode": "pretrained", "reinitialised": [], "kept": len(model.state_dict())}
    cfg = CoFusionConfig.from_json({**src.to_json(), "hs_bands": hs_bands, "ms_bands": ms_bands, "scale": scale,
                                    "phase": phase})
    torch.manual_seed(0)
    out = CoFusion(cfg)
    old = model.state_dict()
    new = out.state_dict()
    reinit = []
    for k, v in new.items():
        if k in old and old[k].shape == v.shape:
            new[k] = old[k].clone()
        else:
            reinit.append(k)
    out.load_state_dict(new)
    return out, {"mode": "adapted", "reinitialised": reinit, "kept": len(new) - len(reinit)}


# ---------------------------------------------------------------------------- phase-true augmentation
def _flip_axis(hr: np.ndarray, lr: np.ndarray, axis: int, s: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip both images along ``axis`` (1 rows, 2 columns) and crop them so that LR sample ``j``
    again sits at HR pixel ``s·j + p`` (after a flip it sits at ``s·j + s − 1 − p``)."""
    hr, lr = np.flip(hr, axis=axis), np.flip(lr, axis=axis)
    n_lr = lr.shape[axis]
    hr = hr.take(range(hr.shape[axis] - s * n_lr, hr.shape[axis]), axis=axis)  # HR covering the LR exactly
    q = s - 1 - p
    if q >= p:
        hr_off, lr_off = q - p, 0
    else:
        hr_off, lr_off = s + q - p, 1
    m = min((hr.shape[axis] - hr_off) // s, n_lr - lr_off)
    hr = hr.take(range(hr_off, hr_off + s * m), axis=axis)
    lr = lr.take(range(lr_off, lr_off + m), axis=axis)
    return hr, lr


def _canonical(k_rot: int, flip: bool) -> tuple[bool, bool, bool]:
    """(transpose, flip rows, flip columns) doing the same as ``np.rot90(np.flip(a, -1), k_rot)``
    (a flip of the columns, then ``k_rot`` counter-clockwise quarter turns), with the flips
    applied first and the transpose last."""
    probe = np.arange(6).reshape(2, 3)
    target = np.rot90(probe[:, ::-1] if flip else probe, k_rot)
    for t in (False, True):
        for fr in (False, True):
            for fc in (False, True):
                a = probe[::-1] if fr else probe
                a = a[:, ::-1] if fc else a
                if np.array_equal(a.T if t else a, target):
                    return t, fr, fc
    raise AssertionError("unreachable: the dihedral group has 8 elements")


def dihedral_pair(hr: np.ndarray, lr: np.ndarray, k_rot: int, flip: bool, s: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """A dihedral variant (``flip`` the columns, then ``k_rot`` quarter turns, as ``np.rot90``)
    of a (C, H, W) HR image and its (C, h, w) LR image decimated at phase ``p``, keeping that
    phase: each flip crops at most one LR row or column, a transpose keeps the phase as it is."""
    hr = hr[:, : s * lr.shape[1], : s * lr.shape[2]]
    t, fr, fc = _canonical(k_rot, flip)
    if fr:
        hr, lr = _flip_axis(hr, lr, 1, s, p)
    if fc:
        hr, lr = _flip_axis(hr, lr, 2, s, p)
    if t:
        hr, lr = hr.transpose(0, 2, 1), lr.transpose(0, 2, 1)
    return np.ascontiguousarray(hr), np.ascontiguousarray(lr)


# ---------------------------------------------------------------------------- reduced-resolution scenes
def reduced_scenes(lr: np.ndarray, msi: np.ndarray, deg: Degradation, with_base: bool,
                   augment: bool = True) -> list[Scene]:
    """The reduced-resolution training scenes of a pair: (D(B*LR), D(B*MSI)) → LR, for the 8
    dihedral variants (or the pair alone)."""
    s, p = deg.scale, deg.phase
    variants = [(k, f) for f in (False, True) for k in range(4)] if augment else [(0, False)]
    scenes = []
    for k, f in variants:
        ms_v, lr_v = dihedral_pair(msi, lr, k, f, s, p)
        if lr_v.shape[1] < s or lr_v.shape[2] < s:
            raise CubeError(f"the LRHSI ({lr.shape[1]}×{lr.shape[2]}) is too small for reduced-resolution "
                            f"training at ×{s}: it needs at least {s}×{s} pixels, better {8 * s}×{8 * s}")
        target, lr_red, ms_red = reduced_pair(lr_v, ms_v, deg.kernel, s, p)
        base = torch.from_numpy(classical_base(lr_red, ms_red, deg.kernel, s, p)) if with_base else None
        scenes.append(Scene(f"reduced rot{90 * k}{' flip' if f else ''}", torch.from_numpy(target),
                            torch.from_numpy(np.ascontiguousarray(lr_red)), torch.from_numpy(np.ascontiguousarray(ms_red)),
                            base, deg.kernel, s, p))
    return scenes


def _consistency_loss(model: CoFusion, lr: torch.Tensor, msi: torch.Tensor, base: torch.Tensor | None,
                      deg: Degradation, srf: torch.Tensor, patch: int, g: torch.Generator) -> torch.Tensor:
    """L1 of D(B*Z) − LR and R·Z − MSI on a random patch of the observed pair (an LR pixel of
    margin left out of the first, where the patch's padding differs from the scene's)."""
    s = deg.scale
    H, W = msi.shape[-2:]
    ps = min(patch, H - H % s, W - W % s)
    y = int(torch.randint((H - ps) // s + 1, (1,), generator=g)) * s
    x = int(torch.randint((W - ps) // s + 1, (1,), generator=g)) * s
    lr_p = lr[:, y // s:(y + ps) // s, x // s:(x + ps) // s][None]
    ms_p = msi[:, y:y + ps, x:x + ps][None]
    b_p = None if base is None else base[:, y:y + ps, x:x + ps][None]
    z = model(lr_p, ms_p, b_p)
    z_lr = ops.degrade(z, deg.kernel, s, deg.phase)
    m = 1 if min(lr_p.shape[-2:]) > 2 else 0
    sl = (..., slice(m, lr_p.shape[-2] - m), slice(m, lr_p.shape[-1] - m))
    return F.l1_loss(z_lr[sl], lr_p[sl]) + F.l1_loss(ops.project(z, srf), ms_p)


# ---------------------------------------------------------------------------- the fine-tune
def finetune_scene(
    model: CoFusion,
    lr: Cube,
    msi: Cube,
    cfg: TrainConfig | None = None,
    psf: Any = None,
    srf: Any = None,
    degradation: Degradation | None = None,
    consistency: float = DEFAULT_CONSISTENCY,
    consistency_patch: int = DEFAULT_CONSISTENCY_PATCH,
    augment: bool = True,
    report: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
) -> Iterator[Any]:
    """Fine-tune ``model`` (in place) on the pair alone. Yields status strings while it estimates
    the degradations and builds the scenes, then a :class:`~napari_cofusion.learn.train.Progress` per
    step; closing the generator stops it and leaves the model usable (eval mode).

    ``psf`` / ``srf``: presets that replace the estimates (None: estimate). ``degradation``: use
    these degradations as they are. ``report`` (a dict) receives the degradations (JSON) and the
    reduced-resolution loss before and after. ``device``: where to train (CPU by default, "cuda"
    where available); the model is back on the CPU afterwards.
    """
    dev = resolve_device(device)
    cfg = cfg or scene_config()
    m = model.cfg
    check_fits((m.hs_bands, m.ms_bands, m.scale), (lr.bands, msi.bands, check_pair(lr, msi)), "the model", "the pair",
               hint="adapt it first with adapt_model")
    if degradation is None:
        yield "estimating the PSF and the SRF from the pair"
        degradation = estimate_degradation(lr, msi, psf=psf, srf=srf)
    deg = degradation
    if deg.scale != m.scale:
        raise CubeError(f"the model is for ×{m.scale} but the pair is ×{deg.scale}")
    if report is not None:
        report["degradation"] = deg.to_json()
        report["degradation_text"] = deg.describe()
    yield f"estimated {deg.describe()}" if deg.psf_estimated or deg.srf_estimated else f"degradations: {deg.describe()}"
    yield "building the reduced-resolution training scenes"
    with_base = m.base == "glp-hs"
    scenes = reduced_scenes(lr.data, msi.data[:, : lr.shape[1] * deg.scale, : lr.shape[2] * deg.scale], deg,
                            with_base, augment)
    unit = int(np.lcm(8, deg.scale))
    side = min(min(sc.ref.shape[-2:]) for sc in scenes)
    cfg = copy.copy(cfg)
    cfg.patch = max(unit, min(cfg.patch, (side // unit) * unit or side))
    extra, full_patch = None, None
    if consistency > 0:
        lr_t = torch.from_numpy(lr.data)
        ms_t = torch.from_numpy(np.ascontiguousarray(msi.data[:, : lr.shape[1] * deg.scale, : lr.shape[2] * deg.scale]))
        base_t = torch.from_numpy(classical_base(lr.data, ms_t.numpy(), deg.kernel, deg.scale, deg.phase)) if with_base else None
        srf_t = torch.from_numpy(np.asarray(deg.srf, dtype=np.float32)).to(dev)
        lr_t, ms_t = lr_t.to(dev), ms_t.to(dev)
        base_t = None if base_t is None else base_t.to(dev)
        g = torch.Generator().manual_seed(cfg.seed + 1)
        full_patch = max(unit, (min(consistency_patch, ms_t.shape[-2], ms_t.shape[-1]) // unit) * unit)

        def extra(mod: CoFusion) -> torch.Tensor:
            return consistency * _consistency_loss(mod, lr_t, ms_t, base_t, deg, srf_t, full_patch, g)

    model.cfg.phase = deg.phase
    if report is not None:
        report["reduced_before"] = _reduced_loss(model, scenes)
    loop = train(model, scenes, (), cfg, extra_loss=extra, device=dev)
    try:
        yield from loop
    finally:
        loop.close()
        if report is not None:
            report["reduced_after"] = _reduced_loss(model, scenes)
            report["patch"] = cfg.patch
            report["consistency_patch"] = full_patch  # None without the consistency losses


@torch.inference_mode()
def _reduced_loss(model: CoFusion, scenes: list[Scene]) -> float:
    """Mean L1 of the model on the whole reduced-resolution scenes (eval mode)."""
    was = model.training
    model.eval()
    vals = []
    for sc in scenes:
        z = model(sc.lr[None], sc.msi[None], None if sc.base is None else sc.base[None])[0].clamp(0, 1)
        vals.append(float(F.l1_loss(z, sc.ref)))
    model.train(was)
    return float(np.mean(vals))


def scene_card(model: CoFusion, lr: Cube, cfg: TrainConfig, report: dict[str, Any], last: Progress, start: Any,
               consistency: float, threads: int, device: str, training_data: dict[str, Any]) -> dict[str, Any]:
    """The weights card after a :func:`finetune_scene` run on the LRHSI ``lr`` that ended at
    ``last``: the degradations it estimated (from its ``report``), where it started (``start``, a
    :class:`~napari_cofusion.learn.start.StartingModel`) and its settings."""
    deg = report["degradation"]
    return make_card(
        model, hs_wavelengths=lr.wavelengths, srf=deg["srf"], psf=deg["psf"], protocol=None, degradation=deg,
        training_mode="scene-only: reduced-resolution self-supervised fine-tune (napari-cofusion finetune)",
        training_data=training_data,
        training={"start_weights": start.origin, "start_mode": start.mode, "reinitialised": list(start.reinitialised),
                  "steps": cfg.steps, "steps_done": last.step, "seconds": round(last.elapsed, 1), "lr": cfg.lr,
                  "batch": cfg.batch, "patch": report.get("patch"), "consistency": consistency,
                  "consistency_patch": report.get("consistency_patch"), "threads": threads, "device": device,
                  "reduced_l1_before": report.get("reduced_before"), "reduced_l1_after": report.get("reduced_after")},
    )
