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

from .cube import CubeError

__all__ = ["main"]


def _fmt_metrics(d: dict[str, float]) -> str:
    return "  ".join(f"{k.upper()} {v:.4f}" for k, v in d.items())


def _cmd_simulate(a: argparse.Namespace) -> int:
    from .io import read_cube
    from .simulate import save_pair, simulate_pair

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
    from .io import read_cube

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
    from .io import write_cube
    from .methods import fuse

    out = Path(a.out)
    if out.exists() and not a.overwrite:
        raise CubeError(f"{out}: already exists; choose another name or pass --overwrite")
    lr, msi = _read_pair(a)
    opts: dict[str, Any] = {}
    if a.weights:
        opts["weights"] = a.weights
    if getattr(a, "device", None):
        opts["device"] = a.device
    res = fuse(lr, msi, a.method, psf=a.psf, **opts)
    res.cube.name = out.stem
    write_cube(res.cube, out, overwrite=a.overwrite)
    print(f"fused with {a.method} (x{res.scale}) in {res.seconds:.2f} s -> {out}")
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from . import metrics
    from .io import read_cube
    from .simulate import PSF, infer_scale

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
    from . import metrics
    from .methods import fuse
    from .samples import bundled_reference
    from .simulate import simulate_pair

    ref = bundled_reference()
    pair = simulate_pair(ref, protocol=a.protocol)
    print(f"reference: {ref.name} {ref.shape} ({ref.source})")
    print(f"simulated with {a.protocol}: LRHSI {pair.lr.shape}, HRMSI {pair.msi.shape}")
    for m in a.methods:
        r = fuse(pair.lr, pair.msi, m)
        print(f"{m:>10}: {_fmt_metrics(metrics.full_reference(r.cube.data, pair.reference.data, r.scale))}  ({r.seconds:.2f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .simulate import PROTOCOLS
    from .srf import srf_presets

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

    d = sub.add_parser("demo", help="simulate a pair from the bundled CAVE crop, fuse it, print the metrics")
    d.add_argument("--protocol", default="cave-x4", choices=sorted(PROTOCOLS))
    d.add_argument("--methods", nargs="+", default=["bicubic", "glp-hs"])
    d.set_defaults(func=_cmd_demo)
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
