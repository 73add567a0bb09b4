"""Where a training step's time goes: data, forward, loss, backward, gradient clip, optimizer.

    .venv/bin/python benchmarks/train_step.py [--networks cofusion hyfusion s3rnet csakd]
        [--batch 8] [--patch 64] [--steps 4] [--warmup 2] [--device cpu|cuda] [--compile]

For each network (its default configuration at 31 HS / 3 MS bands, ×4, `cave-x4`, with the glp-hs
base) and each variant of the forward (float32; bf16 autocast, which this CPU runs on its AMX-BF16
tiles through oneDNN; channels_last; both), the median over ``--steps`` steps (after ``--warmup``)
of each phase of the step that ``learn.train.train`` runs, in the same order and with the same
functions (``_sample_batch``, ``fusion_loss``, ``clip_grad_norm_``, fused AdamW). On a GPU every
phase ends with a synchronise, so the times are the phase's own. ``--compile`` adds
``torch.compile`` of the model (float32 and bf16) where this machine can build it.

Run it alone: two processes on 2 cores measure each other.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from napari_cofusion.core.io import read_cube
from napari_cofusion.learn.device import resolve_device
from napari_cofusion.learn.infer import set_channels_last
from napari_cofusion.learn.models import ARCHITECTURES
from napari_cofusion.learn.train import _sample_batch, fusion_loss, make_scene, scene_to, train_autocast

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = (("float32", "float32", False), ("bf16 autocast", "bf16", False), ("channels_last", "float32", True),
            ("bf16 + channels_last", "bf16", True))
PHASES = ("data", "forward", "loss", "backward", "clip", "optimizer")


def profile(model, scenes, dev, precision: str, cl: bool, batch: int, patch: int, steps: int, warmup: int
            ) -> dict[str, float]:
    """Median seconds of each phase of a training step (and of the whole step)."""
    set_channels_last(model, cl)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)
    g = torch.Generator().manual_seed(0)
    amp = train_autocast(dev, precision)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    rows: dict[str, list[float]] = {k: [] for k in PHASES + ("step",)}
    for i in range(warmup + steps):
        t = [time.perf_counter()]
        lr_b, ms_b, ref_b, base_b, _ = _sample_batch(scenes, batch, patch, g)
        if cl:
            lr_b, ms_b, base_b = (x.contiguous(memory_format=torch.channels_last) for x in (lr_b, ms_b, base_b))
        sync()
        t.append(time.perf_counter())
        with amp:
            out = model(lr_b, ms_b, base_b)
        sync()
        t.append(time.perf_counter())
        loss = fusion_loss(out.float(), ref_b)
        sync()
        t.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        t.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        sync()
        t.append(time.perf_counter())
        opt.step()
        sync()
        t.append(time.perf_counter())
        if i >= warmup:
            for k, a, b in zip(PHASES, t, t[1:]):
                rows[k].append(b - a)
            rows["step"].append(t[-1] - t[0])
    return {k: statistics.median(v) for k, v in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--scenes", nargs="+", default=["balloons", "beads"])
    ap.add_argument("--networks", nargs="+", default=["cofusion", "hyfusion", "s3rnet", "csakd"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the model (float32, bf16)")
    a = ap.parse_args()
    dev = resolve_device(a.device)
    if dev.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    scenes = [scene_to(make_scene(read_cube(Path(a.data) / "cave" / f"{n}_ms"), n, {"protocol": "cave-x4"}, True), dev)
              for n in a.scenes]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; batch {a.batch} x {a.patch}²; median of {a.steps} steps "
          f"after {a.warmup}\n")
    print("| network | variant | " + " | ".join(PHASES) + " | step (s) | speed-up |")
    print("|---|---|" + "---|" * (len(PHASES) + 2))
    variants = list(VARIANTS) + ([("compiled", "float32", False), ("compiled + bf16", "bf16", False)]
                                 if a.compile else [])
    for arch in a.networks:
        cls, cfg_cls = ARCHITECTURES[arch]
        base_t = None
        for label, precision, cl in variants:
            torch.manual_seed(0)
            model = cls(cfg_cls(hs_bands=31, ms_bands=3, scale=4)).to(dev)
            if label.startswith("compiled"):
                try:
                    model = torch.compile(model)
                except Exception as exc:  # noqa: BLE001 - report, do not stop the table
                    print(f"| {arch} | {label} | cannot compile: {str(exc).splitlines()[0][:80]} |")
                    continue
            try:
                r = profile(model, scenes, dev, precision, cl, a.batch, a.patch, a.steps, a.warmup)
            except Exception as exc:  # noqa: BLE001 - an op without a kernel for this variant
                print(f"| {arch} | {label} | fails: {str(exc).splitlines()[0][:80]} |")
                continue
            base_t = r["step"] if base_t is None else base_t
            print(f"| {arch} | {label} | " + " | ".join(f"{r[k]:.3f}" for k in PHASES)
                  + f" | {r['step']:.3f} | {base_t / r['step']:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
