"""Speed protocol of shared/PROTOCOL.md, all methods in one run.

    .venv/bin/python benchmarks/speed.py [--scene paints] [--repeats 3] [--pairs 6]

Run it alone: on a 2-core machine anything running beside it (a training, a test suite) inflates
every figure.

1. Whole job: fuse one CAVE scene (128×128×31 LRHSI + 512×512×3 HRMSI → 512×512×31, ×4) file to
   file with the CLI, as a user runs it: wall time and peak resident memory of the process for
   bicubic, glp-hs (the registered default, which chooses its regression from the pair), the fixed
   radius-2 glp-hs (the learned methods' base: ``--method glp-hs`` cannot ask for it, so it is
   timed as the CoFusion base in-process, see below), CoFusion and the CSAKD student, and each
   one's ratio to glp-hs.
2. Networks alone: median forward latency on a 128×128 HR patch (×4) after warm-up, on the CPU
   with all cores, parameter counts and FLOPs (torch's FLOP counter, one 512² scene).
3. Many scenes: ``fuse --pairs`` over N simulated pairs with 1 and 2 dask worker processes
   (pairs a minute).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_cofusion.core.io import read_cube, write_cube
from napari_cofusion.degrade.simulate import save_pair, simulate_pair

ROOT = Path(__file__).resolve().parents[1]


def run_job(cli: str, args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one CLI process, each run in a fresh helper process (the
    children's ru_maxrss is a running maximum, so it is read where this run is the only child)."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); w = time.perf_counter() - t; "
            "sys.exit(r.stderr) if r.returncode else print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", code, cli, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {r.stderr.strip()}")
    w, kb = r.stdout.split()
    return float(w), float(kb) / 1024.0


def flops(model, lr, msi, base) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(lr, msi, base)
    return fc.get_total_flops()


def latency(model, repeats: int = 10) -> float:
    lr, msi = torch.rand(1, 31, 32, 32), torch.rand(1, 3, 128, 128)
    base = torch.rand(1, 31, 128, 128)
    with torch.inference_mode():
        for _ in range(3):
            model(lr, msi, base)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(lr, msi, base)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--scene", default="paints")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=6, help="pairs for the many-scene throughput (0: skip)")
    a = ap.parse_args()
    cli = str(Path(sys.executable).with_name("napari-cofusion"))
    tmp = Path(tempfile.mkdtemp(prefix="cofusion-bench-"))
    from napari_cofusion.learn.method import load_model_for

    try:
        ref = read_cube(Path(a.data) / "cave" / f"{a.scene}_ms")
        pair = simulate_pair(ref, protocol="cave-x4")
        write_cube(pair.lr, tmp / "lr.hdr")
        write_cube(pair.msi, tmp / "msi.hdr")
        print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
        print(f"\n## Whole job, file to file ({a.scene}: LRHSI {pair.lr.shape} + HRMSI {pair.msi.shape} → ×4), "
              f"median of {a.repeats} runs, each its own process; the largest peak RSS of those runs\n")
        methods = [("bicubic", "bicubic", []), ("glp-hs", "glp-hs", []), ("cofusion", "cofusion", []),
                   ("cofusion, consistency off", "cofusion", ["--consistency", "off"]), ("csakd", "csakd", []),
                   ("csakd, consistency off", "csakd", ["--consistency", "off"])]
        res = {}
        for label, method, flags in methods:
            walls, peaks = [], []
            for i in range(a.repeats):
                out = tmp / f"{method}-{len(res)}-{i}.hdr"
                w, p = run_job(cli, ["fuse", "--lr", str(tmp / "lr.hdr"), "--msi", str(tmp / "msi.hdr"),
                                     "--method", method, "--psf", "weak", "--out", str(out), *flags])
                walls.append(w)
                peaks.append(p)
            res[label] = (statistics.median(walls), max(peaks))
        # the fixed radius-2 glp-hs the networks refine, in-process (what --method glp-hs ran before it
        # chose its regression): its share of the learned jobs
        from napari_cofusion.learn.train import classical_base

        kernel = pair.recipe.kernel()
        t = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            classical_base(pair.lr.data, pair.msi.data, kernel, 4, pair.recipe.decimation_phase)
            t.append(time.perf_counter() - t0)
        base_s = statistics.median(t)
        g = res["glp-hs"][0]
        print("| method | wall (s) | peak RSS (MiB) | wall / glp-hs |")
        print("|---|---|---|---|")
        for m, (w, p) in res.items():
            print(f"| {m} | {w:.2f} | {p:.0f} | {w / g:.2f} |")
        print(f"\nThe fixed radius-2 glp-hs (the networks' base) takes {base_s:.2f} s in-process; a process that "
              f"starts, reads, runs it and writes takes about bicubic's job + that = "
              f"{res['bicubic'][0] + base_s:.2f} s, so csakd's job is "
              f"{res['csakd'][0] / (res['bicubic'][0] + base_s):.2f}× that and cofusion's "
              f"{res['cofusion'][0] / (res['bicubic'][0] + base_s):.2f}×.")

        torch.set_num_threads(os.cpu_count() or 1)
        print("\n## Networks alone\n")
        print("| network | weights | parameters | GFLOP (512² scene) | forward 128² patch (ms) |")
        print("|---|---|---|---|---|")
        lr_t, msi_t = torch.from_numpy(pair.lr.data)[None], torch.from_numpy(pair.msi.data)[None]
        base_t = torch.rand(1, 31, 512, 512)
        for arch in ("cofusion", "csakd"):
            try:
                model, _card, path = load_model_for(None, 31, 3, 4, architecture=arch)
            except Exception as exc:  # noqa: BLE001 - a missing weights file is reported, not fatal
                print(f"| {arch} | ({exc}) | | | |")
                continue
            model.eval()
            print(f"| {arch} | {path.name} | {model.n_params():,} | {flops(model, lr_t, msi_t, base_t) / 1e9:.0f} | "
                  f"{latency(model) * 1000:.1f} |")

        if a.pairs:
            print(f"\n## Many scenes: `fuse --pairs` over {a.pairs} simulated CAVE pairs (×4, csakd)\n")
            root = tmp / "pairs"
            names = sorted(p.name for p in (Path(a.data) / "cave").iterdir() if p.is_dir())[: a.pairs]
            for n in names:
                save_pair(simulate_pair(read_cube(Path(a.data) / "cave" / n), protocol="cave-x4"), root / n)
            print("| workers | wall (s) | pairs a minute |")
            print("|---|---|---|")
            for workers in (1, 2):
                out = tmp / f"many-{workers}"
                out.mkdir()
                w, _ = run_job(cli, ["fuse", "--pairs", str(root), "--out", str(out), "--method", "csakd",
                                     "--workers", str(workers)])
                print(f"| {workers} | {w:.1f} | {a.pairs / w * 60:.1f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
