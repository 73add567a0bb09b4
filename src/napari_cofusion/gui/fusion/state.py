"""The Fusion widget's state: one evented object the panels write to and observe.

Each field is a psygnal signal (``state.events.<field>``, emitted with the new and the old value
when the value changes). A panel changes the state instead of another panel's widgets, and keeps
its own widgets in step with the fields it observes; the job runner turns the typed job updates
(:mod:`napari_cofusion.jobs`) into field changes. Qt-free, so it can be driven and checked alone.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from psygnal import evented

from napari_cofusion.gui.fusion.pairing import Pair, check_layers

__all__ = ["JobKind", "Pair", "FusionState"]


class JobKind(Enum):
    """What the running job does; the value names it in messages ("… failed: …")."""

    FUSION = "fusion"
    FINETUNE = "fine-tuning"
    ESTIMATE = "estimating the degradations"


_IDENTITY = ("finetuned_model", "finetuned_info", "degradation", "degradation_report", "step")


@evented(equality_operators={"pair": Pair.same, **{name: operator.is_ for name in _IDENTITY}})
@dataclass
class FusionState:
    """Everything the panels share.

    ``pair`` / ``pair_chosen``: the selected layers, and whether the user (or Simulate) chose them
    (then the Pair panel stops guessing). ``scale``, ``pair_info``, ``pair_note``, ``pair_problem``:
    what :func:`~napari_cofusion.gui.fusion.pairing.check_layers` says about the pair (always set
    together by :meth:`select_pair`). ``simulate_settings``: the Simulate panel's ``simulate_pair``
    arguments (the fine-tune's recipe for a reference without one). ``device``: where CoFusion runs
    and trains. ``weights_paths``: weights files added in this session. ``busy`` / ``job``: a job
    runs, and which kind. ``status`` / ``error``: the status line and the error shown to the user.
    ``progress``: (done, total) with total 0 for "busy, no count yet". ``step``: the last training
    step (its loss is appended to ``loss_steps`` / ``loss_values`` first). ``finetuned_model`` /
    ``finetuned_info``: the session's fine-tuned model and its card's training record.
    ``degradation`` / ``degradation_key``: the last PSF / SRF estimate and the pair and choices it is
    for; ``degradation_report``: what the last scene-only fine-tune reported.
    """

    pair: Pair = field(default_factory=Pair)
    pair_chosen: bool = False
    scale: int | None = None
    pair_info: str = ""
    pair_note: str = ""
    pair_problem: str = ""
    simulate_settings: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    weights_paths: tuple[Path, ...] = ()
    busy: bool = False
    job: JobKind | None = None
    status: str = ""
    error: str = ""
    progress: tuple[int, int] = (0, 1)
    step: Any = None
    loss_steps: list[int] = field(default_factory=list)
    loss_values: list[float] = field(default_factory=list)
    finetuned_model: Any = None
    finetuned_info: dict[str, Any] = field(default_factory=dict)
    degradation: Any = None
    degradation_key: tuple | None = None
    degradation_report: dict[str, Any] | None = None

    @property
    def pair_valid(self) -> bool:
        return self.scale is not None

    @property
    def no_pair_reason(self) -> str:
        """Why there is no pair to fuse (for a refused action)."""
        return self.pair_problem or "select an LRHSI and an HRMSI layer first"

    def select_pair(self, lr, msi, reference=None, chosen: bool | None = None) -> None:
        """Select the pair and check it; the observers see the new pair and its texts together."""
        pair = Pair(lr, msi, reference)
        check = check_layers(pair)
        with self.events.paused():
            if chosen is not None:
                self.pair_chosen = chosen
            self.pair = pair
            self.scale = check.scale
            self.pair_info = check.info
            self.pair_note = check.note
            self.pair_problem = check.problem

    def pair_cubes(self) -> tuple[Any, Any] | None:
        """The selected pair as (LRHSI, HRMSI) cubes for a job about to start; None, with the
        reason shown as the error, when a job is running or the pair cannot be used."""
        from napari_cofusion.core.errors import CofusionError
        from napari_cofusion.gui.layers import layer_cube

        if self.busy:
            return None
        if not self.pair_valid:
            self.fail(self.no_pair_reason)
            return None
        try:
            return layer_cube(self.pair.lr), layer_cube(self.pair.msi)
        except CofusionError as exc:
            self.fail(str(exc))
            return None

    def fail(self, message: str) -> None:
        """Show ``message`` as the error (emitted even when it repeats the last one)."""
        self.error = ""
        self.error = message

    def clear_error(self) -> None:
        self.error = ""

    def record_step(self, progress: Any) -> None:
        """A training step: its loss joins the curve, then ``step`` announces it."""
        self.loss_steps.append(int(progress.step))
        self.loss_values.append(float(progress.loss))
        self.step = progress

    def reset_loss(self) -> None:
        self.loss_steps.clear()
        self.loss_values.clear()
        self.step = None

    def add_weights_path(self, path: Path) -> None:
        if all(p.resolve() != path.resolve() for p in self.weights_paths):
            self.weights_paths = (*self.weights_paths, path)
