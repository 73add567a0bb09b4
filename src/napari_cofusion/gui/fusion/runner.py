"""The Fusion widget's single job runner: runs a job generator of :mod:`napari_cofusion.jobs` in a
napari ``thread_worker``, routes each typed update to the state by its type, and hands the
outcome to the handler registered for the job's :class:`~napari_cofusion.gui.fusion.state.JobKind`.

Cancel sets :attr:`JobRunner.cancel_event` (tiled inference stops at the next tile) and quits the
worker, which stops at the job's next yield; the job is then closed (a fine-tune's training loop
runs its ``finally``: the model stays usable).
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from napari_cofusion.core.errors import Cancelled
from napari_cofusion.gui.fusion.state import FusionState, JobKind
from napari_cofusion.jobs import Heartbeat, JobUpdate, Status, Step, Tiles

__all__ = ["JobOutcome", "JobRunner", "ACTIVITY_INTERVAL_S"]

#: napari's activity bar is updated at most this often (s): its ``setValue`` runs
#: ``QApplication.processEvents()`` inside our slot (a nested event loop, a stall of its own)
ACTIVITY_INTERVAL_S = 1.0
#: whether jobs also appear in napari's activity bar (off by default: the dock shows the progress
#: itself, and creating napari's bar froze the GUI for 240 ms at each start, benchmarks/responsiveness.py)
ACTIVITY_BAR = False


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended: its result (None unless it returned one), whether it was cancelled or
    failed (the error is already shown), and the ``context`` it was started with."""

    kind: JobKind
    result: Any
    cancelled: bool
    failed: bool
    context: Any = None


@dataclass
class _Running:
    kind: JobKind
    job: Iterator[JobUpdate]
    desc: str
    context: Any
    result: Any = None
    failed: bool = False


def _drive(job: Iterator[JobUpdate]) -> Iterator[JobUpdate]:
    """The worker's generator function: runs a job generator created (and kept) by the runner."""
    return (yield from job)


class JobRunner:
    """One job at a time; ``handlers[kind](outcome)`` runs when a job of that kind has finished."""

    def __init__(self, state: FusionState) -> None:
        self.state = state
        self.cancel_event = threading.Event()
        self.worker = None
        self.handlers: dict[JobKind, Callable[[JobOutcome], None]] = {}
        self._running: _Running | None = None
        self._pbar = None
        self._pbar_time = float("-inf")
        self.activity_bar = ACTIVITY_BAR

    def start(self, job: Iterator[JobUpdate], kind: JobKind, desc: str, total: int, context: Any = None) -> Any:
        """Run ``job`` in a worker (None while another job runs); returns the worker."""
        from napari.qt.threading import thread_worker

        if self.worker is not None:
            return None
        if not isinstance(kind, JobKind):
            raise TypeError(f"the job kind must be a JobKind, not {kind!r}")
        self.state.clear_error()
        self.cancel_event.clear()
        self._running = _Running(kind, job, desc, context)
        worker = thread_worker(_drive, start_thread=False, ignore_errors=True)(job)
        worker.yielded.connect(self.handle_update)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        with self.state.events.paused():
            self.state.progress = (0, max(int(total), 1))
            self.state.job = kind
            self.state.busy = True
        self._open_napari_progress(desc, total)
        # napari's objects go to the permanent generation while the job runs: a full collection then
        # scans only what is new (one took 290-650 ms, on either thread, a freeze of the GUI)
        gc.freeze()
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running job at its next yield (fine-tuning: at the next step, keeping the model)."""
        if self.worker is None:
            return
        self.cancel_event.set()
        self.state.status = "cancelling…"
        self.worker.quit()

    # ------------------------------------------------------------------ updates, by type
    def handle_update(self, update: JobUpdate) -> None:
        """Route one update of the running job to the state."""
        state = self.state
        match update:
            case Heartbeat():
                return
            case Status(text=text):
                state.status = text
                state.progress = (0, 0)  # busy until the steps start
            case Tiles(done=done, total=total):
                state.progress = (int(done), max(int(total), 1))
                running = self._running
                if running is not None and running.kind is JobKind.FUSION and total > 1:
                    state.status = f"{running.desc}: tile {done}/{total}"
                # last: napari's progress bar may process events, running a queued ``finished``
                # slot inside this one; nothing here may overwrite what that slot shows
                self._napari_progress(int(done), int(total))
            case Step(progress=item):
                state.record_step(item)
                state.progress = (int(item.step), max(int(item.total), 1))
                state.status = (f"step {item.step}/{item.total} · loss {item.loss:.5f} · lr {item.lr:.2e} · "
                                f"{item.elapsed:.0f} s")
                self._napari_progress(int(item.step), int(item.total))  # last (see above)
            case _:
                raise TypeError(f"not a job update: {update!r}")

    # ------------------------------------------------------------------ the end of a job
    def _on_returned(self, result: Any) -> None:
        if self._running is not None:
            self._running.result = result

    def _on_errored(self, exc: BaseException) -> None:
        running = self._running
        if running is None:
            return
        running.failed = True
        if isinstance(exc, Cancelled):
            self.state.status = f"{running.kind.value} cancelled"
        else:
            # the status line must not keep saying "fusing…": it says the job failed, the error label why
            self.state.status = f"{running.kind.value} failed (see the message below)"
            self.state.fail(f"{running.kind.value} failed: {exc}")

    def _on_finished(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            try:
                running.job.close()  # after a Cancel: runs the training loop's finally (model usable, eval mode)
            except Exception as exc:  # noqa: BLE001 - never let a slot raise
                self.state.fail(f"while stopping: {exc}")
            outcome = JobOutcome(running.kind, running.result, self.cancel_event.is_set(), running.failed,
                                 running.context)
            handler = self.handlers.get(running.kind)
            if handler is not None:
                try:
                    handler(outcome)
                except Exception as exc:  # noqa: BLE001 - never let a slot raise
                    self.state.fail(f"{running.kind.value} ended, but its result could not be used: {exc}")
        self._close_napari_progress()
        gc.unfreeze()
        self.worker = None
        with self.state.events.paused():
            if self.state.progress[1] == 0:
                self.state.progress = (0, 1)
            self.state.job = None
            self.state.busy = False

    # ------------------------------------------------------------------ napari's activity bar
    def _open_napari_progress(self, desc: str, total: int) -> None:
        self._pbar_time = float("-inf")
        if not self.activity_bar:
            self._pbar = None
            return
        try:
            from napari.utils import progress

            self._pbar = progress(total=total, desc=desc)
        except Exception:  # noqa: BLE001 - napari's activity bar is a nicety
            self._pbar = None

    def _napari_progress(self, done: int, total: int) -> None:
        if self._pbar is None:
            return
        now = time.monotonic()
        if done < total and now - self._pbar_time < ACTIVITY_INTERVAL_S:
            return
        self._pbar_time = now
        try:
            if self._pbar.total != total:
                self._pbar.total = total
            self._pbar.update(done - self._pbar.n)
        except Exception:  # noqa: BLE001
            pass

    def _close_napari_progress(self) -> None:
        if self._pbar is not None:
            try:
                self._pbar.close()
            except Exception:  # noqa: BLE001
                pass
            self._pbar = None
