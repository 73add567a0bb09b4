"""Fusion on sensors no model was trained for, from the pair alone: the quality table of the
no-reference routes (issue: a learned route that beats the classical baseline).

For each scene of ../shared/data (DC Mall, PaviaU, Salinas-A, Jasper Ridge with IKONOS-like MSIs;
the two CAVE validation scenes seen by an IKONOS-B/G/R-like 3-band camera with a σ 2 px blur), a
pair is simulated at each scale, the reference is kept aside, the PSF, phase and SRF are estimated
from the pair (``estimate_degradation``) and every method is given that estimate, as a user would
be. Columns: bicubic, the global regression (glp-hs radius 0), glp-hs as it was (radius 2),
glp-hs with its regression chosen from the pair (the default now), pnp-gf, MossFuse trained on
the pair (its learned PSF sigma and SRF error printed beside the estimator's), pnp-zsl (pnp-gf
and a residual network trained on the pair degraded once more, where that pair is large enough), and with
``--finetune`` CoFusion fine-tuned on the pair (minutes per scene). The real Houston 2018 pair
gets the no-reference QNR, D_λ, D_s (``--houston``).

    .venv/bin/python benchmarks/scene_finetune.py [--scales 4 8] [--scenes dcmall ...] [--houston]
        [--finetune] [--threads 2] [--out rows.json] [--columns pnp-gf ...] [--replace old_rows.json]
        [--psf weak]
    .venv/bin/python benchmarks/scene_finetune.py --markdown rows.json   # the README's table
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.io as sio

from napari_cofusion.api import Cube, fuse, read_cube, read_cubes
from napari_cofusion.core import metrics
from napari_cofusion.core.errors import CofusionWarning
from napari_cofusion.degrade.estimate import estimate_degradation, estimate_doubts
from napari_cofusion.degrade.simulate import simulate_pair
from napari_cofusion.learn.device import set_threads

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# name -> (file, wavelengths if the file has none (nm), SRF preset, PSF)
SCENES = {
    # HYDICE: 210 bands 400–2500 nm, 191 kept after the water bands: an even 400–2400 nm grid is
    # an approximation that is close in the visible/NIR, where the IKONOS bands lie
    "dcmall": ("dcmall/matlab_dc5.tif", (400.0, 2400.0), "ikonos", "wald"),
    "paviau": ("paviau/paviaU_subimg.mat", None, "rosis-ikonos4", "wald"),
    # AVIRIS: 224 bands, 400–2500 nm
    "salinas_a": ("salinas_a/SalinasA.mat", (400.0, 2500.0), "ikonos", "wald"),
    "jasper_ridge": ("jasper_ridge/jasper_ridge_224.mat", (380.0, 2500.0), "ikonos", "wald"),
    # the CAVE camera here: the IKONOS B, G, R curves over 400–700 nm (NIR falls outside), σ 2 px
    "oil_painting": ("cave/oil_painting_ms", None, "ikonos", "gaussian:2"),
    "paints": ("cave/paints_ms", None, "ikonos", "gaussian:2"),
}
METHODS = (("bicubic", "bicubic", {}), ("global", "glp-hs", {"radius": 0}), ("glp-hs-old", "glp-hs", {"radius": 2}),
           ("glp-hs", "glp-hs", {}), ("pnp-gf", "pnp-gf", {}), ("mossfuse", "mossfuse", {}),
           ("pnp-zsl", "pnp-zsl", {}))


def load(name: str) -> Cube:
    path, wl, _, _ = SCENES[name]
    if name == "jasper_ridge":
        # Y is 224 × 10000, column-major 100 × 100; SlectBands (1-based) the 198 good bands
        m = sio.loadmat(DATA / path)
        good = m["SlectBands"].ravel().astype(int) - 1
        cube = m["Y"].astype(np.float32).reshape(224, 100, 100, order="F")[good]
        return Cube(cube / cube.max(), wavelengths=np.linspace(*wl, 224)[good], name=name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CofusionWarning)  # DC Mall / Salinas-A: a few negative values clipped
        cube = read_cube(DATA / path, **({} if path.startswith("cave/") else {"norm": "max"}))
    if cube.wavelengths is None and wl is not None:
        cube.wavelengths = np.linspace(wl[0], wl[1], cube.bands)
    return cube


PAIR_ONLY = ("pnp-gf", "mossfuse", "pnp-zsl")


def _moss(report: dict, deg, srf: str, ref: Cube) -> dict:
    """MossFuse's learned PSF/SRF beside the project's estimator: sigma, and each SRF's relative
    error against the true matrix of the simulation."""
    from napari_cofusion.core.srf import get_srf

    R_true = get_srf(srf).matrix_for(ref.bands, ref.wavelengths)
    err = lambda R: float(np.linalg.norm(np.asarray(R) - R_true) / np.linalg.norm(R_true))  # noqa: E731
    return {"moss_sigma": report["sigma"], "est_sigma": deg.sigma, "moss_srf_err": err(report["srf"]),
            "est_srf_err": err(deg.srf), "moss_losses_first": report["losses_first"], "moss_losses_last": report["losses_last"]}


def _psf_of(deg) -> dict:
    return {"kind": "array", "kernel_values": np.asarray(deg.kernel).tolist()}


def _timed_fuse(lr, msi, meth, deg, opts):
    """fuse with the estimated degradation; the result, seconds and the warnings it raised."""
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CofusionWarning)
        r = fuse(lr, msi, meth, psf=_psf_of(deg), phase=deg.phase, **opts)
    return r, time.perf_counter() - t0, caught


def run_scene(name: str, scale: int, finetune: bool, steps: int | None, columns: list[str] | None = None,
              psf_override: str | None = None) -> list[dict]:
    ref = load(name)
    _, _, srf, psf = SCENES[name]
    pair = simulate_pair(ref, scale=scale, psf=psf_override or psf, srf=srf)
    lr, msi = pair.lr, pair.msi
    lr.meta.pop("recipe", None)  # the pair alone: no recipe, the degradation is estimated
    X = pair.reference.data
    t0 = time.perf_counter()
    deg = estimate_degradation(lr, msi)
    t_est = time.perf_counter() - t0
    est = {"sigma_est": deg.sigma, "phase_est": deg.phase, "phase_true": pair.recipe.phase,
           "fit_residual": deg.residual, "doubts": estimate_doubts(deg)}
    rows = []
    for col, meth, opts in METHODS:
        if columns is not None and col not in columns:
            continue
        r, secs, caught = _timed_fuse(lr, msi, meth, deg, opts)
        secs += t_est if meth in PAIR_ONLY else 0.0
        m = metrics.full_reference(r.cube.data, X, scale)
        o = r.meta.get("options", {})
        rows.append({"scene": name, "scale": scale, **({"psf": psf_override} if psf_override else {}), "bands": ref.bands, "ms_bands": msi.bands, "size": list(X.shape[1:]),
                     "method": col, **{k: round(float(m[k]), 4) for k in ("psnr", "ssim", "sam", "ergas")},
                     "minutes": round(secs / 60, 3),
                     **({"regression": o.get("bands")} if o.get("bands") and not opts else {}),
                     **({"warnings": [str(w.message) for w in caught]} if caught else {}),
                     **(est if meth == "pnp-gf" else {}),
                     **(_moss(o["report"], deg, srf, ref) if meth == "mossfuse" else {}),
                     **({"network": o["network"]} if meth == "pnp-zsl" else {})})
    if finetune:
        rows.append(_finetune_row(name, scale, pair, X, steps))
    return rows


def _finetune_row(name, scale, pair, X, steps) -> dict:
    from napari_cofusion.learn import selfsup
    from napari_cofusion.learn.method import run_model

    model, info = selfsup.adapt_model(None, pair.lr.bands, pair.msi.bands, scale, base="glp-hs")
    report: dict = {}
    t0 = time.perf_counter()
    for _ in selfsup.finetune_scene(model, pair.lr, pair.msi, selfsup.scene_config(steps), report=report):
        pass
    deg = report["degradation"]
    z = np.clip(run_model(model, pair.lr.data, pair.msi.data, scale, np.asarray(deg["kernel"]), deg["phase"]), 0, 1)
    m = metrics.full_reference(z, X, scale)
    return {"scene": name, "scale": scale, "method": "cofusion-ft", **{k: round(float(m[k]), 4) for k in ("psnr", "ssim", "sam", "ergas")},
            "minutes": round((time.perf_counter() - t0) / 60, 3)}


def houston_rows(columns: list[str] | None = None) -> list[dict]:
    cubes = read_cubes(DATA / "houston2018" / "houston_dataset.mat")
    hs, rgb = max(cubes, key=lambda c: c.bands), min(cubes, key=lambda c: c.bands)
    deg = estimate_degradation(hs, rgb)
    rows = []
    for col, meth, opts in METHODS:
        if columns is not None and col not in columns:
            continue
        r, secs, caught = _timed_fuse(hs, rgb, meth, deg, opts)
        q = metrics.no_reference(r.cube.data, hs.data, rgb.data, np.asarray(deg.kernel), 4, phase=deg.phase)
        rows.append({"scene": "houston2018", "scale": 4, "method": col, **{k: round(float(v), 4) for k, v in q.items()},
                     "minutes": round(secs / 60, 3),
                     **({"fallback": r.meta["options"]["fallback"]} if "fallback" in r.meta.get("options", {}) else {}),
                     **({"warnings": [str(w.message) for w in caught]} if caught else {})})
    return rows


def _print(rows: list[dict]) -> None:
    for r in rows:
        if "psnr" in r:
            reg = sorted((r.get("regression") or {}).items(), key=lambda kv: -kv[1])
            extra = ("  (" + ", ".join(f"{name}×{n}" for name, n in reg) + ")") if reg else ""
            if "sigma_est" in r:
                extra += f"  σ̂ {r['sigma_est']:.3f}, phase {r['phase_est']}/{r['phase_true']}, fit {r['fit_residual']:.2g}"
            if "network" in r:
                net = r["network"]
                extra += (f"  network used: held-out {net['held_out_ratio']:.2f}× pnp-gf's error, {net['train_seconds']:.0f} s"
                          if net["used"] else f"  no network: {net['reason']}")
            if "moss_sigma" in r:
                extra += (f"  learned σ {r['moss_sigma']:.3f} (estimator {r['est_sigma']:.3f}), SRF error "
                          f"{r['moss_srf_err']:.3f} (estimator {r['est_srf_err']:.3f})")
            where = f"{r['scene']} ×{r['scale']}" + (f", PSF {r['psf']}" if r.get("psf") else "")
            print(f"[{where}] {r['method']:11s} PSNR {r['psnr']:6.2f} SSIM {r['ssim']:.4f} "
                  f"SAM {r['sam']:5.2f} ERGAS {r['ergas']:6.2f} {r['minutes'] * 60:6.1f} s{extra}", flush=True)
        else:
            print(f"[{r['scene']}] {r['method']:11s} QNR {r['qnr']:.4f} D_λ {r['d_lambda']:.4f} D_s {r['d_s']:.4f} "
                  f"{r['minutes'] * 60:6.1f} s" + ("  fell back to glp-hs" if "fallback" in r else ""), flush=True)


def summary(rows: list[dict]) -> None:
    """Mean PSNR/SAM per method and scale, and pnp-gf's margin over glp-hs per scene."""
    for scale in sorted({r["scale"] for r in rows if "psnr" in r}):
        sel = [r for r in rows if r.get("scale") == scale and "psnr" in r]
        for meth in dict.fromkeys(r["method"] for r in sel):
            rs = [r for r in sel if r["method"] == meth]
            print(f"[mean ×{scale}] {meth:11s} PSNR {np.mean([r['psnr'] for r in rs]):6.2f} "
                  f"SAM {np.mean([r['sam'] for r in rs]):5.2f} over {len(rs)} scenes", flush=True)
        by = {(r["scene"], r["method"]): r for r in sel}
        over = [by[(s, "glp-hs")]["psnr"] - by[(s, "global")]["psnr"] for s, m in by if m == "glp-hs" and (s, "global") in by]
        if over:
            print(f"[glp-hs ×{scale}] chosen − global regression: PSNR mean {np.mean(over):+.2f} dB, min {min(over):+.2f}",
                  flush=True)
        for route in PAIR_ONLY:
            gains = [by[(s, route)]["psnr"] - by[(s, "glp-hs")]["psnr"] for s, m in by if m == route]
            sams = [by[(s, route)]["sam"] - by[(s, "glp-hs")]["sam"] for s, m in by if m == route]
            if gains:
                print(f"[gain ×{scale}] {route} − glp-hs: PSNR mean {np.mean(gains):+.2f} dB, min {min(gains):+.2f}; "
                      f"SAM mean {np.mean(sams):+.3f}°, worst {max(sams):+.3f}°", flush=True)


