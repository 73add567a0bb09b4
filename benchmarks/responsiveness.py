"""Responsiveness of the napari GUI while CoFusion fuses and fine-tunes (issue 16: the event loop
must never stall more than 100 ms).

    xvfb-run -a .venv/bin/python benchmarks/responsiveness.py [--steps 20] [--threads N]

Opens a napari viewer, the bundled CAVE sample (``cave_pair``) and the Fusion dock; then, through
the dock, (1) fuses the pair with CoFusion and its shipped weights and (2) fine-tunes CoFusion for
a few steps, each time with a 10 ms ``QTimer`` probe (:class:`napari_cofusion.gui.stall_probe.StallProbe`)
timestamping the event loop. Prints the max and 99th-percentile stall of each, against the 100 ms
target, and when the stalls over 100 ms happened.

Measured on 2 shared CPU cores under Xvfb (1600×1000), 20 fine-tuning steps (times vary with the
machine's load):

- before: fusion max 64–197 ms; fine-tune max 439–897 ms (99th percentile 41–56 ms): 0.5–0.8 s at
  the click, then 100–650 ms stalls during the steps. Causes found with a stack sampler and
  ``gc.callbacks``: the loss plot redrawn with a full constrained layout at every step (50 ms idle,
  120–340 ms against the training thread), napari's activity bar (240 ms to create,
  ``QApplication.processEvents()`` nested in every update), full garbage collections of napari's
  objects (290–650 ms, in the GUI thread or in the worker holding the GIL).
- after (loss curve drawn at most every 0.5 s without the layout pass, no activity bar, ``gc.freeze()``
  while a job runs, the starting model loaded and adapted in the job instead of the click's slot,
  which took 0.5 s: ``load_weights`` 0.25 s + ``deepcopy`` 0.27 s): fusion max 73–98 ms
  (99th percentile 72–93 ms); fine-tune max 70 ms (99th percentile 36 ms): the target is met.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

TARGET_MS = 100.0
step_times: list[float] = []  # seconds since the probe's start of each training step


def _wait(app, widget, timeout_s: float) -> float:
    t0 = time.perf_counter()
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() - t0 > timeout_s:
            widget.cancel()
            raise SystemExit(f"timed out after {timeout_s:.0f} s")
    return time.perf_counter() - t0


def _measure(app, widget, probe, start, label: str, timeout_s: float) -> tuple[float, float]:
    for _ in range(20):  # settle: layers drawn, docks laid out
        app.processEvents()
        time.sleep(0.01)
    step_times.clear()
    probe.start()
    if start() is None:
        raise SystemExit(f"{label}: the dock refused to start ({widget.error_label.text()})")
    seconds = _wait(app, widget, timeout_s)
    for _ in range(10):  # the job's end: the result layer and its first draw
        app.processEvents()
        time.sleep(0.01)
    probe.stop()
    verdict = "OK" if probe.max_ms <= TARGET_MS else f"ABOVE the {TARGET_MS:.0f} ms target"
    print(f"{label}: {seconds:.1f} s; {probe.summary()}; {verdict}", flush=True)
    big = sorted(((round(t - probe.started, 2), round(s)) for t, s in zip(probe.times, probe.stalls_ms) if s > TARGET_MS))
    print(f"  stalls over {TARGET_MS:.0f} ms (ended at s, ms): {big[:12]}{' …' if len(big) > 12 else ''}")
    if widget.loss_steps:
        print(f"  first step at {step_times[0]:.2f} s, last at {step_times[-1]:.2f} s" if step_times else "")
    if widget.error_label.text():
        print(f"  error shown: {widget.error_label.text()}")
    print(f"  status: {widget.status_label.text()}", flush=True)
    return probe.max_ms, probe.p99_ms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="fine-tuning steps (default 20)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per job before giving up")
    a = ap.parse_args(argv)
    os.environ.setdefault("QT_API", "pyqt6")
    import napari
    import torch

    from napari_cofusion.gui.stall_probe import StallProbe

    if a.threads:
        torch.set_num_threads(a.threads)
    viewer = napari.Viewer(show=True)
    app = napari.qt.get_qapp()
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open_sample("napari-cofusion", "cave_pair")
    _dock, w = viewer.window.add_plugin_dock_widget("napari-cofusion", "Fusion")
    probe = StallProbe(10)
    w.state.events.step.connect(lambda *_: step_times.append(time.perf_counter() - probe.started))
    print(f"napari {napari.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{sys.platform}", flush=True)

    w.method_combo.setCurrentText("cofusion")
    fuse = _measure(app, w, probe, w.run_fusion, "fusion (cofusion, shipped weights, 128×128×31 ×4)", a.timeout)

    w.steps_spin.setValue(a.steps)
    tune = _measure(app, w, probe, w.start_finetune, f"fine-tune ({a.steps} steps, defaults)", a.timeout)
    worst = max(fuse[0], tune[0])
    print(f"worst max stall {worst:.0f} ms (target {TARGET_MS:.0f} ms): {'met' if worst <= TARGET_MS else 'NOT met'}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
