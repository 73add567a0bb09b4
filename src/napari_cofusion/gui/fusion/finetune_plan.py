"""What a fine-tune from the Fusion widget trains, without Qt: the training configuration from the
panel's fields, the starting model (:func:`~napari_cofusion.learn.start.starting_model`), the job
(:func:`~napari_cofusion.jobs.finetune_job`) and, when it ends, the training record of the card.

Two kinds: with a reference layer, scenes simulated from the reference (the LRHSI's recipe when it
was simulated, else the Simulate panel's settings); without one, the scene-only fine-tune on the
pair (:mod:`napari_cofusion.learn.selfsup`, degradations estimated or presets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.srf import get_srf
from napari_cofusion.degrade.simulate import PSF, Recipe
from napari_cofusion.fusion.pair import check_fits
from napari_cofusion.gui.fusion.pairing import LayerShape
from napari_cofusion.gui.layers import layer_cube
from napari_cofusion.jobs import DIHEDRAL_VARIANTS, JobUpdate, finetune_job
from napari_cofusion.learn.selfsup import DEFAULT_CONSISTENCY, scene_config
from napari_cofusion.learn.start import starting_model
from napari_cofusion.learn.train import TrainConfig

__all__ = ["FinetunePlan", "train_config", "patch_for", "training_recipe", "recipe_json", "plan_with_reference",
           "plan_scene_only", "training_record"]


@dataclass
class FinetunePlan:
    """A started fine-tune: the model it trains in place and what its card will say."""

    model: Any
    origin: str
    cfg: TrainConfig
    source: dict[str, Any]
    device: str
    hs_wavelengths: list[float] | None = None
    psf: Any = None
    srf: Any = None
    report: dict[str, Any] | None = None  # scene-only: what finetune_scene reports


def train_config(steps: int, lr_text: str, batch: int, patch: int) -> TrainConfig:
    """:func:`~napari_cofusion.learn.selfsup.scene_config` for the panel's fields."""
    try:
        lr = float(lr_text)
    except ValueError:
        raise CubeError(f"learning rate {lr_text!r} is not a number") from None
    if not (lr > 0 and math.isfinite(lr)):
        raise CubeError(f"learning rate must be positive, got {lr}")
    return scene_config(int(steps), lr, int(batch), int(patch), seed=0)