def markdown(rows: list[dict]) -> str:
    """The README's table: PSNR / SAM per method, the pair-only routes' minutes; QNR for Houston."""
    cols = list(dict.fromkeys(r["method"] for r in rows))
    out = ["| scene | ×s | " + " | ".join(cols) + " | minutes (" + ", ".join(c for c in cols if c in PAIR_ONLY) + ") |",
           "|---|---|" + "---|" * len(cols) + "---|"]
    keys = list(dict.fromkeys((r["scene"], r["scale"]) for r in rows))
    for scene, scale in keys:
        by = {r["method"]: r for r in rows if (r["scene"], r["scale"]) == (scene, scale)}
        cell = (lambda r: f"{r['psnr']:.2f} / {r['sam']:.2f}") if "psnr" in next(iter(by.values())) else \
            (lambda r: f"QNR {r['qnr']:.4f}")
        mins = ", ".join(f"{by[c]['minutes']:.2f}" for c in cols if c in PAIR_ONLY and c in by)
        out.append(f"| {scene} | {scale} | " + " | ".join(cell(by[c]) if c in by else "" for c in cols) + f" | {mins} |")
    return "\n".join(out)


def _merged(kept: list[dict], new: list[dict]) -> list[dict]:
    """``kept`` with each row that ``new`` re-measured (same scene, scale, method) replaced in place,
    and the rest of ``new`` appended."""
    key = lambda r: (r["scene"], r["scale"], r.get("psf"), r["method"])  # noqa: E731
    fresh = {key(r): r for r in new}
    out = [fresh.pop(key(r), r) for r in kept]
    return out + [r for r in new if key(r) in fresh]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="*", default=list(SCENES), help="none: only --houston")
    ap.add_argument("--scales", nargs="+", type=int, default=[4, 8])
    ap.add_argument("--houston", action="store_true", help="also the real Houston 2018 pair (QNR)")
    ap.add_argument("--finetune", action="store_true", help="also CoFusion fine-tuned on each pair (minutes each)")
    ap.add_argument("--steps", type=int, default=None, help="fine-tune steps (default: the fine-tune's)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the rows to this JSON file")
    ap.add_argument("--markdown", default=None, metavar="ROWS.json", help="only print the table of a saved run")
    ap.add_argument("--columns", nargs="+", default=None, choices=[c for c, _, _ in METHODS],
                    help="run only these columns (default: all)")
    ap.add_argument("--psf", default=None, help="simulate every scene with this PSF instead of its own (e.g. weak: a sharp "
                    "PSF, aliased LR samples); the rows record it")
    ap.add_argument("--replace", default=None, metavar="ROWS.json",
                    help="a saved run whose rows for the re-run scenes, scales and columns are replaced (--out gets the whole table)")
    a = ap.parse_args(argv)
    if a.markdown:
        print(markdown(json.loads(Path(a.markdown).read_text())))
        return 0
    print(f"[bench] torch threads {set_threads(a.threads)}", flush=True)
    rows: list[dict] = []
    kept = json.loads(Path(a.replace).read_text()) if a.replace else []
    for scale in a.scales:
        for name in a.scenes:
            got = run_scene(name, scale, a.finetune, a.steps, a.columns, a.psf)
            _print(got)
            rows += got
            if a.out:
                Path(a.out).write_text(json.dumps(_merged(kept, rows), indent=1))
    if a.houston:
        got = houston_rows(a.columns)
        _print(got)
        rows += got
    rows = _merged(kept, rows)
    summary(rows)
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
