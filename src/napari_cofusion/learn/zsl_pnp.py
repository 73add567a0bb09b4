"""``pnp-zsl``: pnp-gf, then a residual network trained zero-shot on the pair degraded once more.

pnp-gf (:mod:`napari_cofusion.fusion.scene_prior`) fills the detail the observations leave free
with a prior that is the same for every scene (a local affine fit to the HRMSI). What it gets
wrong on *this* scene can be learned from the pair alone, in the way of zero-shot fusion (ZSL,
Dian et al.): degrade both images once more by the PSF estimated from the pair, so that the
LRHSI becomes the reference of a smaller pair ``(D(B·LR), D(B·MSI))``; run pnp-gf on that smaller
pair; train a small network (:class:`ResidualNet`, three 3×3 convolutions) to predict, from
pnp-gf's result and the MSI at that scale, the LRHSI minus pnp-gf's result, in the LRHSI's first
``k`` principal components; then apply it at the full scale to pnp-gf's result and the HRMSI, and
project the sum onto both observations (so the result still agrees with them).

The smaller pair is the LRHSI's size divided by the scale again: on the remote-sensing crops of
the table it is 3 to 6 pixels a side at ×4 and a network learns nothing there that transfers
(PaviaU ×4 0.51 dB below pnp-gf, DC Mall 0.54, Jasper Ridge 0.84, Salinas-A 0.43, projected,
2026-12-05). So the network is trained only when the smaller LRHSI is at least
:attr:`ZSLConfig.min_side` pixels a side and the PSF is wide enough for the LRHSI not to be aliased
(:attr:`ZSLConfig.min_psf_width`), and used only when it predicts pixels of the smaller
LRHSI it was not trained on (a quarter of them, in 8×8 blocks) better than pnp-gf does by a margin
(:attr:`ZSLConfig.max_ratio`); otherwise the result is pnp-gf's, and the result's metadata
(``options.network``) says why.

Measured (benchmarks/scene_finetune.py, the PSF estimated from the pair, 2026-12-05): on the CAVE
scenes at ×4 (a 32×32 smaller LRHSI) oil_painting 47.68 → 47.82 dB, paints 48.28 → 48.56, SAM lower
on both, 21–23 s of training on two CPU cores; seeds 1 and 2 (of an earlier version) gave +0.09 /
+0.12 and +0.20 / +0.23 dB over pnp-gf. Every other row of the table (remote-sensing crops, ×8) is pnp-gf's, the smaller pair
being too small. README, "pnp-zsl, the learned route".
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch

from napari_cofusion.core import ops
from napari_cofusion.core.errors import CubeError
from napari_cofusion.degrade.consistency import edge_weight, project_observations, psf_spread
from napari_cofusion.degrade.simulate import reduced_pair
from napari_cofusion.fusion.scene_prior import GUIDE_EPS, GUIDE_RADIUS

__all__ = ["ZSLConfig", "ZSLReport", "ResidualNet", "fit_residual", "apply_residual"]


@dataclass(frozen=True)
class ZSLConfig:
    """How the residual network is trained (the defaults are the measured ones, README)."""

    #: principal components of the LRHSI the network works in
    k: int = 8
    #: hidden channels of :class:`ResidualNet`
    width: int = 32
    #: Adam steps on the smaller pair (one rotation / flip of the whole of it per step)
    steps: int = 400
    lr: float = 1e-3
    seed: int = 0
    #: the smaller LRHSI (the LRHSI's side / scale) must be at least this many pixels a side
    min_side: int = 16
    #: the network is used when its error on the held-out quarter of the LRHSI (the smaller pair's
    #: reference; 8×8 blocks) is below this fraction of pnp-gf's error there
    max_ratio: float = 0.95
    #: LRHSI pixels a side of the patch a training step sees when the LRHSI is larger (a CAVE
    #: scene at ×4 is 128: the whole of it every step); 16 or more, so that every patch holds
    #: training pixels (any 16 rows and columns hold a block that is not held out)
    patch: int = 128
    #: the PSF's width (sigma, HR pixels) must be at least this fraction of the scale: a narrower
    #: PSF does not smooth before the decimation, so the LRHSI is aliased and does not show the
    #: scene as a coarser sensor would; what the network learns on the smaller pair does not carry
    #: over. The ``weak`` PSF (sigma 0.5 at ×4, 0.125·s), the PSF estimated from the pair: paints
    #: 48.32 → 47.82 dB (0.50 below pnp-gf, its held-out ratio 0.64 notwithstanding), oil_painting
    #: 48.97 → 49.01; the wald PSF (0.425·s) and the CAVE camera's sigma 2 (0.5·s) gained (2026-12-05)
    min_psf_width: float = 0.25

    def check(self) -> "ZSLConfig":
        for name, lo, hi in (("k", 1, 64), ("width", 4, 256), ("steps", 0, 100_000), ("min_side", 8, 100_000),
                             ("patch", 16, 4096)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise CubeError(f"pnp-zsl: {name} = {v!r} must be a whole number from {lo} to {hi}")
        for name, lo, hi in (("lr", 0.0, 1.0), ("max_ratio", 0.0, 1.0), ("min_psf_width", 0.0, 10.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < v <= hi:
                raise CubeError(f"pnp-zsl: {name} = {v!r} must be a number above {lo:g} and at most {hi:g}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2 ** 63:
            raise CubeError(f"pnp-zsl: seed = {self.seed!r} must be a whole number from 0 up to 2**63")
        return self


@dataclass
class ZSLReport:
    """What training did, for the result's metadata (``options.network``)."""

    used: bool
    reason: str
    reduced_shape: tuple[int, ...] = ()
    train_seconds: float = 0.0
    #: mean squared error on the trained / held-out pixels of the LRHSI (the smaller pair's
    #: reference), relative to pnp-gf's there (1 = no better than pnp-gf)
    train_ratio: float | None = None
    held_out_ratio: float | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["reduced_shape"] = list(self.reduced_shape)
        return d


