"""Speed protocol of shared/PROTOCOL.md.

    .venv/bin/python benchmarks/speed.py [--weights NAME|PATH] [--scene paints] [--repeats 5]

1. Whole job: fuse one CAVE scene (128×128×31 LRHSI + 512×512×3 HRMSI → 512×512×31, ×4) file to
   file with the CLI, as a user runs it: wall time and peak resident memory of the process, for
   bicubic, the classical baseline (glp-hs) and CoFusion, and CoFusion's ratio to each.
2. Network alone: median forward latency on a 128×128 HR patch (×4) after warm-up, on the CPU with
   all cores, and the parameter count.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from napari_cofusion.core.io import read_cube, write_cube
from napari_cofusion.degrade.simulate import simulate_pair

ROOT = Path(__file__).resolve().parents[1]


def run_job(cli: str, args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one CLI process."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    r = subprocess.run([cli, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {r.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--scene", default="paints")
    ap.add_argument("--weights", default=None, help="CoFusion weights (default: the shipped cave-x4 weights)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    cli = str(Path(sys.executable).with_name("napari-cofusion"))
    tmp = Path(tempfile.mkdtemp(prefix="cofusion-bench-"))
    try:
        ref = read_cube(Path(a.data) / "cave" / f"{a.scene}_ms")
        pair = simulate_pair(ref, protocol="cave-x4")
        write_cube(pair.lr, tmp / "lr.hdr")
        write_cube(pair.msi, tmp / "msi.hdr")
        # cofusion as a user runs it (with its default data-consistency step), and without the step
        # (row label, method, extra fuse flags)
        methods = [("bicubic", "bicubic", []), ("glp-hs", "glp-hs", []), ("cofusion", "cofusion", []),
                   ("cofusion, consistency off", "cofusion", ["--consistency", "off"])]
        print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
        print(f"\n## Whole job, file to file ({a.scene}: LRHSI {pair.lr.shape} + HRMSI {pair.msi.shape} → ×4), "
              f"median of {a.repeats} runs (each run its own process; peak RSS is the largest over runs)\n")
        res = {}
        for m, method, flags in methods:
            walls, peaks = [], []
            for i in range(a.repeats):
                out = tmp / f"{method}-{len(res)}-{i}.hdr"
                extra = ["--weights", a.weights] if (method == "cofusion" and a.weights) else []
                w, p = run_job(cli, ["fuse", "--lr", str(tmp / "lr.hdr"), "--msi", str(tmp / "msi.hdr"),
                                     "--method", method, "--psf", "weak", "--out", str(out), *extra, *flags])
                walls.append(w)
                peaks.append(p)
            res[m] = (statistics.median(walls), max(peaks))
        print("| method | wall (s) | peak RSS (MiB) | wall / bicubic | wall / glp-hs |")
        print("|---|---|---|---|---|")
        for m, (w, p) in res.items():
            print(f"| {m} | {w:.2f} | {p:.0f} | {w / res['bicubic'][0]:.2f} | {w / res['glp-hs'][0]:.2f} |")

        from napari_cofusion.learn.method import load_model_for

        model, card, path = load_model_for(a.weights, 31, 3, 4)
        model.eval()
        torch.set_num_threads(os.cpu_count() or 1)
        lr = torch.rand(1, 31, 32, 32)
        msi = torch.rand(1, 3, 128, 128)
        base = torch.rand(1, 31, 128, 128) if model.cfg.base == "glp-hs" else None
        with torch.inference_mode():
            for _ in range(3):
                model(lr, msi, base)
            times = []
            for _ in range(10):
                t0 = time.perf_counter()
                model(lr, msi, base)
                times.append(time.perf_counter() - t0)
        print(f"\n## Network alone ({path.name})\n")
        print(f"- parameters: {model.n_params():,}")
        print(f"- forward, 128×128 HR patch ×4, median of 10 after 3 warm-up: {statistics.median(times) * 1000:.1f} ms "
              f"({torch.get_num_threads()} threads)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
