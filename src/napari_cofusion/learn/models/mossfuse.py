"""MossFuse: unsupervised HS/MS fusion by self-supervised modality decoupling (Du et al.).

Written for this project from the paper's description and a reading of the authors' public code
(dusongcheng/MossFuse); no code is taken from it. Trained on the pair alone
(:mod:`napari_cofusion.learn.mossfuse_fit`).

Structure (B batch, c MS bands, C HS bands, D width, s scale):

- **Modality decoupling.** Two encoders, one per modality: the HRMSI (B, c, H, W) and the LRHSI
  upsampled to the HR grid (B, C, H, W) each go to a D-channel embedding, a few transposed-attention
  blocks (:class:`Block`), then two heads: a *shared* feature (what both modalities see of the
  scene) and a *complementary* one (spatial detail for the MSI, spectral content for the HSI). The
  MSI's heads are large-kernel depthwise blocks (:class:`LargeKernelBlock`), the HSI's attention
  blocks, following the paper's split (space is the MSI's strength, spectrum the HSI's).
- **Decoupling loss** (:func:`decoupling_loss`): a contrastive term on cosine similarities that
  pulls the two shared features together and pushes every other pair apart (each shared feature
  from its own complementary one, and the two complementary features from each other).
- **Self-supervised constraint**: each modality is reconstructed from its own shared and
  complementary features (:class:`Decoder`), so the decoupled features keep what the input had.
- **Modality aggregation** (:class:`Aggregation`): the two shared features are merged (1×1 conv),
  then the MSI's complementary feature steers a spatial-aware cross attention (a spatial gate on the
  queries, the complementary feature added back under a channel gate) and the HSI's a spectral-aware
  one (a channel gate on the queries, the feature added back under a spatial gate); a head gives
  the C bands.
- **Degradation estimation** (:class:`DegradationNet`): a learned SRF (c, C), non-negative with
  rows that sum to 1, and a learned Gaussian PSF with a full 2×2 covariance (from a lower-triangular
  precision factor); fitted so that the SRF applied to the LRHSI matches the PSF-degraded HRMSI.

Choices the paper leaves open, made here (docs/model.md lists them): width 32 and one block per
stage (the paper's 48 and 3 are too slow to train on a scene on two CPU cores in minutes); the
network predicts a correction to its HS input, the bicubic-upsampled LRHSI or, by default, glp-hs's
fusion (:mod:`~napari_cofusion.learn.mossfuse_fit`: from the upsampled LRHSI, 200 CPU steps reached
29.9 dB on PaviaU ×4, where glp-hs gives 43.8); the PSF kernel side is
``2·round(1.5·s) + 1``; the decimation phase is the one given (the pair's estimate).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_cofusion.core.errors import WeightsError
from napari_cofusion.learn.models.layers import DWConv, LayerNorm2d

__all__ = ["MossFuse", "MossFuseConfig", "Block", "LargeKernelBlock", "CrossAttention", "Aggregation", "Decoder",
           "DegradationNet", "decoupling_loss"]


@dataclass(frozen=True)
class MossFuseConfig:
    hs_bands: int
    ms_bands: int
    scale: int
    width: int = 32
    heads: int = 4
    blocks: int = 1
    ffn: float = 2.0
    phase: int | None = None

    def check(self) -> "MossFuseConfig":
        for k, lo, hi in (("hs_bands", 2, 2048), ("ms_bands", 1, 256), ("scale", 2, 32), ("width", 8, 512),
                          ("heads", 1, 64), ("blocks", 1, 16)):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise WeightsError(f"MossFuse config: {k} = {v!r} must be a whole number from {lo} to {hi}")
        if self.width % self.heads:
            raise WeightsError(f"MossFuse config: width {self.width} must be a multiple of heads {self.heads}")
        if self.ms_bands >= self.hs_bands:
            raise WeightsError("MossFuse config: the MSI must have fewer bands than the HSI")
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "MossFuseConfig":
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise WeightsError(f"MossFuse config: unknown keys {', '.join(unknown)}")
        return cls(**d).check()


class GatedFeedForward(nn.Module):
    """1×1 expand to 2·hidden, depthwise 3×3, GELU(one half) × other half, 1×1 back. (B, D, H, W) → same."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.inp = nn.Conv2d(dim, 2 * hidden, 1, bias=False)
        self.dw = DWConv(2 * hidden, 3)
        self.out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.dw(self.inp(x)).chunk(2, dim=1)
        return self.out(F.gelu(a) * b)