class ResidualNet(torch.nn.Module):
    """(N, k + c, H, W) → (N, k, H, W): pnp-gf's cube in the LRHSI's first ``k`` components and
    the MSI's ``c`` bands in, the correction of those components out. Three 3×3 convolutions
    (reach 3 pixels), the last one zero at start (the network starts as "no correction")."""

    def __init__(self, k: int, c: int, width: int = 32):
        super().__init__()
        pad = dict(padding=1, padding_mode="reflect")
        self.conv1 = torch.nn.Conv2d(k + c, width, 3, **pad)
        self.conv2 = torch.nn.Conv2d(width, width, 3, **pad)
        self.out = torch.nn.Conv2d(width, k, 3, **pad)
        torch.nn.init.zeros_(self.out.weight)
        torch.nn.init.zeros_(self.out.bias)
        self.act = torch.nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.conv2(self.act(self.conv1(x)))))


@dataclass
class Basis:
    """The LRHSI's first ``k`` principal directions (C, k), its band means (C,), and the MSI's
    scale for the network's input (its mean and standard deviation over the whole scene)."""

    E: np.ndarray
    mu: np.ndarray
    ms_mean: float
    ms_std: float

    def coefficients(self, z: np.ndarray) -> np.ndarray:
        return np.einsum("ck,chw->khw", self.E, z - self.mu[:, None, None]).astype(np.float32)

    def inputs(self, z: np.ndarray, msi: np.ndarray) -> torch.Tensor:
        ms = (np.asarray(msi, dtype=np.float32) - self.ms_mean) / self.ms_std
        return torch.from_numpy(np.concatenate([self.coefficients(z), ms]))[None]


def _basis(lr: np.ndarray, msi: np.ndarray, k: int) -> Basis:
    C = lr.shape[0]
    flat = lr.reshape(C, -1)
    mu = flat.mean(1, dtype=np.float64)
    cov = np.cov(flat.astype(np.float64, copy=False), bias=True)  # (C, C): the basis without a C × N SVD
    vals, vecs = np.linalg.eigh(np.atleast_2d(cov))
    U = vecs[:, ::-1][:, :min(k, C)]
    U = U * np.where(U[np.abs(U).argmax(0), np.arange(U.shape[1])] < 0, -1.0, 1.0)  # a sign for each, not LAPACK's
    return Basis(np.ascontiguousarray(U, dtype=np.float32), mu.astype(np.float32), float(msi.mean()),
                 float(msi.std()) + 1e-8)


