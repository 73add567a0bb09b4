"""``napari-cofusion`` command line: the same core as the plugin.

Subcommands: ``simulate``, ``fuse``, ``evaluate``, ``demo``. Bad input exits with status 2 and
a one-line error naming the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from napari_cofusion.core.errors import CubeError

__all__ = ["main"]


def _fmt_metrics(d: dict[str, float]) -> str:
    return "  ".join(f"{k.upper()} {v:.4f}" for k, v in d.items())


def _cmd_simulate(a: argparse.Namespace) -> int:
    from napari_cofusion.core.io import read_cube
    from napari_cofusion.degrade.simulate import save_pair, simulate_pair

    ref = read_cube(a.ref, **({"norm": _norm(a.norm)} if a.norm else {}))
    kw: dict[str, Any] = {}
    if a.protocol:
        kw["protocol"] = a.protocol
    else:
        kw.update(scale=a.scale, psf=a.psf, srf=a.srf)
    pair = simulate_pair(ref, snr_db=a.snr, seed=a.seed, **kw)
    written = save_pair(pair, a.out_dir, fmt=a.format, overwrite=a.overwrite)
    for k, v in written.items():
        print(f"{k}: {v}")
    return 0


def _norm(v: str) -> Any:
    try:
        return float(v)
    except ValueError:
        return v


def _read_pair(a: argparse.Namespace) -> tuple[Any, Any]:
    from napari_cofusion.core.io import read_cube

    lr = read_cube(a.lr)
    msi = read_cube(a.msi)
    recipe_path = Path(a.recipe) if getattr(a, "recipe", None) else Path(a.lr).parent / "recipe.json"
    if recipe_path.is_file():  # written by `simulate`: the PSF and phase that made the pair
        try:
            lr.meta["recipe"] = json.loads(recipe_path.read_text())
        except json.JSONDecodeError as exc:
            raise CubeError(f"{recipe_path}: not valid JSON ({exc})") from None
    return lr, msi


def _cmd_fuse(a: argparse.Namespace) -> int:
    from napari_cofusion.degrade.consistency import describe_consistency
    from napari_cofusion.core.io import write_cube
    from napari_cofusion.api import fuse

    out = Path(a.out)
    if out.exists() and not a.overwrite:
        raise CubeError(f"{out}: already exists; choose another name or pass --overwrite")
    lr, msi = _read_pair(a)
    opts: dict[str, Any] = {}
    if a.weights:
        opts["weights"] = a.weights
    if getattr(a, "device", None):
        opts["device"] = a.device
    res = fuse(lr, msi, a.method, psf=a.psf, consistency=a.consistency, **opts)
    res.cube.name = out.stem
    write_cube(res.cube, out, overwrite=a.overwrite)
    print(f"fused with {a.method} (x{res.scale}) in {res.seconds:.2f} s -> {out}")
    if res.cube.meta.get("weights"):
        print(f"weights: {res.cube.meta['weights']}")
    if res.consistency:
        print(f"data consistency: {describe_consistency(res.consistency)}")
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from napari_cofusion.core import metrics
    from napari_cofusion.core.io import read_cube
    from napari_cofusion.degrade.simulate import PSF, infer_scale

    fused = read_cube(a.fused)
    if a.ref:
        ref = read_cube(a.ref)
        scale = a.scale
        if scale is None:
            if a.lr:
                scale = infer_scale(read_cube(a.lr).shape, fused.shape)
            else:
                raise CubeError("--scale is needed for ERGAS (or give --lr to infer it)")
        res = metrics.full_reference(fused.data, ref.data, scale)
    else:
        if not (a.lr and a.msi):
            raise CubeError("give --ref for full-reference metrics, or --lr and --msi for D_lambda, D_s, QNR")
        lr, msi = read_cube(a.lr), read_cube(a.msi)
        scale = infer_scale(lr.shape, fused.shape)
        kernel = PSF.parse(a.psf).kernel(scale)
        res = metrics.no_reference(fused.data, lr.data, msi.data, kernel, scale)
    print(json.dumps(res, indent=2) if a.json else _fmt_metrics(res))
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    """Simulate a pair from the bundled CAVE crop, fuse it with every classical method, print metrics."""
    from napari_cofusion.core import metrics
    from napari_cofusion.api import fuse
    from napari_cofusion.samples import bundled_reference
    from napari_cofusion.degrade.simulate import simulate_pair

    ref = bundled_reference()
    pair = simulate_pair(ref, protocol=a.protocol)
    print(f"reference: {ref.name} {ref.shape} ({ref.source})")
    print(f"simulated with {a.protocol}: LRHSI {pair.lr.shape}, HRMSI {pair.msi.shape}")
    for m in a.methods:
        r = fuse(pair.lr, pair.msi, m)
        print(f"{m:>10}: {_fmt_metrics(metrics.full_reference(r.cube.data, pair.reference.data, r.scale))}  ({r.seconds:.2f} s)")
    return 0


CAVE_VALIDATION = ("oil_painting", "paints")


def _cmd_train(a: argparse.Namespace) -> int:
    """Train CoFusion on CAVE-style scene folders under a named protocol; write weights + card."""
    import time

    import numpy as np
    import torch

    from napari_cofusion.core import metrics
    from napari_cofusion.core.io import read_cube
    from napari_cofusion.api import fuse
    from napari_cofusion.learn.models import CoFusion, CoFusionConfig
    from napari_cofusion.degrade.simulate import protocol_recipe, simulate_pair
    from napari_cofusion.learn.train import TrainConfig, train, validate
    from napari_cofusion.learn.device import resolve_device, set_threads
    from napari_cofusion.learn.weights import save_weights

    threads = set_threads(a.threads)
    device = resolve_device(a.device)
    data = Path(a.data)
    if not data.is_dir():
        raise CubeError(f"{data}: training data folder not found")
    folders = sorted(p for p in data.iterdir() if p.is_dir())
    val_names = set(a.val or CAVE_VALIDATION)
    tr = [p for p in folders if p.name.removesuffix("_ms") not in val_names]
    va = [p for p in folders if p.name.removesuffix("_ms") in val_names]
    if a.train_scenes:
        tr = [p for p in tr if p.name.removesuffix("_ms") in set(a.train_scenes)]
    if not tr:
        raise CubeError(f"{data}: no training scenes")
    out = Path(a.out)
    if out.with_suffix(".safetensors").exists() and not a.overwrite:
        raise CubeError(f"{out.with_suffix('.safetensors')}: already exists; choose another name or pass --overwrite")
    recipe = {"protocol": a.protocol}
    proto = protocol_recipe(a.protocol)
    print(f"[train] {len(tr)} training and {len(va)} validation scenes, {a.protocol}, {threads} threads", flush=True)
    t0 = time.perf_counter()
    with_base = a.base == "glp-hs"
    variants = [(k, f) for f in (False, True) for k in range(4)] if a.augment else [(0, False)]
    jobs = [(str(p), a.crop, recipe, with_base, k, f) for p in tr for k, f in variants]
    jobs += [(str(p), a.crop, recipe, with_base, 0, False) for p in va]
    built = _build_scenes(jobs, a.workers)
    train_scenes, val_scenes = built[: len(built) - len(va)], built[len(built) - len(va):]
    baseline, baseline_dc = [], []
    for p in va:
        pair = simulate_pair(_read_ref(p, a.crop), **recipe)
        for rows, mode in ((baseline, "off"), (baseline_dc, "auto")):
            z = fuse(pair.lr, pair.msi, "glp-hs", consistency=mode).cube.data
            rows.append(metrics.full_reference(z, pair.reference.data, proto["scale"]))
    print(f"[train] scenes ready in {time.perf_counter() - t0:.0f} s ({len(train_scenes)} with augmentation)", flush=True)
    ref0 = train_scenes[0]
    cfg = CoFusionConfig(hs_bands=ref0.ref.shape[0], ms_bands=ref0.msi.shape[0], scale=proto["scale"], base=a.base,
                         **({"depths": tuple(a.depths)} if a.depths else {}))
    model = CoFusion(cfg)
    tcfg = TrainConfig(steps=a.steps, batch=a.batch, patch=a.patch, lr=a.lr, seed=a.seed, val_every=a.val_every,
                       ckpt_every=a.ckpt_every, warmup=min(a.warmup, max(a.steps // 10, 1)))
    print(f"[train] CoFusion {model.n_params():,} parameters; {tcfg}", flush=True)
    last = None
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"[train] device: {dev_name}", flush=True)
    loop = train(model, train_scenes, val_scenes, tcfg, ckpt_dir=a.ckpt_dir, resume=a.resume, device=device)
    _sigterm_as_interrupt()
    try:
        for prog in loop:
            last = prog
            if prog.step % a.log_every == 0 or prog.val or prog.done:
                msg = f"[train] step {prog.step}/{prog.total} loss {prog.loss:.5f} lr {prog.lr:.2e} {prog.elapsed:.0f} s"
                if prog.val:
                    msg += f" | val PSNR {prog.val['psnr']:.3f} SAM {prog.val['sam']:.3f}"
                print(msg, flush=True)
    except KeyboardInterrupt:  # Ctrl-C: stop, keep the best state so far, still write the weights
        loop.close()
        print(f"[train] stopped at step {last.step if last else 0}", flush=True)
    def mean(rows: list[dict[str, float]]) -> dict[str, float] | None:
        return {k: float(np.mean([b[k] for b in rows])) for k in rows[0]} if rows else None

    base_mean = mean(baseline)
    # the network with fuse()'s default data-consistency step, and the baseline with the same step
    val_dc = validate(model, val_scenes, consistency="auto") if val_scenes and last else None
    ref_cube = read_cube(tr[0])
    card = {
        "architecture": "cofusion",
        "config": cfg.to_json(),
        "hs_bands": cfg.hs_bands,
        "hs_wavelengths_nm": None if ref_cube.wavelengths is None else ref_cube.wavelengths.tolist(),
        "ms_bands": cfg.ms_bands,
        "srf": proto["srf"],
        "scale": cfg.scale,
        "psf": proto["psf"],
        "protocol": a.protocol,
        "training_data": {"root": str(data), "train_scenes": [p.name for p in tr], "val_scenes": [p.name for p in va],
                           "augmentation": "8 dihedral variants of each reference" if a.augment else "none"},
        "training": {**tcfg.__dict__, "steps_done": last.step if last else 0,
                     "seconds": round(last.elapsed, 1) if last else 0.0, "threads": threads, "device": dev_name},
        "validation": last.best_val if last else None,
        "validation_glp_hs": base_mean,
        "validation_consistency": val_dc,
        "validation_glp_hs_consistency": mean(baseline_dc),
    }
    paths = save_weights(model, out, card, overwrite=a.overwrite)
    print(f"[train] wrote {paths[0]} and {paths[1]}", flush=True)
    if card["validation"]:
        v = card["validation"]
        print(f"[train] best validation: PSNR {v['psnr']:.3f} SAM {v['sam']:.3f} (glp-hs: PSNR "
              f"{base_mean['psnr']:.3f} SAM {base_mean['sam']:.3f})" if base_mean else "", flush=True)
    return 0


def _read_ref(path: "str | Path", crop: int | None):
    """A training/validation reference, cropped to ``crop``² when asked (quick runs)."""
    import numpy as np

    from napari_cofusion.core.io import read_cube

    ref = read_cube(path)
    return ref.with_data(np.ascontiguousarray(ref.data[:, :crop, :crop])) if crop else ref


def _build_one_scene(job: tuple) -> tuple:
    """Worker for :func:`_build_scenes`: read a reference, simulate one dihedral variant."""
    from napari_cofusion.learn.train import make_scene

    path, crop, recipe, with_base, k, f = job
    return make_scene(_read_ref(path, crop), Path(path).name, recipe, with_base, k, f)


def _build_scenes(jobs: list[tuple], workers: int | None) -> list:
    """Simulate the training/validation scenes, in ``workers`` processes when more than one."""
    workers = min(workers or 1, len(jobs))
    if workers <= 1:
        return [_build_one_scene(j) for j in jobs]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_build_one_scene, jobs))


def _sigterm_as_interrupt() -> None:
    """Let SIGTERM (and SIGINT, which a background job started by a script ignores) stop a long
    run like Ctrl-C does, so that it still writes its weights."""
    import signal

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread
            pass


def _auto(v: str | None) -> str | None:
    return None if v in (None, "", "auto", "estimate") else v


def _cmd_estimate(a: argparse.Namespace) -> int:
    import numpy as np

    from napari_cofusion.degrade.estimate import estimate_degradation
    from napari_cofusion.core.io import read_cube, write_json

    lr, msi = read_cube(a.lr), read_cube(a.msi)
    deg = estimate_degradation(lr, msi, psf=_auto(a.psf), srf=_auto(a.srf), free_kernel=a.free_kernel)
    print(deg.describe())
    np.set_printoptions(precision=4, suppress=True, linewidth=120)
    print("SRF (rows: MSI bands, columns: HS bands):")
    print(deg.srf)
    if a.json:
        write_json(deg.to_json(), Path(a.json), overwrite=a.overwrite)
        print(f"wrote {a.json}")
    return 0


def _cmd_finetune(a: argparse.Namespace) -> int:
    from napari_cofusion.core.io import read_cube
    from napari_cofusion.learn.selfsup import DEFAULT_CONSISTENCY, adapt_model, finetune_scene, scene_config
    from napari_cofusion.learn.device import resolve_device, set_threads
    from napari_cofusion.learn.weights import load_weights, resolve_weights, save_weights

    device = resolve_device(a.device)
    out = Path(a.out_weights).with_suffix(".safetensors")
    if (out.exists() or out.with_suffix(".json").exists()) and not a.overwrite:
        raise CubeError(f"{out}: already exists; choose another name or pass --overwrite")
    if not out.parent.is_dir():
        raise CubeError(f"{out.parent}: folder not found")
    threads = set_threads(a.threads)
    lr, msi = read_cube(a.lr), read_cube(a.msi)
    from napari_cofusion.api import check_pair

    scale = check_pair(lr, msi)
    start, start_name = None, "new model"
    if a.weights != "new":
        try:
            path = resolve_weights(a.weights, lr.bands, msi.bands, scale)
        except CubeError:
            if a.weights:
                raise
            path = None  # no shipped weights for these band counts: any shipped CoFusion body, else new
            from napari_cofusion.learn.weights import list_weights

            shipped = list_weights()
            if shipped:
                path = shipped[0]
        if path is not None:
            start, _card = load_weights(path)
            start_name = str(path)
    model, info = adapt_model(start, lr.bands, msi.bands, scale)
    print(f"[finetune] {lr.name}: {lr.bands} bands {lr.shape[1]}×{lr.shape[2]}; {msi.name}: {msi.bands} bands "
          f"{msi.shape[1]}×{msi.shape[2]}; ×{scale}; {threads} threads", flush=True)
    print(f"[finetune] start: {start_name} ({info['mode']}"
          + (f", {len(info['reinitialised'])} band-count layers re-initialised" if info["reinitialised"] else "") + ")",
          flush=True)
    cfg = scene_config(a.steps, a.learning_rate, a.batch, a.patch, a.seed)
    report: dict[str, Any] = {}
    last = None
    consistency = DEFAULT_CONSISTENCY if a.consistency is None else a.consistency
    loop = finetune_scene(model, lr, msi, cfg, psf=_auto(a.psf), srf=_auto(a.srf), consistency=consistency,
                          report=report, device=device)
    _sigterm_as_interrupt()
    try:
        for item in loop:
            if isinstance(item, str):
                print(f"[finetune] {item}", flush=True)
                continue
            last = item
            if item.step % max(a.log_every, 1) == 0 or item.done:
                print(f"[finetune] step {item.step}/{item.total} loss {item.loss:.5f} lr {item.lr:.2e} "
                      f"{item.elapsed:.0f} s", flush=True)
    except KeyboardInterrupt:
        loop.close()
        print(f"[finetune] stopped at step {last.step if last else 0}", flush=True)
    deg = report.get("degradation")
    if deg is None or last is None:
        raise CubeError("stopped before the first step: no weights written")
    card = {
        "architecture": "cofusion", "config": model.cfg.to_json(),
        "hs_bands": lr.bands, "hs_wavelengths_nm": None if lr.wavelengths is None else lr.wavelengths.tolist(),
        "ms_bands": msi.bands, "srf": deg["srf"], "scale": scale, "psf": deg["psf"], "protocol": None,
        "degradation": deg,
        "training_mode": "scene-only: reduced-resolution self-supervised fine-tune (napari-cofusion finetune)",
        "training_data": {"lr": str(a.lr), "msi": str(a.msi)},
        "training": {"start_weights": start_name, "start_mode": info["mode"],
                     "reinitialised": info["reinitialised"], "steps": cfg.steps, "steps_done": last.step,
                     "seconds": round(last.elapsed, 1), "lr": cfg.lr, "batch": a.batch,
                     "patch": report.get("patch"), "consistency": consistency,
                     "consistency_patch": report.get("consistency_patch"), "threads": threads, "device": str(device),
                     "reduced_l1_before": report.get("reduced_before"), "reduced_l1_after": report.get("reduced_after")},
    }
    paths = save_weights(model, out, card, overwrite=a.overwrite)
    print(f"[finetune] reduced-resolution L1 {report.get('reduced_before', float('nan')):.5f} -> "
          f"{report.get('reduced_after', float('nan')):.5f}", flush=True)
    print(f"[finetune] wrote {paths[0]} and {paths[1]}; fuse with: napari-cofusion fuse --lr {a.lr} --msi {a.msi} "
          f"--method cofusion --weights {paths[0]} --out FUSED", flush=True)
    return 0


def _cmd_gui(a: argparse.Namespace) -> int:
    from napari_cofusion.gui.launch import run

    return run(a.files, None if a.sample == "none" else a.sample, a.fuse, a.screenshot)


def build_parser() -> argparse.ArgumentParser:
    from napari_cofusion.degrade.simulate import PROTOCOLS
    from napari_cofusion.core.srf import srf_presets

    p = argparse.ArgumentParser(prog="napari-cofusion", description="Hyperspectral / multispectral image fusion")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("simulate", help="simulate an LRHSI/HRMSI pair from a reference cube (Wald's protocol)")
    s.add_argument("--ref", required=True, help="reference cube (ENVI .hdr, .mat, .tif, .npy/.npz or band-PNG folder)")
    s.add_argument("--scale", type=int, default=4)
    s.add_argument("--psf", default="weak", help="weak | wald | gaussian:SIGMA | gaussian:SIZE:SIGMA | box[:SIZE] | kernel file")
    s.add_argument("--srf", default="nikon-d700", help=f"{' | '.join(srf_presets())} | SRF file (.csv/.npy/.mat)")
    s.add_argument("--protocol", choices=sorted(PROTOCOLS), help="named preset (overrides --scale/--psf/--srf)")
    s.add_argument("--snr", type=float, default=None, help="add Gaussian noise at this SNR (dB)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--norm", default=None, help="normalisation of the reference: auto | max | a number")
    s.add_argument("--format", default=".hdr", choices=[".hdr", ".tif", ".npy", ".npz"])
    s.add_argument("--out-dir", required=True)
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_cmd_simulate)

    f = sub.add_parser("fuse", help="fuse an LRHSI with an HRMSI")
    f.add_argument("--lr", required=True)
    f.add_argument("--msi", required=True)
    f.add_argument("--method", default="glp-hs", help="bicubic | glp-hs | cofusion (see --list-methods)")
    f.add_argument("--weights", default=None, help="weights name in weights/ or a .safetensors path (learned methods)")
    f.add_argument("--psf", default=None, help="PSF relating LR to HR (default: recipe.json beside --lr, else weak)")
    f.add_argument("--recipe", default=None, help="recipe.json of a simulated pair (default: beside --lr)")
    f.add_argument("--device", default=None, help="cpu (default) or cuda for learned methods")
    f.add_argument("--consistency", choices=["auto", "on", "off"], default=None,
                   help="project the result onto the LRHSI and HRMSI it came from (default: the method's; auto for "
                        "cofusion: when the PSF and a fitted SRF explain the pair, off for the baselines)")
    f.add_argument("--out", required=True)
    f.add_argument("--overwrite", action="store_true")
    f.set_defaults(func=_cmd_fuse)

    e = sub.add_parser("evaluate", help="quality metrics of a fused cube")
    e.add_argument("--fused", required=True)
    e.add_argument("--ref", default=None)
    e.add_argument("--scale", type=int, default=None)
    e.add_argument("--lr", default=None)
    e.add_argument("--msi", default=None)
    e.add_argument("--psf", default="weak")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_cmd_evaluate)

    t = sub.add_parser("train", help="train CoFusion on CAVE-style scenes under a protocol")
    t.add_argument("--data", required=True, help="folder of scene folders (e.g. ../shared/data/cave)")
    t.add_argument("--protocol", default="cave-x4", choices=sorted(PROTOCOLS))
    t.add_argument("--val", nargs="*", default=None, help="validation scene names (default: oil_painting paints)")
    t.add_argument("--train-scenes", nargs="*", default=None, help="restrict training to these scene names")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--patch", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (1e-4 trains the full model; larger ones sat at the base, docs/model.md)")
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--base", default="glp-hs", choices=["glp-hs", "bicubic"], help="global residual of the network")
    t.add_argument("--depths", type=int, nargs=3, default=None, help="blocks per level (full, 1/2, 1/4)")
    t.add_argument("--crop", type=int, default=None, help="crop scenes to this size (quick runs)")
    t.add_argument("--no-augment", dest="augment", action="store_false")
    t.add_argument("--val-every", type=int, default=250)
    t.add_argument("--ckpt-every", type=int, default=50)
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--ckpt-dir", default=None, help="checkpoint folder (resumable with --resume)")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    t.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    t.add_argument("--workers", type=int, default=1, help="processes that simulate the scenes before training")
    t.add_argument("--out", required=True, help="weights path without extension (NAME.safetensors + NAME.json)")
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(func=_cmd_train)

    d = sub.add_parser("demo", help="simulate a pair from the bundled CAVE crop, fuse it, print the metrics")
    d.add_argument("--protocol", default="cave-x4", choices=sorted(PROTOCOLS))
    d.add_argument("--methods", nargs="+", default=["bicubic", "glp-hs"])
    d.set_defaults(func=_cmd_demo)

    es = sub.add_parser("estimate", help="estimate the PSF (Gaussian sigma, phase) and the SRF from an LRHSI/HRMSI pair")
    es.add_argument("--lr", required=True)
    es.add_argument("--msi", required=True)
    es.add_argument("--psf", default="auto", help="auto (estimate) or a PSF preset to fix it")
    es.add_argument("--srf", default="auto", help=f"auto (estimate) or {' | '.join(srf_presets())} | a file")
    es.add_argument("--free-kernel", type=int, default=None, metavar="SIZE", help="refine into a free SIZE×SIZE kernel")
    es.add_argument("--json", default=None, help="write the estimates (kernel, SRF matrix, ...) to this JSON file")
    es.add_argument("--overwrite", action="store_true")
    es.set_defaults(func=_cmd_estimate)

    ft = sub.add_parser("finetune", help="fine-tune CoFusion on a pair with no reference (self-supervised)")
    ft.add_argument("--lr", required=True)
    ft.add_argument("--msi", required=True)
    ft.add_argument("--weights", default=None,
                    help="starting weights: a name in weights/ or a path (default: the shipped weights matching the "
                         "band counts, else a shipped model's body with the band-count layers re-initialised, else "
                         "a new model); 'new' for a new model")
    ft.add_argument("--steps", type=int, default=None, help="training steps (default 100, selfsup.DEFAULT_STEPS)")
    ft.add_argument("--batch", type=int, default=4)
    ft.add_argument("--patch", type=int, default=32, help="patch side on the reduced-resolution HR grid")
    ft.add_argument("--learning-rate", type=float, default=None, help="peak learning rate (default 2e-4, selfsup.DEFAULT_LR)")
    ft.add_argument("--psf", default="auto", help="auto (estimate from the pair) or a PSF preset")
    ft.add_argument("--srf", default="auto", help="auto (estimate from the pair) or an SRF preset / file")
    ft.add_argument("--consistency", type=float, default=None,
                    help="weight of the full-resolution consistency losses (re-degraded output vs the inputs); "
                         "default 100 (selfsup.DEFAULT_CONSISTENCY), 0 turns them off")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--threads", type=int, default=None)
    ft.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    ft.add_argument("--log-every", type=int, default=10)
    ft.add_argument("--out-weights", required=True, help="NAME.safetensors (+ NAME.json card) to write")
    ft.add_argument("--overwrite", action="store_true")
    ft.set_defaults(func=_cmd_finetune)

    g = sub.add_parser("gui", help="open napari with the plugin's widgets docked and a sample or your files loaded")
    g.add_argument("files", nargs="*", help="cubes to open through the plugin's readers (default: the sample)")
    g.add_argument("--sample", default="cave_pair", choices=["cave_pair", "houston_pair", "none"],
                   help="sample to load when no files are given")
    g.add_argument("--fuse", default=None, metavar="METHOD", help="run this fusion method on the pair at once")
    g.add_argument("--screenshot", default=None, metavar="PNG",
                   help="save a screenshot of the window and quit (headless check under Xvfb)")
    g.set_defaults(func=_cmd_gui)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        return int(a.func(a) or 0)
    except CubeError as exc:
        print(f"napari-cofusion {a.cmd}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"napari-cofusion {a.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
