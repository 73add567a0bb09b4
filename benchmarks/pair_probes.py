"""Probes of the pair-only route (issue 18): does anything trained on the pair add to pnp-gf?

Two probes, each on the scenes of ``scene_finetune.py`` (same simulation, the PSF and phase
estimated from the pair, reference kept aside), printing one JSON line per result and gains in dB
over glp-hs:

``learned``
    A scene network: a per-pixel MLP (1×1 convolutions, hidden width 64) from the HRMSI's bands to
    the coefficients of the LRHSI's first ``k`` principal components, trained on the pair alone by
    the LR consistency loss (its HR output, blurred by the estimated PSF and decimated, must match
    the LRHSI, compared in the subspace). Rows: the network's cube; that cube projected onto both
    observations; pnp-gf's rounds started from it, with the same rounds started from the projected
    global regression as the control; pnp-gf's rounds with the network's ``k`` outputs added to the
    guided filter's guide, with the MSI's products of pairs of bands added instead as the control.
``ridge``
    pnp-gf's rounds with the guided filter's ridge ``eps`` (added to the MS covariance of every
    window; pnp-gf's own is 1e-8): the control for the rows above that add guide channels with a
    ridge of :data:`FEATURE_EPS`.
``subspace``
    pnp-gf's rounds run on the coefficients of the LRHSI's first ``k`` singular vectors (projection
    and guided filter on k images instead of C bands, no [0, 1] box inside the rounds), then the
    full projection: speed against pnp-gf.

``.venv/bin/python benchmarks/pair_probes.py learned --scenes paviau dcmall --scales 4 --out r.json``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scene_finetune import SCENES, _psf_of, load  # noqa: E402

from napari_cofusion.api import fuse  # noqa: E402
from napari_cofusion.core import metrics, ops  # noqa: E402
from napari_cofusion.core.errors import CofusionWarning  # noqa: E402
from napari_cofusion.degrade import consistency as cons  # noqa: E402
from napari_cofusion.degrade.estimate import estimate_degradation  # noqa: E402
from napari_cofusion.degrade.simulate import simulate_pair  # noqa: E402
from napari_cofusion.fusion.scene_prior import (GUIDE_EPS, GUIDE_RADIUS, guided_filter, momentum_for,  # noqa: E402
                                                plug_and_play, rounds_for)
from napari_cofusion.learn.device import set_threads  # noqa: E402

#: the ridge of the guided filter when its guide has extra (feature) channels: they are close to
#: linear combinations of the MS bands in flat windows
FEATURE_EPS = 1e-6


class Scene:
    """One simulated pair with its estimated degradation, glp-hs and pnp-gf results."""

    def __init__(self, name: str, scale: int):
        ref = load(name)
        _, _, srf, psf = SCENES[name]
        pair = simulate_pair(ref, scale=scale, psf=psf, srf=srf)
        self.lr, self.msi = pair.lr, pair.msi
        self.lr.meta.pop("recipe", None)  # the pair alone
        self.X, self.name, self.scale = pair.reference.data, name, scale
        self.deg = estimate_degradation(self.lr, self.msi)
        self.kernel, self.phase = np.asarray(self.deg.kernel), self.deg.phase
        self.L, self.M = self.lr.data, self.msi.data
        self.glp = self.fuse("glp-hs")
        self.glp_psnr = float(metrics.psnr(self.glp, self.X))
        t0 = time.perf_counter()
        self.pnp = self.fuse("pnp-gf")
        self.pnp_seconds = time.perf_counter() - t0
        self.R = cons.observation_srf(self.L, self.M, self.kernel, scale, self.phase)[0]
        self.amp = cons.edge_weight(self.M)
        self.spread = cons.psf_spread(self.kernel, scale)

    def fuse(self, method: str, **opts) -> np.ndarray:
        return fuse(self.lr, self.msi, method, psf=_psf_of(self.deg), phase=self.phase, **opts).cube.data

    def project(self, z: np.ndarray) -> np.ndarray:
        return cons.project_observations(np.clip(z, 0, 1).astype(np.float32), self.L, self.M, self.kernel, self.scale,
                                         self.phase, self.R, amp=self.amp, spread=self.spread)

    def rounds(self, start: np.ndarray, guide: np.ndarray, eps: float = GUIDE_EPS) -> np.ndarray:
        z = plug_and_play(np.clip(start, 0, 1).astype(np.float32), self.project,
                          lambda y: guided_filter(y, guide, GUIDE_RADIUS, eps), rounds_for(self.scale), momentum_for(self.scale))
        return self.project(z)

    def row(self, z: np.ndarray, **extra) -> dict:
        m = metrics.full_reference(z, self.X, self.scale)
        return {"scene": self.name, "scale": self.scale, **extra, "gain": round(float(m["psnr"]) - self.glp_psnr, 3),
                "sam": round(float(m["sam"]), 3)}

    def header(self) -> dict:
        return {"scene": self.name, "scale": self.scale, "bands": int(self.L.shape[0]),
                "glp_hs_psnr": round(self.glp_psnr, 3),
                **{k: v for k, v in self.row(self.pnp).items() if k in ("gain", "sam")},
                "pnp_gf_seconds": round(self.pnp_seconds, 1)}


def _subspace(L: np.ndarray, k: int, centred: bool) -> tuple[np.ndarray, np.ndarray]:
    C = L.shape[0]
    flat = L.reshape(C, -1).astype(np.float64)
    mu = flat.mean(1, keepdims=True) if centred else np.zeros((C, 1))
    U = np.linalg.svd(flat - mu, full_matrices=False)[0]
    return U[:, :k].astype(np.float32), mu.astype(np.float32)


def _standardised(f: np.ndarray, like: np.ndarray) -> np.ndarray:
    return ((f - f.mean((1, 2), keepdims=True)) / (f.std((1, 2), keepdims=True) + 1e-8) * like.std()).astype(np.float32)


def learned(s: Scene, k: int, steps: int, hidden: int, seed: int) -> list[dict]:
    torch.manual_seed(seed)
    E, mu = _subspace(s.L, k, centred=True)
    c = s.M.shape[0]
    net = torch.nn.Sequential(torch.nn.Conv2d(c, hidden, 1), torch.nn.GELU(), torch.nn.Conv2d(hidden, hidden, 1),
                              torch.nn.GELU(), torch.nn.Conv2d(hidden, k, 1))
    msi = torch.from_numpy(s.M)[None]
    target = torch.from_numpy(np.einsum("ck,chw->khw", E, s.L - mu[:, :, None]))[None]
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    t0 = time.perf_counter()
    losses = []
    for step in range(steps):
        loss = torch.nn.functional.mse_loss(ops.degrade(net(msi), s.kernel, s.scale, s.phase), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in (0, steps - 1):
            losses.append(float(loss.detach()))
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        a = net(msi)[0].numpy()
    z = np.clip(np.einsum("ck,khw->chw", E, a) + mu[:, :, None], 0, 1)
    zp = s.project(z)
    glob = s.project(s.fuse("glp-hs", radius=0))
    M = s.M
    poly = _standardised(np.stack([M[i] * M[j] for i in range(c) for j in range(i, c)]), M)
    return [s.row(z, variant="network", train_seconds=round(train_s, 1), losses=losses),
            s.row(zp, variant="network, projected"),
            s.row(glob, variant="global fit, projected"),
            s.row(s.rounds(zp, M), variant="rounds from the network"),
            s.row(s.rounds(glob, M), variant="rounds from the global fit (control)"),
            s.row(s.rounds(s.glp, np.concatenate([M, _standardised(a, M)]), FEATURE_EPS), variant="network in the guide"),
            s.row(s.rounds(s.glp, np.concatenate([M, poly]), FEATURE_EPS), variant="band products in the guide (control)")]


def ridge(s: Scene, eps: float) -> dict:
    t0 = time.perf_counter()
    z = s.rounds(s.glp, s.M, eps)
    return s.row(z, variant=f"ridge {eps:g}", seconds=round(time.perf_counter() - t0, 1))


def subspace(s: Scene, k: int) -> dict:
    t0 = time.perf_counter()
    E, _ = _subspace(s.L, k, centred=False)
    P = (s.R @ E).astype(np.float64)  # the SRF on the coefficients (c, k)
    P_pinv = (P.T @ np.linalg.inv(P @ P.T)).astype(np.float32)
    P32 = P.astype(np.float32)
    La = torch.from_numpy(np.einsum("ck,chw->khw", E, s.L).astype(np.float32))
    g = cons.spread_kernels(s.kernel, s.scale, s.spread)
    amp = torch.from_numpy(s.amp)

    def project(a: np.ndarray) -> np.ndarray:  # both observations, on the coefficients
        for _ in range(2):
            with torch.inference_mode():
                a = cons._project_lr(torch.from_numpy(a), La, s.kernel, g, amp, s.scale, s.phase, 30, 1e-4).numpy()
            a = a + np.einsum("km,mhw->khw", P_pinv, s.M - np.einsum("mk,khw->mhw", P32, a))
        return a.astype(np.float32)

    a0 = np.einsum("ck,chw->khw", E, np.clip(s.glp, 0, 1)).astype(np.float32)
    a = plug_and_play(a0, project, lambda y: guided_filter(y, s.M, GUIDE_RADIUS), rounds_for(s.scale), momentum_for(s.scale),
                      clip=False)
    z = s.project(np.einsum("ck,khw->chw", E, a))
    return s.row(z, variant=f"subspace k={k}", seconds=round(time.perf_counter() - t0, 1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("probe", choices=("learned", "ridge", "subspace"))
    ap.add_argument("--scenes", nargs="+", default=["paviau", "dcmall", "salinas_a", "jasper_ridge"], choices=list(SCENES))
    ap.add_argument("--scales", nargs="+", type=int, default=[4])
    ap.add_argument("--k", nargs="+", type=int, default=[8], help="subspace sizes (learned: the first only)")
    ap.add_argument("--eps", nargs="+", type=float, default=[1e-6, 1e-5], help="ridge: the guided filter's ridges")
    ap.add_argument("--steps", type=int, default=400, help="the scene network's Adam steps")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    warnings.simplefilter("ignore", CofusionWarning)
    rows = []
    for scale in args.scales:
        for name in args.scenes:
            s = Scene(name, scale)
            new = [s.header()]
            if args.probe == "learned":
                new += learned(s, args.k[0], args.steps, args.hidden, args.seed)
            elif args.probe == "ridge":
                new += [ridge(s, e) for e in args.eps]
            else:
                new += [subspace(s, k) for k in args.k]
            for r in new:
                print(json.dumps(r), flush=True)
            rows += new
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
