"""CoFusion (arXiv 2604.10584): a three-level multi-scale generator for HS/MS fusion.

The paper has no public code; this is a re-implementation from its text and figure. Every
place where the paper leaves a choice open is decided here and documented in ``docs/model.md``.

Shapes: B batch, C hyperspectral bands, c multispectral bands, (h, w) LR size, (H, W) = s·(h, w)
HR size, D hidden width (64).

Overview (``CoFusion.forward``)::

    U   = upsample(LRHSI)                        (B, C, H, W)   phase-aware bicubic (or a
                                                 classical fusion as base, config ``base``)
    X   = concat(U, HRMSI)                       (B, C+c, H, W)
    level l = 0, 1, 2 at 1/2^l resolution:
        E_l = Encoder_l(bilinear_down(X, 2^l))   local features  (B, D, H/2^l, W/2^l)
    F_2 = Stage_2(E_2)
    F_1 = Stage_1(E_1 + up(F_2))                 global proxy features from the coarser level
    F_0 = Stage_0(E_0 + up(F_1))
    Z   = U + ρ·Head(LN(F_0))                    global residual (ρ = residual_scale)

    Stage = n × CoFusionBlock;  CoFusionBlock(F) = F + γ ⊙ SSCFM(SpaCAM(F), SpeCAM(F))  (LayerScale γ)
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_cofusion.core import ops
from napari_cofusion.core.errors import WeightsError
from napari_cofusion.learn.models.layers import DWConv, HaarDWT, LayerNorm2d, MaxPoolSame

__all__ = ["CoFusionConfig", "CoFusion", "SpaCAM", "SpeCAM", "SSCFM", "CoFusionBlock"]


@dataclass
class CoFusionConfig:
    hs_bands: int = 31
    ms_bands: int = 3
    scale: int = 4
    width: int = 64
    depths: tuple[int, int, int] = (1, 2, 33)  # blocks at full, 1/2 and 1/4 resolution
    base: str = "bicubic"  # global residual: "bicubic" (the paper) or "glp-hs" (classical fusion)
    dilations: tuple[int, ...] = (1, 2, 4)
    top_k: int = 16
    se_ratio: int = 4
    dropout: float = 0.1
    ffn_expansion: int = 2
    phase: int | None = None  # decimation phase of the LRHSI (default scale // 2)
    # the head predicts the correction in units of this (about the base's typical error), so
    # that the network works with values of order one (see docs/model.md); None: 0.01 over the
    # glp-hs base, 0.1 over bicubic (whose errors are ten times larger)
    residual_scale: float | None = None
    # initial per-channel scale of every block's residual branch (LayerScale): the deep stack
    # starts close to the identity (see docs/model.md)
    layer_scale: float = 0.01

    def __post_init__(self) -> None:
        if self.residual_scale is None:
            self.residual_scale = 0.01 if self.base == "glp-hs" else 0.1
        self.check()

    #: sane bounds: a card or a command line outside them is refused before anything is built
    LIMITS = {"hs_bands": (1, 4096), "ms_bands": (1, 512), "scale": (2, 32), "width": (4, 512), "top_k": (1, 512),
              "se_ratio": (1, 512), "ffn_expansion": (1, 16)}

    def check(self) -> None:
        """Raise :class:`WeightsError` naming the field when the configuration is outside sane
        bounds (e.g. a card asking for 33 000 blocks would need gigabytes before any check)."""
        def bad(msg: str) -> WeightsError:
            return WeightsError(f"CoFusion configuration: {msg}")

        for name, (lo, hi) in self.LIMITS.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise bad(f"{name} = {v!r} is outside {lo}–{hi}")
        if self.width % 4:
            raise bad(f"width = {self.width} must be a multiple of 4 (the fusion module splits channels in four)")
        if len(self.depths) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 64
                                        for d in self.depths):
            raise bad(f"depths = {list(self.depths)}: three levels of 0–64 blocks each")
        if not self.dilations or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 32
                                     for d in self.dilations) or len(self.dilations) > 8:
            raise bad(f"dilations = {list(self.dilations)}: 1–8 dilations of 1–32")
        if self.base not in ("bicubic", "glp-hs"):
            raise bad(f"base = {self.base!r}: use bicubic or glp-hs")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise bad(f"dropout = {self.dropout!r} must be in [0, 1)")
        if self.phase is not None and (isinstance(self.phase, bool) or not isinstance(self.phase, int)
                                       or not 0 <= self.phase < self.scale):
            raise bad(f"phase = {self.phase!r} must be an integer in [0, {self.scale})")
        for name in ("residual_scale", "layer_scale"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 < v <= 10):
                raise bad(f"{name} = {v!r} must be in (0, 10]")

    def to_json(self) -> dict:
        d = asdict(self)
        d["depths"] = list(self.depths)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "CoFusionConfig":
        """The configuration of a card's ``config``: unknown keys are refused (a typo would
        otherwise silently build the default), lists become tuples, bounds are checked."""
        if not isinstance(d, dict):
            raise WeightsError(f"CoFusion configuration: expected a JSON object, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise WeightsError(f"CoFusion configuration: unknown keys {', '.join(unknown)}")
        kw = dict(d)
        for k in ("depths", "dilations"):
            if k in kw:
                if not isinstance(kw[k], (list, tuple)):
                    raise WeightsError(f"CoFusion configuration: {k} must be a list, got {kw[k]!r}")
                kw[k] = tuple(kw[k])
        try:
            return cls(**kw)
        except TypeError as exc:
            raise WeightsError(f"CoFusion configuration: {exc}") from None


class SpaCAM(nn.Module):
    """Spatial context attention: multi-dilation context with softmax-gated spatial blocks.

    P = maxpool3×3(F) (stride 1); for each dilation d: context D_d = PW(DWConv_d(P)) and value
    V_d = GELU(DWConv_d'(F)); out = Σ_d softmax_d(D)_d ⊙ V_d + F, the softmax running over the
    dilation branches at each position and channel. (B, D, H, W) → (B, D, H, W).
    """

    def __init__(self, dim: int, dilations: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        self.pool = MaxPoolSame(3)
        self.context = nn.ModuleList(nn.Sequential(DWConv(dim, 3, d), nn.Conv2d(dim, dim, 1)) for d in dilations)
        self.value = nn.ModuleList(DWConv(dim, 3, d) for d in dilations)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pool(x)
        ctx = [c(p) for c in self.context]
        # softmax over the branches, written out: stacking the branches and a softmax over a
        # leading axis cost several times more on the CPU than these few elementwise passes
        top = functools.reduce(torch.maximum, ctx)
        num = den = None
        for c, v in zip(ctx, self.value):
            e = torch.exp(c - top)
            val = F.gelu(v(x))
            num = e * val if num is None else torch.addcmul(num, e, val)
            den = e if den is None else den + e
        return self.proj(num / den) + x


class SpeCAM(nn.Module):
    """Spectral context attention through a wavelet split and spectral coordinate mixing.

    LL, HF = HaarDWT(F); L = GELU(DWConv(LL)), Hh = GELU(DWConv(HF)); saliency vectors by
    max-pooling each over a local window (``pool``×``pool`` at half resolution, see docs/model.md
    for why not global): s_L (B, D, h, w), s_H from the subband sum; spectral coordinate mixing:
    at each position only the top-K coordinates (channels) of each saliency vector are kept, and
    a pointwise linear map of the pair gives α = sigmoid(·) ∈ (0, 1)^D;
    out = GELU(DWConv(IDWT(α ⊙ L, (1 − α) ⊙ Hh))) + F.
    (B, D, H, W) → (B, D, H, W), H and W even.
    """

    def __init__(self, dim: int, top_k: int = 16, pool: int = 5) -> None:
        super().__init__()
        self.dwt = HaarDWT()
        self.low = DWConv(dim, 3)
        self.high = nn.Conv2d(3 * dim, 3 * dim, 3, padding=1, groups=3 * dim)
        self.pool = MaxPoolSame(pool)
        self.top_k = min(top_k, dim)
        self.mix = nn.Conv2d(2 * dim, dim, 1)
        self.out = DWConv(dim, 3)

    def _topk(self, s: torch.Tensor) -> torch.Tensor:
        """Keep the K largest channels of (B, D, h, w) at every position, zero the others."""
        idx = s.topk(self.top_k, dim=1).indices
        return torch.zeros_like(s).scatter(1, idx, s.gather(1, idx))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d = x.shape[:2]
        ll, hf = self.dwt(x)
        lo = F.gelu(self.low(ll))
        hi = F.gelu(self.high(hf))
        hi5 = hi.reshape(b, d, 3, *hi.shape[-2:])
        s_lo = self.pool(lo)
        s_hi = self.pool(hi5.sum(2))
        alpha = torch.sigmoid(self.mix(torch.cat([self._topk(s_lo), self._topk(s_hi)], 1)))
        y = self.dwt.inverse(alpha * lo, (hi5 * (1 - alpha).unsqueeze(2)).reshape_as(hi))
        return F.gelu(self.out(y)) + x


class LargeKernelAttention(nn.Module):
    """Attention map from 3×3 and 5×5 depthwise convolutions mixed by a softmax mask over the
    two, then a pointwise projection; the input is multiplied by it. (B, D, H, W) → same.

    The mask's logits are per-channel linear functions of the two responses; a softmax over two
    logits is the sigmoid of their difference, so the mask is m = sigmoid(w₃·a₃ + w₅·a₅ + b) and
    the mixed response m·a₃ + (1 − m)·a₅ (one fused pass instead of stacking the pair).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.k3 = DWConv(dim, 3)
        self.k5 = DWConv(dim, 5)
        self.mask_w = nn.Parameter(torch.zeros(2, 1, dim, 1, 1))
        self.mask_b = nn.Parameter(torch.zeros(1, dim, 1, 1))
        nn.init.normal_(self.mask_w, std=0.1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a3, a5 = self.k3(x), self.k5(x)
        m = torch.sigmoid(torch.addcmul(torch.addcmul(self.mask_b, self.mask_w[0], a3), self.mask_w[1], a5))
        # lerp with m in the responses' dtype: under bf16 autocast the convolutions give bf16 and
        # the mask float32 (addcmul with float32 parameters), which lerp does not mix
        return x * self.proj(torch.lerp(a5, a3, m.to(a5.dtype)))


class SpectralSE(nn.Module):
    """Spectral squeeze-excitation: max-pool over a local window, Linear–ReLU–Linear applied at
    every position (1×1 convolutions), sigmoid channel weights. (B, D, H, W) → same."""

    def __init__(self, dim: int, ratio: int = 4, pool: int = 7) -> None:
        super().__init__()
        hid = max(dim // ratio, 4)
        self.pool = MaxPoolSame(pool)
        self.fc = nn.Sequential(nn.Conv2d(dim, hid, 1), nn.ReLU(inplace=True), nn.Conv2d(hid, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(self.pool(x)))


class SSCFM(nn.Module):
    """Spatial-spectral cross-fusion.

    S' = LKA(LN(S)), P' = SE(LN(P)); both are split into four channel groups and interleaved
    [S'_1, P'_1, …, S'_4, P'_4] so the fusing convolution sees each spatial group beside its
    spectral partner; channel dropout (10 %, training only) masks whole feature maps; a 3×3
    convolution fuses the 2D channels back to D, and a pointwise feed-forward refines them.
    (B, D, H, W) × 2 → (B, D, H, W) (the block adds the residual).
    """

    def __init__(self, dim: int, se_ratio: int = 4, dropout: float = 0.1, groups: int = 4, ffn_expansion: int = 2) -> None:
        super().__init__()
        if dim % groups:
            raise ValueError(f"width {dim} must be divisible by the {groups} cross-fusion groups")
        self.groups = groups
        self.norm_s, self.norm_p = LayerNorm2d(dim), LayerNorm2d(dim)
        self.lka = LargeKernelAttention(dim)
        self.se = SpectralSE(dim, se_ratio)
        self.drop = nn.Dropout2d(dropout)
        self.fuse = nn.Conv2d(2 * dim, dim, 3, padding=1)
        hid = dim * ffn_expansion
        self.ffn = nn.Sequential(LayerNorm2d(dim), nn.Conv2d(dim, hid, 1), nn.GELU(), nn.Conv2d(hid, dim, 1))

    def forward(self, s: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        s = self.lka(self.norm_s(s))
        p = self.se(self.norm_p(p))
        # the fusing conv's input is [S1, P1, …, S4, P4]; instead of building that interleaved
        # copy, its weight is split into the columns that see S and those that see P
        d, g = s.shape[1], self.groups
        wgt = self.fuse.weight.unflatten(1, (g, 2, d // g))  # (D, g, 2, D/g, 3, 3)
        ws, wp = wgt[:, :, 0].flatten(1, 2), wgt[:, :, 1].flatten(1, 2)
        y = F.conv2d(self.drop(s), ws, self.fuse.bias, padding=1) + F.conv2d(self.drop(p), wp, padding=1)
        return y + self.ffn(y)


class CoFusionBlock(nn.Module):
    """F + γ ⊙ SSCFM(SpaCAM(F), SpeCAM(F)), γ a learned per-channel scale (LayerScale) that starts
    at ``cfg.layer_scale``. (B, D, H, W) → (B, D, H, W)."""

    def __init__(self, cfg: CoFusionConfig) -> None:
        super().__init__()
        d = cfg.width
        self.spa = SpaCAM(d, cfg.dilations)
        self.spe = SpeCAM(d, cfg.top_k)
        self.fusion = SSCFM(d, cfg.se_ratio, cfg.dropout, 4, cfg.ffn_expansion)
        self.gamma = nn.Parameter(torch.full((1, d, 1, 1), float(cfg.layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(x, self.gamma, self.fusion(self.spa(x), self.spe(x)))


class Encoder(nn.Module):
    """Local feature encoder of one pyramid level: (B, C+c, h, w) → (B, D, h, w)."""

    def __init__(self, cin: int, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, dim, 3, padding=1), nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CoFusion(nn.Module):
    """The multi-scale generator. ``forward(lr (B, C, h, w), msi (B, c, s·h, s·w)) → (B, C, s·h, s·w)``.

    Any image size: the HR inputs are padded (reflect) to a multiple of 8 inside and the output
    cropped back; no layer depends on the input size. Band counts and scale are fixed by the
    config (weights are trained for them).
    """

    levels = 3
    #: CPU inference (learn.infer.forward): bf16 autocast and channels_last, 1.99× faster on a 512²
    #: scene here and −0.002 dB on the validation scenes (benchmarks/precision.py, docs/model.md)
    cpu_inference = {"bf16": True, "channels_last": True}

    def __init__(self, cfg: CoFusionConfig | None = None, **kw) -> None:
        super().__init__()
        self.cfg = cfg = cfg or CoFusionConfig(**kw)
        d, cin = cfg.width, cfg.hs_bands + cfg.ms_bands
        self.encoders = nn.ModuleList(Encoder(cin, d) for _ in range(self.levels))
        self.stages = nn.ModuleList(nn.Sequential(*[CoFusionBlock(cfg) for _ in range(n)]) for n in cfg.depths)
        self.merge = nn.ModuleList(nn.Conv2d(d, d, 1) for _ in range(self.levels - 1))
        # the residual stream grows along the 36 blocks (to a std of about 7 at the top): the head
        # reads it through a LayerNorm so that its scale does not depend on the depth
        self.head = nn.Sequential(LayerNorm2d(d), nn.Conv2d(d, d, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(d, cfg.hs_bands, 3, padding=1))
        # the correction starts at zero: an untrained model returns its base (bicubic or
        # the classical fusion) and training can only move it from there
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def upsample_lr(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return ops.upsample(lr, self.cfg.scale, self.cfg.phase, out_size=size)

    def forward(self, lr: torch.Tensor, msi: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """``base`` (B, C, H, W) replaces the bicubic global residual when the config says
        ``base="glp-hs"`` (the caller computes it once per scene: see ``model_method``)."""
        H, W = msi.shape[-2:]
        if lr.shape[1] != self.cfg.hs_bands or msi.shape[1] != self.cfg.ms_bands:
            raise ValueError(
                f"model expects {self.cfg.hs_bands} HS and {self.cfg.ms_bands} MS bands, "
                f"got {lr.shape[1]} and {msi.shape[1]}"
            )
        u = self.upsample_lr(lr, (H, W)) if base is None else base
        mult = 2 ** self.levels
        ph, pw = (-H) % mult, (-W) % mult
        x = torch.cat([u, msi], 1)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        feats = None
        for lvl in reversed(range(self.levels)):
            xi = x if lvl == 0 else F.interpolate(x, scale_factor=0.5**lvl, mode="bilinear", align_corners=False, antialias=True)
            e = self.encoders[lvl](xi)
            if feats is not None:
                e = e + self.merge[lvl](F.interpolate(feats, size=e.shape[-2:], mode="bilinear", align_corners=False))
            feats = self.stages[lvl](e)
        out = self.head(feats)[..., :H, :W]
        return u + self.cfg.residual_scale * out

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
