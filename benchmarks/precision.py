"""bf16 and channels_last on this CPU, for the shipped networks (CoFusion, the CSAKD student,
HyFusion, S³RNet).

    .venv/bin/python benchmarks/precision.py [--scenes oil_painting paints] [--repeats 3]
        [--networks cofusion csakd hyfusion s3rnet]

For each network and each variant (float32; bf16 autocast, which this CPU runs on its AMX-BF16
tiles through oneDNN; channels_last memory format; both), on the CAVE validation scenes under
cave-x4 with the shipped weights: the median forward time of a whole 512² scene and the mean PSNR
of the network's output, and the change from float32. A variant is worth adopting only if its
PSNR stays within 0.01 dB of float32. Run it alone (2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from napari_cofusion.core.io import read_cube
from napari_cofusion.core.metrics import psnr
from napari_cofusion.learn.infer import set_channels_last
from napari_cofusion.learn.method import load_model_for
from napari_cofusion.learn.train import make_scene

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = (("float32", False, False), ("bf16 autocast", True, False), ("channels_last", False, True),
            ("bf16 + channels_last", True, True))


def run(model, sc, bf16: bool, cl: bool) -> tuple[np.ndarray, float]:
    lr, msi, base = sc.lr[None], sc.msi[None], sc.base[None]
    if cl:
        lr, msi, base = (t.contiguous(memory_format=torch.channels_last) for t in (lr, msi, base))
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        t0 = time.perf_counter()
        out = model(lr, msi, base)
        dt = time.perf_counter() - t0
    return out.float().clamp(0, 1)[0].numpy(), dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--scenes", nargs="+", default=["oil_painting", "paints"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--networks", nargs="+", default=["cofusion", "csakd", "hyfusion", "s3rnet"])
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    scenes = [make_scene(read_cube(Path(a.data) / "cave" / f"{n}_ms"), n, {"protocol": "cave-x4"}, True)
              for n in a.scenes]
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, oneDNN bf16 "
          f"{'supported' if torch.backends.mkldnn.is_available() else 'absent'}; scenes {', '.join(a.scenes)}\n")
    print("| network | variant | forward, 512² scene (s) | PSNR (dB) | Δ PSNR vs float32 (dB) | speed-up |")
    print("|---|---|---|---|---|---|")
    for arch in a.networks:
        try:
            model, _card, path = load_model_for(None, 31, 3, 4, architecture=arch)
        except Exception as exc:  # noqa: BLE001
            print(f"| {arch} | ({exc}) | | | | |")
            continue
        model.eval()
        ref_psnr, ref_t = None, None
        for label, bf16, cl in VARIANTS:
            set_channels_last(model, cl)
            m = model
            try:
                run(m, scenes[0], bf16, cl)  # warm-up (oneDNN picks its kernels)
            except RuntimeError as exc:  # an op without a bf16 kernel for these dtypes
                print(f"| {arch} ({path.stem}) | {label} | fails: {str(exc).splitlines()[0][:80]} | | | |")
                continue
            times, vals = [], []
            for sc in scenes:
                z, _ = run(m, sc, bf16, cl)
                vals.append(psnr(z, sc.ref.numpy()))
                times += [run(m, sc, bf16, cl)[1] for _ in range(a.repeats)]
            p, t = float(np.mean(vals)), statistics.median(times)
            ref_psnr = p if ref_psnr is None else ref_psnr
            ref_t = t if ref_t is None else ref_t
            print(f"| {arch} ({path.stem}) | {label} | {t:.2f} | {p:.3f} | {p - ref_psnr:+.3f} | {ref_t / t:.2f}× |")


if __name__ == "__main__":
    main()
