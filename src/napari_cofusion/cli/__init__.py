"""``napari-cofusion`` command line: the same core as the plugin.

Commands:

* ``simulate`` - simulate an LRHSI/HRMSI pair from a reference cube (Wald's protocol);
* ``fuse`` - fuse an LRHSI with an HRMSI (``fuse --list-methods`` lists the methods);
* ``evaluate`` - quality metrics of a fused cube (full-reference, or no-reference from the pair);
* ``demo`` - simulate a pair from the bundled CAVE crop, fuse it, print the metrics;
* ``train`` - train CoFusion on a folder of reference scenes (:mod:`napari_cofusion.learn.train_folder`);
* ``distill`` - distil a CoFusion teacher into the fast CSAKD student (:mod:`napari_cofusion.learn.distill`);
* ``estimate`` - estimate the PSF and the SRF from an LRHSI/HRMSI pair;
* ``finetune`` - fine-tune CoFusion on a pair that has no reference (self-supervised);
* ``gui`` - open napari with the plugin's widgets docked and a sample or your files loaded.

A flag means the same in every command (:data:`CONVENTIONS`): ``--lr`` is the LRHSI file,
``--msi`` the HRMSI file, ``--out`` what the command writes, ``--json`` prints the result as JSON
on stdout, ``--learning-rate`` is the peak learning rate of training.

Exit status: 0 done; 2 bad input, with one line ``napari-cofusion COMMAND: error: ...`` on
stderr; 130 interrupted (Ctrl-C), with one line. Ctrl-C or SIGTERM during the training loop of
``train`` or ``finetune`` stops the training and still writes the weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from napari_cofusion.cli.loop import train_loop as _train_loop
from napari_cofusion.core.errors import Cancelled, CofusionError, CubeError

__all__ = ["main", "build_parser", "CONVENTIONS"]

CONVENTIONS = (
    "Every command: --lr is the LRHSI file, --msi the HRMSI file, --ref a reference cube; --out is what the "
    "command writes (simulate: a folder; fuse: the fused cube; train, finetune: weights NAME.safetensors + "
    "NAME.json; estimate: a JSON file) and --overwrite lets it replace one; --json prints the result as JSON on "
    "stdout instead of text (fuse, evaluate, estimate); --learning-rate is the peak learning rate (train, "
    "finetune). Exit status 2: bad input (one line on stderr); 130: interrupted."
)
from napari_cofusion.cli.common import JSON_HELP, _auto, _check_out, _fmt_metrics, _norm, _print_json, _weights_out  # noqa: F401,E501
from napari_cofusion.cli.fusing import _cmd_fuse, _ListMethods, _shown_options  # noqa: F401
from napari_cofusion.cli.training import _cmd_distill, _cmd_train  # noqa: F401

# ---------------------------------------------------------------------------- commands
def _cmd_simulate(a: argparse.Namespace) -> int:
    from napari_cofusion.core.io import read_cube
    from napari_cofusion.degrade.simulate import save_pair, simulate_pair

    ref = read_cube(a.ref, **({"norm": _norm(a.norm)} if a.norm else {}))
    kw: dict[str, Any] = {"protocol": a.protocol} if a.protocol else {"scale": a.scale, "psf": a.psf, "srf": a.srf}
    pair = simulate_pair(ref, snr_db=a.snr, seed=a.seed, **kw)
    written = save_pair(pair, a.out, fmt=a.format, overwrite=a.overwrite)
    for k, v in written.items():
        print(f"{k}: {v}")
    return 0



def _cmd_evaluate(a: argparse.Namespace) -> int:
    from napari_cofusion.core import metrics
    from napari_cofusion.core.io import read_cube
    from napari_cofusion.degrade.simulate import PSF, infer_scale

    fused = read_cube(a.fused)
    if a.ref:
        scale = a.scale
        if scale is None:
            if not a.lr:
                raise CubeError("--scale is needed for ERGAS (or give --lr to infer it)")
            scale = infer_scale(read_cube(a.lr).shape, fused.shape)
        res = metrics.full_reference(fused.data, read_cube(a.ref).data, scale)
    else:
        if not (a.lr and a.msi):
            raise CubeError("give --ref for full-reference metrics, or --lr and --msi for D_lambda, D_s, QNR")
        lr, msi = read_cube(a.lr), read_cube(a.msi)
        scale = infer_scale(lr.shape, fused.shape)
        res = metrics.no_reference(fused.data, lr.data, msi.data, PSF.parse(a.psf).kernel(scale), scale)
    if a.json:
        _print_json(res)
    else:
        print(_fmt_metrics(res))
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    """Simulate a pair from the bundled CAVE crop, fuse it with the classical methods and CoFusion
    (the shipped weights), print the metrics."""
    from napari_cofusion.api import fuse, simulate_pair
    from napari_cofusion.core import metrics
    from napari_cofusion.samples import bundled_reference

    ref = bundled_reference()
    pair = simulate_pair(ref, protocol=a.protocol)
    print(f"reference: {ref.name} {ref.shape} ({ref.source})")
    print(f"simulated with {a.protocol}: LRHSI {pair.lr.shape}, HRMSI {pair.msi.shape}")
    for m in a.methods:
        r = fuse(pair.lr, pair.msi, m)
        print(f"{m:>10}: {_fmt_metrics(metrics.full_reference(r.cube.data, pair.reference.data, r.scale))}  ({r.seconds:.2f} s)")
    return 0



def _cmd_estimate(a: argparse.Namespace) -> int:
    import numpy as np

    from napari_cofusion.core.io import read_cube, write_json
    from napari_cofusion.degrade.estimate import estimate_degradation, estimate_doubts

    if a.out:
        _check_out(a.out, a.overwrite)
    lr, msi = read_cube(a.lr), read_cube(a.msi)
    deg = estimate_degradation(lr, msi, psf=_auto(a.psf), srf=_auto(a.srf), free_kernel=a.free_kernel)
    if a.out:
        write_json(deg.to_json(), Path(a.out), overwrite=a.overwrite)
    if a.json:
        _print_json(deg.to_json())
        return 0
    print(deg.describe())
    for reason in estimate_doubts(deg):
        print(f"warning: {reason}")
    np.set_printoptions(precision=4, suppress=True, linewidth=120)
    print("SRF (rows: MSI bands, columns: HS bands):")
    print(deg.srf)
    if a.out:
        print(f"wrote {a.out}")
    return 0


def _cmd_finetune(a: argparse.Namespace) -> int:
    from napari_cofusion.api import check_pair, read_cube
    from napari_cofusion.learn.device import resolve_device, set_threads
    from napari_cofusion.learn.selfsup import DEFAULT_CONSISTENCY, finetune_scene, scene_card, scene_config
    from napari_cofusion.learn.start import starting_model
    from napari_cofusion.learn.weights import save_weights

    device = resolve_device(a.device)
    out = _weights_out(a.out, a.overwrite)
    threads = set_threads(a.threads)
    lr, msi = read_cube(a.lr), read_cube(a.msi)
    scale = check_pair(lr, msi)
    start = starting_model(a.weights, lr.bands, msi.bands, scale, adapt=True)
    model = start.model
    print(f"[finetune] {lr.name}: {lr.bands} bands {lr.shape[1]}×{lr.shape[2]}; {msi.name}: {msi.bands} bands "
          f"{msi.shape[1]}×{msi.shape[2]}; ×{scale}; {threads} threads", flush=True)
    print(f"[finetune] start: {start.origin} ({start.mode}"
          + (f", {len(start.reinitialised)} band-count layers re-initialised" if start.reinitialised else "") + ")",
          flush=True)
    cfg = scene_config(a.steps, a.learning_rate, a.batch, a.patch, a.seed)
    report: dict[str, Any] = {}
    consistency = DEFAULT_CONSISTENCY if a.consistency is None else a.consistency
    loop = finetune_scene(model, lr, msi, cfg, psf=_auto(a.psf), srf=_auto(a.srf), consistency=consistency,
                          report=report, device=device)
    last = _train_loop("finetune", loop, a.log_every)
    if last is None or "degradation" not in report:
        raise Cancelled("stopped before the first step: no weights written")
    card = scene_card(model, lr, cfg, report, last, start, consistency, threads, str(device),
                      training_data={"lr": str(a.lr), "msi": str(a.msi)})
    paths = save_weights(model, out, card, overwrite=a.overwrite)
    print(f"[finetune] reduced-resolution L1 {report.get('reduced_before', float('nan')):.5f} -> "
          f"{report.get('reduced_after', float('nan')):.5f}", flush=True)
    print(f"[finetune] wrote {paths[0]} and {paths[1]}; fuse with: napari-cofusion fuse --lr {a.lr} --msi {a.msi} "
          f"--method cofusion --weights {paths[0]} --out FUSED", flush=True)
    return 0


def _cmd_gui(a: argparse.Namespace) -> int:
    from napari_cofusion.gui.launch import run

    return run(a.files, None if a.sample == "none" else a.sample, a.fuse, a.screenshot)


# ---------------------------------------------------------------------------- the parser
def _pair_args(p: argparse.ArgumentParser, required: bool = True, why: str = "") -> None:
    p.add_argument("--lr", required=required, metavar="LRHSI", help="the low-resolution hyperspectral image file" + why)
    p.add_argument("--msi", required=required, metavar="HRMSI", help="the high-resolution multispectral image file" + why)


def _out_args(p: argparse.ArgumentParser, what: str, required: bool = True) -> None:
    p.add_argument("--out", required=required, metavar="PATH", help=what)
    p.add_argument("--overwrite", action="store_true", help="replace --out when it exists")


def _run_args(p: argparse.ArgumentParser, learning_rate: float | None, lr_help: str) -> None:
    """The options train and finetune share."""
    p.add_argument("--learning-rate", type=float, default=learning_rate, metavar="RATE", help=lr_help)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--log-every", type=int, default=10, metavar="N", help="print every Nth step")


def _scene_folder_args(p: argparse.ArgumentParser, protocols: Sequence[str], steps: int, patch: int,
                       learning_rate: float, lr_help: str) -> None:
    """The flags of the commands that train on a folder of reference scenes (train, distill)."""
    p.add_argument("--data", required=True, help="folder of scene folders (e.g. ../shared/data/cave)")
    p.add_argument("--protocol", default="cave-x4", choices=protocols)
    p.add_argument("--val", nargs="*", default=None, help="validation scene names (default: oil_painting paints)")
    p.add_argument("--train-scenes", nargs="*", default=None, help="restrict training to these scene names")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=patch)
    _run_args(p, learning_rate, lr_help)
    p.add_argument("--warmup", type=int, default=200, help="warm-up steps (at most a tenth of --steps)")
    p.add_argument("--crop", type=int, default=None, help="crop scenes to this size (quick runs)")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--ckpt-every", type=int, default=50)
    p.add_argument("--ckpt-dir", default=None, help="checkpoint folder (resumable with --resume)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--workers", type=int, default=1, help="processes that simulate the scenes before training")
    _out_args(p, "weights path without extension (NAME.safetensors + NAME.json)")


def build_parser() -> argparse.ArgumentParser:
    from napari_cofusion.core.srf import srf_presets
    from napari_cofusion.degrade.simulate import PROTOCOLS

    p = argparse.ArgumentParser(prog="napari-cofusion", description="Hyperspectral / multispectral image fusion",
                                epilog=CONVENTIONS)
    sub = p.add_subparsers(dest="cmd", required=True)
    protocols = sorted(PROTOCOLS)
    srfs = " | ".join(srf_presets())

    s = sub.add_parser("simulate", help="simulate an LRHSI/HRMSI pair from a reference cube (Wald's protocol)")
    s.add_argument("--ref", required=True, help="reference cube (ENVI .hdr, .mat, .tif, .npy/.npz or band-PNG folder)")
    s.add_argument("--scale", type=int, default=4)
    s.add_argument("--psf", default="weak", help="weak | wald | dhif | gaussian:SIGMA | gaussian:SIZE:SIGMA | gaussian-half:SIGMA | box[:SIZE] | kernel file")
    s.add_argument("--srf", default="nikon-d700", help=f"{srfs} | SRF file (.csv/.npy/.mat)")
    s.add_argument("--protocol", choices=protocols, help="named preset (overrides --scale/--psf/--srf)")
    s.add_argument("--snr", type=float, default=None, help="add Gaussian noise at this SNR (dB)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--norm", default=None, help="normalisation of the reference: auto | max | a number")
    s.add_argument("--format", default=".hdr", choices=[".hdr", ".tif", ".npy", ".npz"])
    _out_args(s, "folder to write lr, msi, ref (in --format) and recipe.json to")
    s.set_defaults(func=_cmd_simulate)

    f = sub.add_parser("fuse", help="fuse an LRHSI with an HRMSI, or many pairs (--pairs)")
    _pair_args(f, required=False, why=" (or --pairs)")
    f.add_argument("--pairs", default=None, metavar="FOLDER|LIST",
                   help="many pairs: a folder of pair folders (lr.* and msi.*, as simulate writes them) or a text "
                        "file of 'LRHSI HRMSI [NAME]' lines; --out is then a folder, one NAME.FORMAT per pair")
    f.add_argument("--format", default=".hdr", choices=[".hdr", ".tif", ".npy", ".zarr"],
                   help="output format of --pairs (default .hdr)")
    f.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on dask: threads (local, the default with --workers), synchronous, processes (--pairs), "
                        "or a dask.distributed scheduler address tcp://HOST:PORT")
    f.add_argument("--workers", type=int, default=None,
                   help="dask workers on this machine (threads for a scene's blocks, processes for --pairs)")
    f.add_argument("--method", default="glp-hs", help="bicubic | glp-hs | cofusion | csakd | hyfusion | s3rnet | ... (see --list-methods)")
    f.add_argument("--list-methods", action=_ListMethods, help="list the fusion methods and exit")
    f.add_argument("--weights", default=None, help="weights name in weights/ or a .safetensors path (learned methods)")
    f.add_argument("--psf", default=None, help="PSF relating LR to HR (default: recipe.json beside --lr, else weak): "
                   "weak | wald | dhif | gaussian:SIGMA | gaussian-half:SIGMA | kernel file; auto: estimate the PSF "
                   "and phase from the pair")
    f.add_argument("--phase", type=int, default=None,
                   help="decimation phase of the LRHSI (default: the recipe's, else the PSF's: s//2 - 1 for dhif, "
                        "s//2 otherwise)")
    f.add_argument("--recipe", default=None, help="recipe.json of a simulated pair (default: beside --lr)")
    f.add_argument("--device", default=None, help="cpu (default) or cuda for learned methods")
    f.add_argument("--consistency", choices=["auto", "on", "off"], default=None,
                   help="project the result onto the LRHSI and HRMSI it came from (default: the method's; auto for "
                        "cofusion: when the PSF and a fitted SRF explain the pair, off for the baselines)")
    f.add_argument("--tile", type=int, default=None,
                   help="fuse in blocks of this many HR pixels a side (default: the whole scene when it fits "
                        "NAPARI_COFUSION_MEMORY_MB, else blocks sized from it)")
    _out_args(f, "the fused cube to write (.hdr or .zarr: written block by block; .tif, .npy, .npz); with --pairs "
                 "a folder")
    f.add_argument("--json", action="store_true", help=JSON_HELP + " (method, scale, seconds, weights, consistency)")
    f.set_defaults(func=_cmd_fuse)

    e = sub.add_parser("evaluate", help="quality metrics of a fused cube")
    e.add_argument("--fused", required=True, help="the fused cube")
    e.add_argument("--ref", default=None, help="reference cube: full-reference metrics (PSNR, SSIM, SAM, ERGAS, ...)")
    e.add_argument("--scale", type=int, default=None, help="the fusion's scale, for ERGAS (default: from --lr)")
    _pair_args(e, required=False, why=" (without --ref: D_lambda, D_s and QNR from the pair)")
    e.add_argument("--psf", default="weak", help="PSF of the pair, for the no-reference metrics")
    e.add_argument("--json", action="store_true", help=JSON_HELP)
    e.set_defaults(func=_cmd_evaluate)

    t = sub.add_parser("train", help="train CoFusion (or HyFusion, S3RNet) on CAVE-style scenes under a protocol")
    _scene_folder_args(t, protocols, 2000, 64, 1e-4,
                       "peak learning rate (1e-4 trains the full model; larger ones sat at the base, docs/model.md)")
    t.add_argument("--base", default="glp-hs", choices=["glp-hs", "bicubic"], help="global residual of the network")
    t.add_argument("--architecture", default="cofusion", choices=["cofusion", "hyfusion", "s3rnet"],
                   help="the network to train (docs/model.md)")
    t.add_argument("--config", default=None, metavar="JSON",
                   help="configuration fields of a new network, e.g. '{\"width\": 32}' (docs/model.md)")
    t.add_argument("--depths", type=int, nargs=3, default=None, help="CoFusion's blocks per level (full, 1/2, 1/4)")
    t.add_argument("--no-augment", dest="augment", action="store_false", help="no dihedral variants of the scenes")
    t.add_argument("--precision", choices=["auto", "float32", "bf16"], default="auto",
                   help="the forward's arithmetic: auto = bf16 autocast on a GPU, float32 on the CPU "
                        "(benchmarks/train_step.py measures both)")
    t.add_argument("--select", choices=["network", "consistency"], default=None,
                   help="keep the state whose validation is best for the network alone, or with fuse's default "
                        "consistency step (what users get); default: consistency with --init, else network")
    t.add_argument("--val-start", action=argparse.BooleanOptionalAction, default=None,
                   help="validate the starting state too, and keep it when no step beats it (default: with --init)")
    t.add_argument("--init", default=None, metavar="WEIGHTS",
                   help="start from these CoFusion weights (name or path), trained at any scale or PSF, e.g. "
                        "cofusion_cave_x4 for a x2 or dhif protocol (the card records it)")
    t.set_defaults(func=_cmd_train)

    k = sub.add_parser("distill", help="distil a CoFusion teacher into the fast CSAKD student")
    _scene_folder_args(k, protocols, 4000, 128, 4e-4, "peak learning rate")
    k.add_argument("--teacher", default=None, help="CoFusion weights name or path (default: the shipped ones)")
    k.add_argument("--student", default=None, metavar="JSON", help='student configuration, e.g. \'{"width": 48}\'')
    k.add_argument("--init", default=None, metavar="WEIGHTS",
                   help="continue from these CSAKD weights (name or path); --student may add HR blocks, "
                        'e.g. \'{"hr_blocks": 2}\'')
    k.add_argument("--train-only", default=None, metavar="MODULES",
                   help="train only these top-level modules of the student, e.g. to_hr,head,refine (the others frozen)")
    k.add_argument("--kd-weight", type=float, default=0.1, help="weight of L1(student, teacher)")
    k.add_argument("--sam-weight", type=float, default=0.1, help="weight of the spectral angle (radians)")
    k.add_argument("--variants", type=int, default=4, choices=range(1, 9), metavar="1-8",
                   help="dihedral variants of each training scene (4: about 6 GB for the 18 CAVE scenes)")
    k.set_defaults(func=_cmd_distill)

    d = sub.add_parser("demo", help="simulate a pair from the bundled CAVE crop, fuse it, print the metrics")
    d.add_argument("--protocol", default="cave-x4", choices=protocols)
    d.add_argument("--methods", nargs="+", default=["bicubic", "glp-hs", "cofusion"],
                   help="methods to run (default: the classical ones and CoFusion with the shipped weights)")
    d.set_defaults(func=_cmd_demo)

    es = sub.add_parser("estimate", help="estimate the PSF (Gaussian sigma, phase) and the SRF from an LRHSI/HRMSI pair")
    _pair_args(es)
    es.add_argument("--psf", default="auto", help="auto (estimate) or a PSF preset to fix it")
    es.add_argument("--srf", default="auto", help=f"auto (estimate) or {srfs} | a file")
    es.add_argument("--free-kernel", type=int, default=None, metavar="SIZE", help="refine into a free SIZE×SIZE kernel")
    _out_args(es, "write the estimates (kernel, SRF matrix, ...) to this JSON file", required=False)
    es.add_argument("--json", action="store_true", help=JSON_HELP)
    es.set_defaults(func=_cmd_estimate)

    ft = sub.add_parser("finetune", help="fine-tune CoFusion on a pair with no reference (self-supervised)")
    _pair_args(ft)
    ft.add_argument("--weights", default=None, help="starting weights: 'shipped' (default: the shipped weights for "
                    "the band counts and scale, else a shipped body with new band-count layers, else a new model), "
                    "'new', or a name in weights/ or a path")
    ft.add_argument("--steps", type=int, default=None, help="training steps (default 100, selfsup.DEFAULT_STEPS)")
    ft.add_argument("--batch", type=int, default=4)
    ft.add_argument("--patch", type=int, default=32, help="patch side on the reduced-resolution HR grid")
    _run_args(ft, None, "peak learning rate (default 2e-4, selfsup.DEFAULT_LR)")
    ft.add_argument("--psf", default="auto", help="auto (estimate from the pair) or a PSF preset")
    ft.add_argument("--srf", default="auto", help="auto (estimate from the pair) or an SRF preset / file")
    ft.add_argument("--consistency", type=float, default=None,
                    help="weight of the full-resolution consistency losses (re-degraded output vs the inputs); "
                         "default 100 (selfsup.DEFAULT_CONSISTENCY), 0 turns them off")
    _out_args(ft, "NAME.safetensors (+ NAME.json card) to write")
    ft.set_defaults(func=_cmd_finetune)

    g = sub.add_parser("gui", help="open napari with the plugin's widgets docked and a sample or your files loaded")
    g.add_argument("files", nargs="*", help="cubes to open through the plugin's readers (default: the sample)")
    g.add_argument("--sample", default="cave_pair", choices=["cave_pair", "houston_pair", "none"],
                   help="sample to load when no files are given")
    g.add_argument("--fuse", nargs="+", default=None, metavar="METHOD",
                   help="run these fusion methods on the pair at once, one after the other (the last is shown)")
    g.add_argument("--screenshot", default=None, metavar="PNG",
                   help="save a screenshot of the window and quit (headless check under Xvfb)")
    g.set_defaults(func=_cmd_gui)
    return p


def _warnings_as_lines(cmd: str) -> None:
    """Print the package's warnings (data changed on the way in, weights saved elsewhere) as one
    line each on stderr, like the errors."""
    import warnings

    from napari_cofusion.core.errors import CofusionWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CofusionWarning):
            print(f"napari-cofusion {cmd}: warning: {' '.join(str(message).splitlines())}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", CofusionWarning)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    a = build_parser().parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)  # what the command was (cards record it)
    with warnings.catch_warnings():
        _warnings_as_lines(a.cmd)
        return _run(a)


def _run(a: argparse.Namespace) -> int:
    try:
        return int(a.func(a) or 0)
    except KeyboardInterrupt:
        print(f"napari-cofusion {a.cmd}: interrupted", file=sys.stderr)
        return 130
    except Cancelled as exc:
        print(f"napari-cofusion {a.cmd}: {exc}", file=sys.stderr)
        return 130
    except (CofusionError, OSError, ValueError) as exc:
        print(f"napari-cofusion {a.cmd}: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