def patch_for(patch: int, scale: int) -> int:
    """The patch side rounded down to a multiple of lcm(8, scale) (whole LR pixels, and the
    network's three levels), at least one such multiple."""
    unit = math.lcm(8, int(scale))
    return max(unit, (int(patch) // unit) * unit)


def training_recipe(lr_layer, simulate_settings: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``simulate_pair`` arguments: the LRHSI's recipe when it was simulated, else the Simulate
    panel's settings; and where they came from."""
    rec = None if lr_layer is None else lr_layer.metadata.get("recipe")
    if rec:
        return Recipe.from_json(dict(rec)).simulate_kwargs(), f"the recipe of '{lr_layer.name}'"
    return dict(simulate_settings), "the Simulate panel's settings"


def recipe_json(kw: dict[str, Any]) -> dict[str, Any]:
    """``simulate_pair`` keyword arguments as JSON (for the weights card)."""
    out = dict(kw)
    srf = out.get("srf")
    if isinstance(srf, np.ndarray):
        out["srf"] = {"name": "matrix", "matrix": srf.tolist()}
    elif isinstance(srf, str):
        out["srf"] = {"name": srf}
    if out.get("psf") is not None:
        out["psf"] = PSF.parse(out["psf"]).to_json()
    return out


def _wavelengths(wl) -> list[float] | None:
    return None if wl is None else [float(w) for w in wl]


def plan_with_reference(ref_layer, lr_layer, msi_layer, pair_scale: int | None, simulate_settings: dict[str, Any],
                        cfg: TrainConfig, choice: Any, device: str) -> tuple[Iterator[JobUpdate], FinetunePlan]:
    """Scenes simulated from ``ref_layer``; ``lr_layer`` / ``msi_layer`` is the pair (None when the
    selected pair is not valid), whose band counts and scale the training must give."""
    ref = layer_cube(ref_layer)
    recipe, recipe_from = training_recipe(lr_layer, simulate_settings)
    scale = int(recipe["scale"])
    ms = int(get_srf(recipe["srf"]).matrix_for(ref.bands, ref.wavelengths).shape[0])
    if lr_layer is not None and msi_layer is not None:
        check_fits((ref.bands, ms, scale), (LayerShape(lr_layer).bands, LayerShape(msi_layer).bands, int(pair_scale)),
                   f"training on the reference '{ref.name}' with {recipe_from}", "the pair")
    cfg.patch = patch_for(cfg.patch, scale)
    start = starting_model(choice, ref.bands, ms, scale, phase=recipe.get("phase"))
    job = finetune_job(start.model, ref, recipe, cfg, device=device)
    rj = recipe_json(recipe)
    source = {"reference_layer": ref_layer.name, "recipe": rj, "recipe_from": recipe_from,
              "scenes": f"{len(DIHEDRAL_VARIANTS)} dihedral variants of the reference"}
    return job, FinetunePlan(start.model, start.describe(), cfg, source, device, _wavelengths(ref.wavelengths),
                             rj.get("psf"), rj.get("srf"))


def plan_scene_only(lr_layer, msi_layer, scale: int, psf: str | None, srf: str | None, cfg: TrainConfig,
                    choice: Any, device: str, degradation: Any = None) -> tuple[Iterator[JobUpdate], FinetunePlan]:
    """The scene-only fine-tune of the pair; ``psf`` / ``srf``: presets (None: estimate), or the
    ``degradation`` already estimated for this pair and these choices."""
    lr, msi = layer_cube(lr_layer), layer_cube(msi_layer)
    cfg.patch = patch_for(cfg.patch, scale)
    start = starting_model(choice, lr.bands, msi.bands, scale, adapt=True)
    report: dict[str, Any] = {}
    options: dict[str, Any] = {"psf": psf, "srf": srf, "report": report}
    if degradation is not None:
        options["degradation"] = degradation
    job = finetune_job(start.model, None, None, cfg, lr=lr, msi=msi, scene_options=options, device=device)
    source = {"scene": [lr_layer.name, msi_layer.name],
              "mode": "scene-only: reduced-resolution self-supervised fine-tune",
              "consistency_weight": DEFAULT_CONSISTENCY,
              "psf_choice": psf or "estimated", "srf_choice": srf or "estimated"}
    return job, FinetunePlan(start.model, start.describe(), cfg, source, device, _wavelengths(lr.wavelengths),
                             report=report)


def training_record(plan: FinetunePlan, last_step: Any) -> dict[str, Any]:
    """The fine-tune's record (``finetuned_info``) after ``last_step`` (a Progress); a scene-only
    fine-tune also hands its degradations to the model and the record."""
    cfg, report = plan.cfg, plan.report or {}
    done = int(last_step.step)
    deg = report.get("degradation")
    psf, srf, source = plan.psf, plan.srf, dict(plan.source)
    if deg is not None:  # scene-only: the degradations it trained with go with the model
        psf, srf = deg["psf"], deg["srf"]
        plan.model.psf = psf
        source.update(degradation=deg, reduced_l1_before=report.get("reduced_before"),
                      reduced_l1_after=report.get("reduced_after"), consistency_patch=report.get("consistency_patch"))
    return {
        "start_weights": plan.origin, **source, "steps": cfg.steps, "steps_done": done,
        "stopped_early": done < cfg.steps, "lr": cfg.lr, "batch": cfg.batch, "patch": cfg.patch,
        "warmup": cfg.warmup, "seed": cfg.seed, "final_loss": float(last_step.loss),
        "seconds": round(float(last_step.elapsed), 1), "device": plan.device,
        "hs_wavelengths": plan.hs_wavelengths, "psf": psf, "srf": srf,
    }
