"""Knowledge distillation of a CoFusion teacher into the CSAKD student (the ``distill`` command).

The teacher is frozen and run once on every training scene (an offline teacher): its fused cube
is kept beside the reference, and each training step draws the same patch of the reference, the
pair, the glp-hs base and the teacher's output. The student's joint loss (after CSAKD's)::

    L = L1(S, X) + w_ssim·(1 − SSIM(S, X)) + w_kd·L1(S, T) + w_sam·SAM(S, X)

with X the reference, T the teacher's output and SAM the mean spectral angle in radians (zero
pixels count as angle 0, not NaN). CSAKD's feature-level term compares the fused features of a
teacher and a student built alike; CoFusion's features have another layout and, computed live,
would triple the CPU step, so the student learns from the teacher's outputs (docs/model.md).

Qt-free; the CLI drives it like ``train``::

    run = prepare_distillation(root, train_paths, val_paths, "cave-x4", cfg, teacher="cofusion_cave_x4")
    for last in run.loop(ckpt_dir, resume=True): ...
    run.save("weights/csakd_cave_x4", last, threads=2, device="cpu")
"""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from napari_cofusion.core import metrics
from napari_cofusion.core.errors import TrainingError, WeightsError
from napari_cofusion.core.io import read_cube
from napari_cofusion.degrade.simulate import protocol_recipe
from napari_cofusion.fusion.pair import check_fits
from napari_cofusion.learn.models import CSAKDConfig, CSAKDStudent
from napari_cofusion.learn.train import Scene, TrainConfig, predict, validate
from napari_cofusion.learn.train_folder import FolderTraining, simulate_scenes
from napari_cofusion.learn.weights import load_weights, resolve_weights

__all__ = ["KD_WEIGHT", "SAM_WEIGHT", "VARIANTS", "kd_loss", "spectral_angle", "attach_teacher", "grow_student", "freeze_except",
           "prepare_distillation"]

#: weights of the teacher term and of the spectral-angle term (CSAKD's 0.1 each)
KD_WEIGHT = 0.1
SAM_WEIGHT = 0.1
#: the dihedral variants each training reference is simulated in: four (quarter turns, every
#: other one flipped) keep the 18 CAVE scenes with their bases and teacher outputs in ~6 GB
VARIANTS: tuple[tuple[int, bool], ...] = ((0, False), (1, False), (2, True), (3, True))


