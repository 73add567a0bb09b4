"""Whether the selected pair's two images agree: once per pair, in a background thread, the HRMSI is
degraded to the LRHSI's grid and compared with the LRHSI through a fitted SRF
(:func:`napari_cofusion.degrade.consistency.pair_agreement`); above
:data:`~napari_cofusion.degrade.consistency.PAIR_DISAGREE_RESIDUAL` a warning is shown in the Pair
panel and as a napari notification (once per pair)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from napari_cofusion.gui.fusion.pairing import layer_key
from napari_cofusion.gui.fusion.state import FusionState

__all__ = ["PairAgreement", "pair_observation"]


def pair_observation(lr_layer, scale: int) -> tuple[np.ndarray, int, str]:
    """The PSF kernel and phase to degrade the HRMSI with: the LRHSI's simulation recipe when it has
    one for this scale, else the wald preset at the PROTOCOL phase ``s // 2``; and the PSF's name."""
    from napari_cofusion.degrade.simulate import PSF

    recipe = (getattr(lr_layer, "metadata", {}) or {}).get("recipe") or {}
    if recipe.get("scale") == scale and recipe.get("psf"):
        try:
            psf = PSF.parse(recipe["psf"])
            phase = recipe.get("phase")
            return psf.kernel(scale), int(scale // 2 if phase is None else phase), psf.kind
        except Exception:  # noqa: BLE001 - an odd recipe: fall back to the preset
            pass
    return PSF.parse("wald").kernel(scale), scale // 2, "wald"


class PairAgreement:
    """Checks each new valid pair once; ``show(text)`` gets the warning ("" when none). ``residual``
    and ``warning`` hold the last finished check (for tests); ``worker`` the running one."""

    def __init__(self, state: FusionState, show: Callable[[str], None]) -> None:
        self.state = state
        self._show = show
        self._checked: dict[tuple, float] = {}  # pair key -> residual
        self._key: tuple | None = None
        self.worker = None
        self.residual: float | None = None
        self.warning = ""
        self._closed = False
        state.events.pair.connect(self.check)
        state.events.scale.connect(self.check)

    def close(self) -> None:
        """Stop following the state; a check still running ends without showing anything (its
        widget may be gone)."""
        self._closed = True
        self.state.events.pair.disconnect(self.check)
        self.state.events.scale.disconnect(self.check)

    def _pair_key(self) -> tuple | None:
        s = self.state
        if not s.pair_valid or s.pair.lr is None or s.pair.msi is None:
            return None
        return layer_key(s.pair.lr), layer_key(s.pair.msi), int(s.scale), id(s.pair.lr.data), id(s.pair.msi.data)

    def check(self, *_: Any) -> None:
        if self._closed:
            return
        key = self._pair_key()
        self._key = key
        if key is None:
            self._set("")
            return
        if key in self._checked:
            self._set(self._text(self._checked[key]), notify=False)
            return
        self._set("")
        from napari.qt.threading import create_worker

        from napari_cofusion.degrade.consistency import pair_agreement

        s = self.state
        try:
            lr, msi = np.asarray(s.pair.lr.data, np.float32), np.asarray(s.pair.msi.data, np.float32)
            kernel, phase, _name = pair_observation(s.pair.lr, int(s.scale))
            h, w = lr.shape[-2:]
            msi = msi[:, : h * int(s.scale), : w * int(s.scale)]
        except Exception:  # noqa: BLE001 - no check rather than an error for a nicety
            return
        def safe(*args) -> float:  # advisory: a failing check says nothing rather than erroring
            try:
                return pair_agreement(*args)
            except Exception:  # noqa: BLE001
                return float("nan")

        worker = create_worker(safe, lr, msi, kernel, int(s.scale), phase, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda r, k=key: self._done(k, r))
        worker.finished.connect(lambda w=worker: self._finished(w))
        self.worker = worker
        worker.start()

    def _finished(self, worker) -> None:
        if self.worker is worker:
            self.worker = None

    def _text(self, residual: float) -> str:
        from napari_cofusion.degrade.consistency import PAIR_DISAGREE_RESIDUAL

        if not np.isfinite(residual) or residual <= PAIR_DISAGREE_RESIDUAL:
            return ""
        return (f"the LRHSI and the HRMSI disagree: the HRMSI degraded to the LRHSI's grid matches it only to a "
                f"relative residual of {residual:.2f} (pairs of one scene stay below {PAIR_DISAGREE_RESIDUAL:g}). "
                "They may show different scenes or be misplaced: check that you picked the right two layers")

    def _done(self, key: tuple, residual: float) -> None:
        if self._closed:
            return
        first = key not in self._checked
        self._checked[key] = float(residual)
        if key != self._key:
            return  # the pair changed meanwhile
        self.residual = float(residual)
        self._set(self._text(float(residual)), notify=first)

    def _set(self, text: str, notify: bool = False) -> None:
        self.warning = text
        self._show(text)
        if text and notify:
            from napari_cofusion.gui.layers import show_warning

            show_warning(text)