class TransposedAttention(nn.Module):
    """Self-attention across channels (per head, the D/heads × D/heads attention map of L2-normalised
    queries and keys over all pixels, with a learned temperature): cost linear in H·W.
    Optional ``gate`` (B, 1|D, H, W) multiplies the queries. (B, D, H, W) → same."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=False)
        self.dw = DWConv(3 * dim, 3)
        self.proj = nn.Conv2d(dim, dim, 1, bias=False)

    def attend(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        B, D, H, W = x.shape
        q, k, v = self.dw(self.qkv(x)).chunk(3, dim=1)
        if gate is not None:
            q = q * gate
        q, k, v = (t.reshape(B, self.heads, D // self.heads, H * W) for t in (q, k, v))
        attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.temperature
        return (attn.softmax(dim=-1) @ v).reshape(B, D, H, W)

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(self.attend(x, gate))


class Block(nn.Module):
    """Pre-norm transposed attention + gated feed-forward, both residual. (B, D, H, W) → same."""

    def __init__(self, dim: int, heads: int, ffn: float) -> None:
        super().__init__()
        self.n1, self.attn = LayerNorm2d(dim), TransposedAttention(dim, heads)
        self.n2, self.ffn = LayerNorm2d(dim), GatedFeedForward(dim, ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.n1(x))
        return x + self.ffn(self.n2(x))


class LargeKernelBlock(nn.Module):
    """Depthwise large-kernel (7×7) convolution, norm, then an MLP of 1×1 convolutions, residual:
    a wide spatial receptive field at a depthwise cost. (B, D, H, W) → same."""

    def __init__(self, dim: int, kernel: int = 7, ffn: float = 2.0) -> None:
        super().__init__()
        self.dw = DWConv(dim, kernel)
        self.norm = LayerNorm2d(dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, int(dim * ffn), 1), nn.GELU(), nn.Conv2d(int(dim * ffn), dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(self.dw(x)))


class SpatialGate(nn.Module):
    """A (B, 1, H, W) gate in (0, 1) from a 1×1 bottleneck. (B, D, H, W) → (B, 1, H, W)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        r = max(dim // 8, 1)
        self.net = nn.Sequential(nn.Conv2d(dim, r, 1, bias=False), nn.ReLU(), nn.Conv2d(r, 1, 1, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ChannelGate(nn.Module):
    """A (B, D, 1, 1) gate in (0, 1) from the pooled channels (squeeze-excitation). (B, D, H, W) → (B, D, 1, 1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        r = max(dim // 8, 1)
        self.net = nn.Sequential(nn.Linear(dim, r, bias=False), nn.GELU(), nn.Linear(r, dim, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.mean((-2, -1)))[..., None, None]


class CrossAttention(nn.Module):
    """Attention over ``x`` steered by a complementary feature ``y`` (both (B, D, H, W)).

    ``kind="spatial"``: ``y``'s spatial gate weights the queries; ``y`` (depthwise 3×3) is added to
    the attended features under their channel gate. ``kind="spectral"``: ``y``'s channel gate
    weights the queries; ``y`` (1×1) is added under the attended features' spatial gate."""

    def __init__(self, dim: int, heads: int, kind: str) -> None:
        super().__init__()
        if kind not in ("spatial", "spectral"):
            raise ValueError(f"kind must be spatial or spectral, got {kind!r}")
        self.kind = kind
        self.attn = TransposedAttention(dim, heads)
        self.steer = SpatialGate(dim) if kind == "spatial" else ChannelGate(dim)
        self.back = ChannelGate(dim) if kind == "spatial" else SpatialGate(dim)
        self.mix = DWConv(dim, 3) if kind == "spatial" else nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.attn.attend(x, self.steer(y))
        return self.attn.proj(out + self.mix(y) * self.back(out))


class Aggregation(nn.Module):
    """Pre-norm :class:`CrossAttention` + gated feed-forward, both residual: x (B, D, H, W) steered
    by y (B, D, H, W) → (B, D, H, W)."""

    def __init__(self, dim: int, heads: int, ffn: float, kind: str) -> None:
        super().__init__()
        self.n1, self.attn = LayerNorm2d(dim), CrossAttention(dim, heads, kind)
        self.n2, self.ffn = LayerNorm2d(dim), GatedFeedForward(dim, ffn)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.n1(x), y)
        return x + self.ffn(self.n2(x))


class Encoder(nn.Module):
    """bands → D embedding (3×3), ``blocks`` :class:`Block`, then the shared and the complementary
    heads. (B, bands, H, W) → ((B, D, H, W) shared, (B, D, H, W) complementary)."""

    def __init__(self, bands: int, cfg: MossFuseConfig, spatial: bool) -> None:
        super().__init__()
        D = cfg.width
        self.embed = nn.Conv2d(bands, D, 3, padding=1, bias=False)
        self.body = nn.Sequential(*[Block(D, cfg.heads, cfg.ffn) for _ in range(cfg.blocks)])
        if spatial:  # the MSI: large kernels see its spatial detail
            self.shared = nn.Sequential(LargeKernelBlock(D, 7, cfg.ffn), Block(D, cfg.heads, cfg.ffn))
            self.complementary = nn.Sequential(LargeKernelBlock(D, 7, cfg.ffn), LargeKernelBlock(D, 3, cfg.ffn))
        else:  # the HSI: channel attention sees its spectra
            self.shared = nn.Sequential(Block(D, cfg.heads, cfg.ffn), LargeKernelBlock(D, 7, cfg.ffn))
            self.complementary = Block(D, cfg.heads, cfg.ffn)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(self.embed(x))
        return self.shared(f), self.complementary(f)


class Decoder(nn.Module):
    """One modality back from its shared and complementary features (the self-supervised
    constraint): aggregation of the two, a block, a 3×3 head. → (B, bands, H, W)."""

    def __init__(self, bands: int, cfg: MossFuseConfig, kind: str) -> None:
        super().__init__()
        D = cfg.width
        self.agg = Aggregation(D, cfg.heads, cfg.ffn, kind)
        self.head = nn.Sequential(nn.Conv2d(D, D // 2, 3, padding=1, bias=False), nn.LeakyReLU(0.2),
                                  nn.Conv2d(D // 2, bands, 3, padding=1, bias=False))

    def forward(self, shared: torch.Tensor, comp: torch.Tensor) -> torch.Tensor:
        return self.head(self.agg(shared, comp))


class DegradationNet(nn.Module):
    """Learned SRF and PSF. ``srf()``: (c, C), non-negative (softplus). The paper's rows summing to
    1 are not kept: an MS band's gain relative to the HS bands is the sensor's (the ROSIS→IKONOS
    matrix's rows sum to 0.3–1.4), and forcing 1 left PaviaU's MSI loss 6× higher than glp-hs's own
    mismatch. ``psf()``: (k, k) Gaussian, covariance from the precision ``Mᵀ M`` with M
    lower-triangular (any orientation and elongation) plus a ridge that keeps every direction's σ
    under 1.5·s, normalised to sum 1. Initialised flat at 1/C (SRF) and at σ = s/2 (PSF)."""

    def __init__(self, hs_bands: int, ms_bands: int, scale: int) -> None:
        super().__init__()
        self.k = 2 * round(1.5 * scale) + 1
        self.srf_logits = nn.Parameter(torch.full((ms_bands, hs_bands), math.log(math.expm1(1.0 / hs_bands))))
        # the precision factor M: log of its diagonal (so it stays positive: a real pair such as
        # Houston 2018 drove a free diagonal to 0, an infinitely wide PSF) and its off-diagonal term
        # the precision gets a ridge 1/σ_max² (σ_max = 1.5·s, the kernel's half-width): no direction
        # can be wider than the kernel's window (Salinas-A ×4 drove one to an equivalent σ of 1500 px)
        self.min_precision = 1.0 / (1.5 * scale) ** 2
        d0 = math.sqrt((2.0 / scale) ** 2 - self.min_precision)  # σ = s/2 at the start, ridge included
        self.log_diag = nn.Parameter(torch.full((2,), math.log(d0)))
        self.off_diag = nn.Parameter(torch.zeros(()))

    def srf(self) -> torch.Tensor:
        return F.softplus(self.srf_logits)

    def precision(self) -> torch.Tensor:
        """M (2, 2), lower-triangular with a positive diagonal."""
        d = torch.exp(self.log_diag)
        zero = torch.zeros((), dtype=d.dtype, device=d.device)
        return torch.stack([torch.stack([d[0], zero]), torch.stack([self.off_diag, d[1]])])

    def precision_matrix(self) -> torch.Tensor:
        """P = MᵀM + I/σ_max² (2, 2): the Gaussian's inverse covariance."""
        M = self.precision()
        return M.T @ M + self.min_precision * torch.eye(2, dtype=M.dtype, device=M.device)

    def psf(self) -> torch.Tensor:
        P = self.precision_matrix()
        r = torch.arange(self.k, dtype=P.dtype, device=P.device) - self.k // 2
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        z = torch.stack([yy, xx], -1)  # (k, k, 2)
        q = torch.einsum("ijk,km,ijm->ij", z, P, z)
        g = torch.exp(-0.5 * q)
        return g / g.sum()

    def sigma(self) -> float:
        """The equivalent isotropic sigma (HR pixels): the square root of the covariance's mean eigenvalue."""
        cov = torch.linalg.inv(self.precision_matrix().detach().double())
        return float(math.sqrt(float(torch.linalg.eigvalsh(cov).mean())))


def decoupling_loss(ms_shared: torch.Tensor, ms_comp: torch.Tensor, hs_shared: torch.Tensor,
                    hs_comp: torch.Tensor) -> torch.Tensor:
    """−log(e^{cos(Sₘ, Sₕ)} / (e^{cos(Sₘ, Sₕ)} + e^{cos(Sₘ, Cₘ)} + e^{cos(Sₕ, Cₕ)} + e^{cos(Cₘ, Cₕ)})):
    the shared features of the two modalities together, every other pair apart (cosines of the
    whole flattened feature maps)."""
    cos = lambda a, b: F.cosine_similarity(a.flatten(), b.flatten(), dim=0)  # noqa: E731
    pos = torch.exp(cos(ms_shared, hs_shared))
    neg = torch.exp(cos(ms_shared, ms_comp)) + torch.exp(cos(hs_shared, hs_comp)) + torch.exp(cos(ms_comp, hs_comp))
    return -torch.log(pos / (pos + neg))


class MossFuse(nn.Module):
    """See the module docstring. ``forward(msi (B, c, H, W), lr_up (B, C, H, W))`` (``lr_up``: the
    upsampled LRHSI, or a classical fusion the network is to correct) → dict with
    ``fused`` (B, C, H, W), ``msi_rec``, ``hsi_rec`` and the four decoupled features."""

    def __init__(self, cfg: MossFuseConfig) -> None:
        super().__init__()
        self.cfg = cfg.check()
        D = cfg.width
        self.enc_ms = Encoder(cfg.ms_bands, cfg, spatial=True)
        self.enc_hs = Encoder(cfg.hs_bands, cfg, spatial=False)
        self.dec_ms = Decoder(cfg.ms_bands, cfg, "spatial")
        self.dec_hs = Decoder(cfg.hs_bands, cfg, "spectral")
        self.merge = nn.Conv2d(2 * D, D, 1, bias=False)
        self.agg_spatial = Aggregation(D, cfg.heads, cfg.ffn, "spatial")
        self.agg_spectral = Aggregation(D, cfg.heads, cfg.ffn, "spectral")
        self.body = nn.Sequential(*[Block(D, cfg.heads, cfg.ffn) for _ in range(cfg.blocks)])
        self.head = nn.Sequential(nn.Conv2d(D, D // 2, 3, padding=1, bias=False), nn.LeakyReLU(0.2),
                                  nn.Conv2d(D // 2, cfg.hs_bands, 3, padding=1, bias=False))
        nn.init.zeros_(self.head[-1].weight)  # starts as the upsampled LRHSI
        self.degradation = DegradationNet(cfg.hs_bands, cfg.ms_bands, cfg.scale)

    def forward(self, msi: torch.Tensor, lr_up: torch.Tensor, reconstruct: bool = True) -> dict[str, torch.Tensor]:
        ms_s, ms_c = self.enc_ms(msi)
        hs_s, hs_c = self.enc_hs(lr_up)
        f = self.merge(torch.cat([ms_s, hs_s], 1))
        f = self.agg_spectral(self.agg_spatial(f, ms_c), hs_c)
        out = {"fused": lr_up + self.head(self.body(f)), "ms_shared": ms_s, "ms_comp": ms_c, "hs_shared": hs_s,
               "hs_comp": hs_c}
        if reconstruct:
            out["msi_rec"] = self.dec_ms(ms_s, ms_c)
            out["hsi_rec"] = self.dec_hs(hs_s, hs_c)
        return out