def spectral_angle(z: torch.Tensor, x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean spectral angle (radians) of (B, C, H, W) cubes; a zero spectrum gives angle 0 and a
    finite gradient (the cosine is clamped inside (−1, 1))."""
    dot = (z * x).sum(1)
    norm = z.norm(dim=1) * x.norm(dim=1)
    valid = norm > eps
    cos = torch.where(valid, dot / norm.clamp_min(eps), torch.ones_like(dot))
    angle = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
    return torch.where(valid, angle, torch.zeros_like(angle)).mean()


def kd_loss(out: torch.Tensor, ref: torch.Tensor, teacher: torch.Tensor | None, kd_weight: float = KD_WEIGHT,
            sam_weight: float = SAM_WEIGHT, ssim_weight: float = 0.1) -> torch.Tensor:
    """The student's joint loss (module docstring); without teacher patches the teacher term is 0."""
    loss = F.l1_loss(out, ref) + ssim_weight * (1.0 - metrics.ssim_bands(out, ref).mean())
    if teacher is not None and kd_weight:
        loss = loss + kd_weight * F.l1_loss(out, teacher)
    if sam_weight:
        loss = loss + sam_weight * spectral_angle(out, ref)
    return loss


def attach_teacher(teacher: torch.nn.Module, scenes: Sequence[Scene], progress: Any = None) -> None:
    """Give each scene (in place) the teacher's output (network alone, clipped to [0, 1]), kept in float16."""
    for i, sc in enumerate(scenes):
        sc.teacher = predict(teacher, sc.lr, sc.msi, sc.base).to(torch.float16)
        if progress is not None:
            progress(i + 1, len(scenes))



def grow_student(init: "str | os.PathLike", changes: dict | None, C: int, c: int, scale: int) -> tuple[CSAKDStudent, dict]:
    """A student built from the CSAKD weights ``init`` (name or path) with ``changes`` to its
    configuration (e.g. ``{"hr_blocks": 2}``): the trained parameters are copied, and new ones may
    only be blocks that start as the identity (:class:`~napari_cofusion.learn.models.HRBlock`),
    so the grown student fuses exactly as ``init`` until training moves it. Returns the model and
    what the card records of the start."""
    path = resolve_weights(init, C, c, scale, architecture="csakd")
    old, card = load_weights(path)
    if card["architecture"] != "csakd":
        raise TrainingError(f"--init {path.name} is a {card['architecture']} model, not a CSAKD student")
    try:
        cfg = CSAKDConfig.from_json({**card["config"], **(changes or {})})
    except WeightsError as exc:  # naming the field
        raise TrainingError(f"--init {path.name} with --student {changes}: {exc}") from None
    check_fits((cfg.hs_bands, cfg.ms_bands, cfg.scale), (C, c, scale), f"--init {path.name}", "the training scenes")
    model = CSAKDStudent(cfg)
    try:
        missing, unexpected = model.load_state_dict(old.state_dict(), strict=False)
    except RuntimeError as exc:  # size mismatches: name the first
        first = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
        raise TrainingError(f"--init {path.name}: its layers do not fit the student {changes} ({first})") from None
    stray = unexpected + [k for k in missing if not k.startswith("refine.")]  # only new HR blocks may be missing
    if stray:
        raise TrainingError(f"--init {path.name}: the student {changes} would drop or re-initialise trained layers "
                            f"({', '.join(stray[:4])})")
    tr = card.get("training", {})
    return model, {"weights": path.name, "steps": tr.get("steps_done"), "seconds": tr.get("seconds"),
                   "validation": card.get("validation"), "added": sum(p.numel() for k, p in model.state_dict().items()
                                                                        if k in missing)}


def freeze_except(model: torch.nn.Module, names: Sequence[str]) -> int:
    """Freeze every parameter outside the top-level modules ``names`` (their activations are then
    not kept for the backward pass: a step of the student's HR path alone costs half a full one).
    Returns how many parameters still train; an unknown name is a :class:`TrainingError`."""
    known = {n for n, _ in model.named_children()}
    unknown = sorted(set(names) - known)
    if unknown:
        raise TrainingError(f"--train-only: no module {', '.join(unknown)} in the student (it has {', '.join(sorted(known))})")
    n = 0
    for name, p in model.named_parameters():
        p.requires_grad_(name.split(".", 1)[0] in names)
        n += p.numel() if p.requires_grad else 0
    return n


def prepare_distillation(root: str | os.PathLike, train_paths: Sequence[Path], val_paths: Sequence[Path],
                         protocol: str, config: TrainConfig, teacher: "str | os.PathLike | None" = None, *,
                         student: CSAKDConfig | dict | None = None, crop: int | None = None,
                         variants: Sequence[tuple[int, bool]] = VARIANTS, workers: int | None = 1,
                         kd_weight: float = KD_WEIGHT, sam_weight: float = SAM_WEIGHT,
                         init: "str | os.PathLike | None" = None, train_only: Sequence[str] | None = None,
                         log: Any = print) -> FolderTraining:
    """Simulate the scenes, run the teacher on them (``teacher``: weights name or path; default
    the shipped CoFusion weights for the protocol's band counts and scale), measure the teacher
    and glp-hs on the validation scenes, and build a new student, or continue one (``init``:
    CSAKD weights whose configuration, updated by ``student``, the new one takes; see
    :func:`grow_student`); ``train_only``: the names of the student's top-level modules that
    train (e.g. ``("to_hr", "head", "refine")``, the HR path), the others stay frozen."""
    t0 = time.perf_counter()
    scale = protocol_recipe(protocol)["scale"]
    train_scenes, val_scenes, baseline, baseline_dc = simulate_scenes(
        train_paths, val_paths, protocol, crop=crop, variants=variants, workers=workers, with_base=True)
    C, c = train_scenes[0].ref.shape[0], train_scenes[0].msi.shape[0]
    path = resolve_weights(teacher, C, c, scale)
    t_model, t_card = load_weights(path)
    if t_card["architecture"] != "cofusion":
        raise TrainingError(f"the teacher {path.name} is a {t_card['architecture']} model, not CoFusion")
    if t_card.get("protocol") not in (None, protocol):
        log(f"note: the teacher {path.stem} was trained for {t_card.get('protocol')}, the student for {protocol}")
    log(f"simulated {len(train_scenes)} training and {len(val_scenes)} validation scenes "
        f"({time.perf_counter() - t0:.0f} s); running the teacher {path.stem} on them")
    t1 = time.perf_counter()
    attach_teacher(t_model, train_scenes)
    teacher_val = validate(t_model, val_scenes) if val_scenes else None
    teacher_val_dc = validate(t_model, val_scenes, consistency="auto") if val_scenes else None
    log(f"teacher outputs in {time.perf_counter() - t1:.0f} s; teacher on validation: "
        + (f"{teacher_val['psnr']:.3f} dB network, {teacher_val_dc['psnr']:.3f} dB with consistency"
           if teacher_val else "no validation scenes"))
    start: dict[str, Any] = {}
    if init is not None:
        model, start = grow_student(init, student if isinstance(student, dict) else None, C, c, scale)
        log(f"starting from {start['weights']} ({start['steps']} steps), {start['added']} new parameters")
    else:
        if isinstance(student, dict):
            student = CSAKDConfig.from_json({**student, "hs_bands": C, "ms_bands": c, "scale": scale})
        model = CSAKDStudent(student or CSAKDConfig(hs_bands=C, ms_bands=c, scale=scale))
    if train_only:
        freeze_except(model, train_only)
    fields = {"teacher": {"weights": path.name, "protocol": t_card.get("protocol"),
                          "validation": teacher_val, "validation_consistency": teacher_val_dc,
                          "n_params": int(sum(p.numel() for p in t_model.parameters()))},
              "distillation": {"loss": "L1 + 0.1·(1 − SSIM) + kd·L1(student, teacher) + sam·SAM (radians)",
                               "kd_weight": kd_weight, "sam_weight": sam_weight,
                               "teacher_outputs": "offline: the frozen teacher run once per training scene"},
              **({"init": start} if start else {}), **({"trained": list(train_only)} if train_only else {})}
    return FolderTraining(Path(root), protocol, list(train_paths), list(val_paths), True, config, model,
                          train_scenes, val_scenes, read_cube(train_paths[0]).wavelengths, baseline, baseline_dc,
                          loss_fn=partial(kd_loss, kd_weight=kd_weight, sam_weight=sam_weight,
                                          ssim_weight=config.ssim_weight),
                          card_fields=fields,
                          augmentation=f"{len(variants)} dihedral variants of each reference {list(variants)}")
