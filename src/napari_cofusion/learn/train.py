"""Training and fine-tuning engine.

The loop is a generator (:func:`train`) that yields a :class:`Progress` after every step (and
after each validation), so the GUI can show it and stop it: closing the generator (or breaking
out of the loop) leaves the model usable and, with a checkpoint folder, saves a checkpoint.

* Loss: L1 + 0.1 · (1 − SSIM) (SSIM per band as in PROTOCOL.md, averaged).
* AdamW, cosine schedule with linear warm-up (or a step schedule), gradient clipping, seeded.
* Patches are drawn from the training scenes. Flips and 90° rotations are applied to the
  whole *reference* scene before simulation, because flipping a simulated pair would move the
  decimation phase (s//2 becomes s − 1 − s//2): each scene is kept in all 8 dihedral variants.
* Validation on whole scenes with the PROTOCOL.md metrics.
* Checkpoints are safetensors (model and optimizer tensors) plus JSON; nothing is pickled.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from napari_cofusion.core import metrics
from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError, TrainingError
from napari_cofusion.degrade.consistency import enforce
from napari_cofusion.degrade.simulate import simulate_pair
from napari_cofusion.fusion.classical import glp_hs
from napari_cofusion.learn.device import resolve_device
from napari_cofusion.learn.models import CoFusion

__all__ = ["TrainConfig", "Progress", "Scene", "make_scene", "train", "fusion_loss", "predict", "scene_to",
           "classical_base", "validate"]


PRECISIONS = ("auto", "float32", "bf16")


def train_autocast(device: torch.device, precision: str):
    """The context a training forward runs in: bf16 autocast for ``precision="bf16"``, and for
    ``"auto"`` on a GPU (its tensor cores); otherwise none (float32). The CPU measurements behind
    the default are in benchmarks/train_step.py."""
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


@dataclass
class TrainConfig:
    steps: int = 2000
    batch: int = 8
    patch: int = 64  # HR patch side, a multiple of 8·scale/gcd
    lr: float = 1e-4  # the full model stops learning at a few times this (docs/model.md)
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | step | constant
    warmup: int = 200
    clip: float = 1.0
    ssim_weight: float = 0.1
    seed: int = 0
    val_every: int = 500
    ckpt_every: int = 250
    augment: bool = True
    #: which validation picks the kept state: "network" (the network alone) or "consistency" (with
    #: fuse's default data-consistency step: what a user gets; a fine-tune from other weights can
    #: raise the first and lower the second)
    select: str = "network"
    #: validate the starting state too (a run from other weights keeps it when no step beats it)
    val_start: bool = False
    #: the forward's arithmetic: "auto" (bf16 autocast on a GPU, float32 on the CPU), "float32",
    #: or "bf16" (autocast; the loss, gradients, weights and optimizer stay float32)
    precision: str = "auto"

    def __post_init__(self) -> None:
        """Refuse settings that would run something else than asked (0 steps, a negative rate)."""
        for name in ("steps", "batch", "patch", "val_every", "ckpt_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise CubeError(f"training: {name} = {v!r} must be a whole number, 1 or more")
        if self.select not in ("network", "consistency"):
            raise CubeError(f"training: select = {self.select!r} must be network or consistency")
        for name in ("warmup", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise CubeError(f"training: {name} = {v!r} must be a whole number, 0 or more")
        for name in ("lr", "weight_decay", "clip", "ssim_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0) or (name == "lr" and v == 0):
                raise CubeError(f"training: {name} = {v!r} must be a finite number" + (" above 0" if name == "lr" else ", 0 or more"))
        if self.schedule not in ("cosine", "step", "constant"):
            raise CubeError(f"training: schedule = {self.schedule!r}: use cosine, step or constant")
        if self.precision not in PRECISIONS:
            raise CubeError(f"training: precision = {self.precision!r}: use {', '.join(PRECISIONS)}")


@dataclass
class Progress:
    step: int
    total: int
    loss: float
    lr: float
    elapsed: float
    val: dict[str, float] | None = None
    best_val: dict[str, float] | None = None
    done: bool = False
    message: str = ""


@dataclass
class Scene:
    """One training or validation scene: HR reference, simulated LR/MS pair and optional base."""

    name: str
    ref: torch.Tensor  # (C, H, W)
    lr: torch.Tensor  # (C, h, w)
    msi: torch.Tensor  # (c, H, W)
    base: torch.Tensor | None = None  # (C, H, W) classical fusion, when the model uses it
    kernel: np.ndarray | None = None
    scale: int = 4
    phase: int = 2
    teacher: torch.Tensor | None = None  # (C, H, W) a teacher network's output (distillation)


def classical_base(lr: np.ndarray, msi: np.ndarray, kernel: np.ndarray, scale: int, phase: int) -> np.ndarray:
    """The glp-hs fusion the network refines (its ``base``), clipped to [0, 1]."""
    return np.clip(glp_hs(lr, msi, scale=scale, kernel=kernel, phase=phase), 0.0, 1.0)


def make_scene(ref: Cube, name: str, recipe: dict[str, Any], with_base: bool, k_rot: int = 0, flip: bool = False) -> Scene:
    """Simulate a scene (optionally a dihedral variant of the reference) with a recipe."""
    data = ref.data
    if flip:
        data = data[:, :, ::-1]
    if k_rot:
        data = np.rot90(data, k_rot, axes=(1, 2))
    variant = ref.with_data(np.ascontiguousarray(data))
    pair = simulate_pair(variant, **recipe)
    kernel = pair.recipe.kernel()
    s, ph = pair.recipe.scale, pair.recipe.decimation_phase
    base = torch.from_numpy(classical_base(pair.lr.data, pair.msi.data, kernel, s, ph)) if with_base else None
    return Scene(name, torch.from_numpy(pair.reference.data), torch.from_numpy(pair.lr.data),
                 torch.from_numpy(pair.msi.data), base, kernel, s, ph)


def fusion_loss(z: torch.Tensor, x: torch.Tensor, ssim_weight: float = 0.1) -> torch.Tensor:
    """L1 + w · (1 − SSIM), SSIM per band (11×11 Gaussian, σ 1.5) averaged."""
    return F.l1_loss(z, x) + ssim_weight * (1.0 - metrics.ssim_bands(z, x).mean())


def _sample_batch(scenes: Sequence[Scene], n: int, patch: int, g: torch.Generator) -> tuple[torch.Tensor | None, ...]:
    """(LR, MS, reference, base or None, teacher or None) patches of ``n`` random scenes."""
    lrs, mss, refs, bases, teachers = [], [], [], [], []
    for _ in range(n):
        sc = scenes[int(torch.randint(len(scenes), (1,), generator=g))]
        s = sc.scale
        H, W = sc.ref.shape[-2:]
        ps = min(patch, H - H % s, W - W % s)
        y = int(torch.randint((H - ps) // s + 1, (1,), generator=g)) * s
        x = int(torch.randint((W - ps) // s + 1, (1,), generator=g)) * s
        refs.append(sc.ref[:, y:y + ps, x:x + ps])
        mss.append(sc.msi[:, y:y + ps, x:x + ps])
        lrs.append(sc.lr[:, y // s:(y + ps) // s, x // s:(x + ps) // s])
        if sc.base is not None:
            bases.append(sc.base[:, y:y + ps, x:x + ps])
        if sc.teacher is not None:
            teachers.append(sc.teacher[:, y:y + ps, x:x + ps])
    base = torch.stack(bases) if bases else None
    teacher = torch.stack(teachers).float() if teachers else None  # kept in float16
    return torch.stack(lrs), torch.stack(mss), torch.stack(refs), base, teacher


def scene_to(sc: Scene, device: torch.device) -> Scene:
    """A copy of a scene whose tensors live on ``device`` (the same tensors where they already do)."""
    return replace(sc, ref=sc.ref.to(device), lr=sc.lr.to(device), msi=sc.msi.to(device),
                   base=None if sc.base is None else sc.base.to(device),
                   teacher=None if sc.teacher is None else sc.teacher.to(device))


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "cosine":
        t = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
        return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))
    if cfg.schedule == "step":
        return cfg.lr * (0.5 ** ((step - cfg.warmup) // max(cfg.steps // 4, 1)))
    return cfg.lr


@torch.inference_mode()
def predict(model: CoFusion, lr: torch.Tensor, msi: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
    """Whole-scene forward of (C, h, w), (c, H, W) → (C, H, W) clipped to [0, 1]."""
    was = model.training
    model.eval()
    out = model(lr[None], msi[None], None if base is None else base[None])[0].clamp(0, 1)
    model.train(was)
    return out


def validate(model: CoFusion, scenes: Sequence[Scene], consistency: str = "off") -> dict[str, float]:
    """Mean PROTOCOL.md metrics over whole scenes; ``consistency`` as in ``fuse`` (the
    training loop selects on the network alone, "off")."""
    res = []
    for sc in scenes:
        z = predict(model, sc.lr, sc.msi, sc.base)
        if consistency != "off":
            z = torch.from_numpy(enforce(z.cpu().numpy(), sc.lr.cpu().numpy(), sc.msi.cpu().numpy(), sc.kernel,
                                         sc.scale, sc.phase, consistency)[0])
        res.append(metrics.full_reference(z.cpu().numpy(), sc.ref.cpu().numpy(), sc.scale))
    return {k: float(np.mean([r[k] for r in res])) for k in res[0]}


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(folder: Path, model: CoFusion, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    params = [p for grp in opt.param_groups for p in grp["params"]]
    opt_scalars: dict[str, float] = {}
    for i, p in enumerate(params):
        st = opt.state.get(p, {})
        for k, v in st.items():
            if torch.is_tensor(v) and v.dim() > 0:
                tensors[f"opt.{i}.{k}"] = v.detach().cpu().contiguous()
            else:
                opt_scalars[f"{i}.{k}"] = float(v)
    tmp = folder / "last.safetensors.tmp"
    save_file(tensors, str(tmp))
    meta = dict(state, opt_scalars=opt_scalars, model_config=model.cfg.to_json())
    (folder / "last.json.tmp").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / "last.safetensors")
    os.replace(folder / "last.json.tmp", folder / "last.json")


def load_checkpoint(folder: Path, model: CoFusion, opt: torch.optim.Optimizer) -> dict[str, Any]:
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "last.safetensors"))
    meta = json.loads((folder / "last.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    params = [p for grp in opt.param_groups for p in grp["params"]]
    for i, p in enumerate(params):
        st: dict[str, Any] = {}
        for k, v in tensors.items():
            if k.startswith(f"opt.{i}."):
                st[k.split(".", 2)[2]] = v.to(p.device)
        for k, v in meta.get("opt_scalars", {}).items():
            j, name = k.split(".", 1)
            if int(j) == i:
                st[name] = torch.tensor(v)
        if st:
            opt.state[p] = st
    return meta


# ---------------------------------------------------------------------------- the loop
def train(
    model: CoFusion,
    train_scenes: Sequence[Scene],
    val_scenes: Sequence[Scene] = (),
    cfg: TrainConfig | None = None,
    ckpt_dir: str | os.PathLike | None = None,
    resume: bool = False,
    best_path: str | os.PathLike | None = None,
    extra_loss: Callable[[CoFusion], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None,
) -> Iterator[Progress]:
    """Train ``model`` in place, yielding a :class:`Progress` after every step.

    With ``ckpt_dir`` a checkpoint is written every ``ckpt_every`` steps and when the loop is
    stopped; ``resume`` continues from it. The best validation state (by PSNR) is kept in memory
    and loaded into the model at the end (or when stopped). ``extra_loss(model)``, when given,
    is added to every step's loss (e.g. the scene fine-tune's consistency terms). ``loss_fn(out,
    ref, teacher)`` replaces :func:`fusion_loss` (``teacher``: the scenes' teacher patches, or None;
    the distillation's joint loss, :mod:`napari_cofusion.learn.distill`).

    ``device`` ("cpu", "cuda", "cuda:1", ...) is where the model and the scenes live while
    training; the model is back on the CPU when the loop ends or is stopped.
    """
    cfg = cfg or TrainConfig()
    if not train_scenes:
        raise TrainingError("no training scenes")
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick its fastest kernels
    model.to(dev)  # also back to the CPU a model left on a GPU (the GUI can run a session model there)
    train_scenes = [scene_to(sc, dev) for sc in train_scenes]
    val_scenes = [scene_to(sc, dev) for sc in val_scenes]
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    # fused: one kernel over the ~1900 parameter tensors (CPU and CUDA); 124 → 37 ms a step on this CPU
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=True)  # a frozen part (distill --train-only) is left out
    step, best, best_state, t_prev = 0, None, None, 0.0
    folder = Path(ckpt_dir) if ckpt_dir else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    if resume and folder and (folder / "last.json").is_file():
        meta = load_checkpoint(folder, model, opt)
        step, best, t_prev = int(meta["step"]), meta.get("best_val"), float(meta.get("elapsed", 0.0))
        g.manual_seed(cfg.seed + step)
        if folder and (folder / "best.safetensors").is_file():
            from safetensors.torch import load_file

            best_state = load_file(str(folder / "best.safetensors"))
    t0 = time.perf_counter() - t_prev
    amp = train_autocast(dev, cfg.precision)
    model.train()
    loss_val = float("nan")

    def checkpoint() -> None:
        if folder:
            save_checkpoint(folder, model, opt, {"step": step, "best_val": best, "elapsed": time.perf_counter() - t0,
                                                 "train_config": asdict(cfg)})

    def consider(val: dict[str, float]) -> None:
        """Keep the model's state when ``val`` (and, with ``select="consistency"``, the output with
        the step, measured here) beats the best so far."""
        nonlocal best, best_state
        score = validate(model, val_scenes, consistency="auto")["psnr"] if cfg.select == "consistency" else val["psnr"]
        if best is None or score > best.get("score", best["psnr"]):
            best = dict(val, step=step, **({"score": score} if cfg.select == "consistency" else {}))
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if folder:
                from safetensors.torch import save_file

                save_file({k: v.cpu().contiguous() for k, v in best_state.items()}, str(folder / "best.safetensors"))

    try:
        if cfg.val_start and step == 0 and val_scenes:
            val = validate(model, val_scenes)
            consider(val)
            yield Progress(0, cfg.steps, float("nan"), 0.0, time.perf_counter() - t0, val, best, done=False)
        while step < cfg.steps:
            lr_now = _lr_at(step, cfg)
            for grp in opt.param_groups:
                grp["lr"] = lr_now
            lr_b, ms_b, ref_b, base_b, teacher_b = _sample_batch(train_scenes, cfg.batch, cfg.patch, g)
            with amp:
                out = model(lr_b, ms_b, base_b)
            out = out.float()  # the loss (SSIM's sums) in float32
            loss = fusion_loss(out, ref_b, cfg.ssim_weight) if loss_fn is None else loss_fn(out, ref_b, teacher_b)
            if extra_loss is not None:
                loss = loss + extra_loss(model)
            if not torch.isfinite(loss):
                raise TrainingError(f"training diverged at step {step} (loss {float(loss)}); lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            step += 1
            loss_val = float(loss.detach())
            val = None
            if val_scenes and (step % cfg.val_every == 0 or step == cfg.steps):
                val = validate(model, val_scenes)
                consider(val)
            if folder and step % cfg.ckpt_every == 0:
                checkpoint()
            yield Progress(step, cfg.steps, loss_val, lr_now, time.perf_counter() - t0, val, best,
                           done=step >= cfg.steps)
    finally:
        checkpoint()
        if best_state is not None:
            model.load_state_dict(best_state)
        model.to("cpu").eval()