def _held_out(h: int, w: int, block: int = 8) -> np.ndarray:
    """A quarter of the pixels, in ``block``-sized squares (every other square of every other row of squares)."""
    yy, xx = np.meshgrid(np.arange(h) // block, np.arange(w) // block, indexing="ij")
    return (yy % 2 == 1) & (xx % 2 == 1)


def fit_residual(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int,
                 pnp: Callable[[np.ndarray, np.ndarray], np.ndarray], cfg: ZSLConfig | None = None,
                 progress: Callable[[int, int, float], Any] | None = None
                 ) -> tuple[ResidualNet | None, Basis | None, ZSLReport]:
    """Train :class:`ResidualNet` on the pair degraded once more. ``pnp(lr, msi)`` is pnp-gf on a
    pair at this scale and PSF. Returns ``(None, None, report)`` when the smaller pair is too small
    or the network does not beat pnp-gf on the held-out pixels (``report.reason`` says which)."""
    cfg = (cfg or ZSLConfig()).check()
    h, w = lr.shape[-2] // scale, lr.shape[-1] // scale
    if min(h, w) < cfg.min_side:
        return None, None, ZSLReport(False, f"the pair degraded once more has a {h}×{w}-pixel LRHSI, under "
                                            f"{cfg.min_side} a side: too small to learn from, so this is pnp-gf",
                                     (lr.shape[0], h, w))
    sigma = ops.kernel_sigma(np.asarray(kernel))
    if sigma < cfg.min_psf_width * scale:
        return None, None, ZSLReport(False, f"the PSF (sigma {sigma:.2f} px) is narrower than {cfg.min_psf_width:g} × the "
                                            f"scale ({cfg.min_psf_width * scale:.2f} px): the LRHSI is aliased, not the scene "
                                            "as a coarser sensor sees it, so nothing learnt from it carries over to the full "
                                            "scale; this is pnp-gf", (lr.shape[0], h, w))
    t0 = time.perf_counter()
    basis = _basis(lr, msi, cfg.k)
    lr, L2, M2 = reduced_pair(lr, msi, kernel, scale, phase)  # lr: cropped to whole cells of the smaller grid
    base2 = np.clip(pnp(L2, M2), 0.0, 1.0)
    x = basis.inputs(base2, M2)
    target = torch.from_numpy(basis.coefficients(lr) - basis.coefficients(base2))[None]
    held = torch.from_numpy(_held_out(*lr.shape[-2:]))[None, None].expand_as(target)
    train = ~held
    rng = np.random.default_rng(cfg.seed)
    H, W = target.shape[-2:]
    with torch.random.fork_rng():  # the caller's (and napari's) torch random state is left as it was
        torch.manual_seed(cfg.seed)
        net = ResidualNet(basis.E.shape[1], msi.shape[0], cfg.width)
        opt = torch.optim.Adam(net.parameters(), cfg.lr)
        for step in range(cfg.steps):
            xi, ti, mi = x, target, train
            if max(H, W) > cfg.patch:  # a large LRHSI: a random patch a step, so memory stays bounded
                y0, x0 = int(rng.integers(max(H - cfg.patch, 0) + 1)), int(rng.integers(max(W - cfg.patch, 0) + 1))
                xi, ti, mi = (a[..., y0:y0 + cfg.patch, x0:x0 + cfg.patch] for a in (xi, ti, mi))
            r, f = int(rng.integers(4)), bool(rng.integers(2))
            xi, ti, mi = (torch.rot90(a, r, (2, 3)) for a in (xi, ti, mi))
            if f:
                xi, ti, mi = xi.flip(3), ti.flip(3), mi.flip(3)
            loss = ((net(xi) - ti) ** 2)[mi].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if progress is not None:
                progress(step + 1, cfg.steps, float(loss.detach()))
    with torch.inference_mode():
        err = (net(x) - target) ** 2
    zero = target ** 2
    train_ratio = float(err[train].mean() / zero[train].mean().clamp_min(1e-20))
    held_ratio = float(err[held].mean() / zero[held].mean().clamp_min(1e-20))
    used = held_ratio < cfg.max_ratio
    reason = (f"the network trained on the pair degraded once more predicts its held-out pixels with "
              f"{held_ratio:.2f}× pnp-gf's squared error there" +
              ("" if used else f" (not under {cfg.max_ratio:g}×): it learned nothing that holds, so this is pnp-gf"))
    report = ZSLReport(used, reason, tuple(L2.shape), round(time.perf_counter() - t0, 2), round(train_ratio, 4),
                       round(held_ratio, 4))
    net.eval()
    return (net, basis, report) if used else (None, None, report)


def apply_residual(net: ResidualNet, basis: Basis, z: np.ndarray, msi: np.ndarray) -> np.ndarray:
    """``z`` (C, H, W) plus the network's correction (not clipped, not projected), float32."""
    with torch.inference_mode():
        a = net(basis.inputs(z, msi))[0].numpy()
    return (z + np.einsum("ck,khw->chw", basis.E, a)).astype(np.float32)


# ---------------------------------------------------------------------------- the registered method
_NET_OPTIONS = ("steps", "seed", "k")


def prepare_pnp_zsl(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int,
                    options: dict[str, Any]) -> dict[str, Any]:
    """pnp-gf's scene-wide choices (:func:`~napari_cofusion.fusion.scene_prior.prepare_pnp_gf`,
    with its fallback to glp-hs), then the network trained on the whole pair once, before any
    block; what training did goes to the result's metadata (``network``)."""
    from napari_cofusion.fusion.scene_prior import pnp_gf, prepare_pnp_gf

    cfg = ZSLConfig(**{k: options[k] for k in _NET_OPTIONS if k in options}).check()
    out = prepare_pnp_gf(lr, msi, scale, kernel, phase, {k: v for k, v in options.items() if k not in _NET_OPTIONS})
    out.update({k: options[k] for k in _NET_OPTIONS if k in options})
    if out.get("fallback"):
        out["network"] = ZSLReport(False, "not trained: pnp-gf falls back to glp-hs on this pair").to_json()
        out["_net"], out["_basis"], out["_prepared"] = None, None, True
        return out
    pnp_opts = {k: out[k] for k in ("rounds", "guide_radius", "guide_eps", "momentum") if k in out}
    pnp_opts["radius"] = options.get("radius", "auto")  # the user's, chosen again on the smaller pair when "auto"

    def pnp(L: np.ndarray, M: np.ndarray) -> np.ndarray:  # on the smaller pair: its own choices and SRF
        return pnp_gf(L, M, scale, kernel, phase, **pnp_opts)

    net, basis, report = fit_residual(lr, msi, scale, kernel, phase, pnp, cfg)
    out["network"] = report.to_json()
    out["_net"], out["_basis"], out["_prepared"] = net, basis, True
    return out


def run_pnp_zsl(lr: np.ndarray, msi: np.ndarray, scale: int, kernel: np.ndarray, phase: int,
                rounds: "int | str" = "auto", guide_radius: int = GUIDE_RADIUS, guide_eps: float = GUIDE_EPS,
                radius: "int | str" = "auto", momentum: "float | str" = "auto",
                steps: int = ZSLConfig.steps, seed: int = ZSLConfig.seed, k: int = ZSLConfig.k,
                _net: ResidualNet | None = None, _basis: Basis | None = None, _prepared: bool = False,
                **prepared: Any) -> np.ndarray:
    """pnp-gf, plus the network's correction projected onto both observations (see the module
    docstring). Called directly (not through ``fuse``), it makes the scene-wide choices and trains
    on this pair first."""
    from napari_cofusion.fusion.scene_prior import pnp_gf

    pnp_options = {"rounds": rounds, "guide_radius": guide_radius, "guide_eps": guide_eps, "radius": radius,
                   "momentum": momentum}
    if not _prepared:  # called directly, not through fuse: prepare on this pair
        prepared = prepare_pnp_zsl(lr, msi, scale, kernel, phase, {"steps": steps, "seed": seed, "k": k, **pnp_options})
        _net, _basis = prepared.pop("_net"), prepared.pop("_basis")
        pnp_options = {}
    pnp_options.update({key: v for key, v in prepared.items() if key not in _NET_OPTIONS and key not in ("network", "_prepared")})
    z = pnp_gf(lr, msi, scale, kernel, phase, **pnp_options)
    if _net is None or pnp_options.get("fallback"):
        return z
    R = np.asarray(pnp_options["srf"], dtype=np.float64)
    z = np.clip(apply_residual(_net, _basis, z, msi), 0.0, 1.0)
    return project_observations(z, lr, msi, kernel, scale, phase, R, amp=edge_weight(msi), spread=psf_spread(kernel, scale))


def _register() -> None:
    from napari_cofusion.fusion.registry import FusionMethod, get_method, register

    pnp = get_method("pnp-gf")
    register(FusionMethod(
        "pnp-zsl", "Pair-only fusion: pnp-gf, then a residual network trained on the pair degraded once more (ZSL)",
        run_pnp_zsl, options={**pnp.options, "steps": ZSLConfig.steps, "seed": ZSLConfig.seed, "k": ZSLConfig.k},
        prepare=prepare_pnp_zsl,
        # the network's three convolutions and one more projection after pnp-gf's rounds
        reach=lambda scale, kernel: pnp.reach(scale, kernel) + 3 + 4 * scale,
        bytes_per_pixel=lambda C, c: pnp.bytes_per_pixel(C, c) + 4.0 * (3 * ZSLConfig.width + 2 * C),
    ))


_register()
