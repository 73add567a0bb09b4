"""The CLI's training-loop driver, shared by ``train`` and ``finetune``: progress lines, and
Ctrl-C / SIGTERM that stop the training but still let the command write its weights."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

__all__ = ["train_loop", "sigterm_as_interrupt"]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM (and SIGINT, which a background job started by a script ignores) stop a long
    run like Ctrl-C does, so that it still writes its weights; the old handlers come back after."""
    import signal

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    before = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            before[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in before.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)


def train_loop(tag: str, loop: Iterator[Any], log_every: int) -> Any:
    """Drive a training generator (``learn.train.train`` or ``selfsup.finetune_scene``), printing
    its status lines and every ``log_every``-th step, each validation and the last step. Ctrl-C or
    SIGTERM closes it (the model keeps its best state) and the command goes on to write the
    weights. Returns the last :class:`~napari_cofusion.learn.train.Progress` (None before the first step)."""
    last = None
    with sigterm_as_interrupt():
        try:
            for item in loop:
                if isinstance(item, str):
                    print(f"[{tag}] {item}", flush=True)
                    continue
                last = item
                if item.step % max(log_every, 1) == 0 or item.val or item.done:
                    msg = f"[{tag}] step {item.step}/{item.total} loss {item.loss:.5f} lr {item.lr:.2e} {item.elapsed:.0f} s"
                    if item.val:
                        msg += f" | val PSNR {item.val['psnr']:.3f} SAM {item.val['sam']:.3f}"
                        kept = getattr(item, "best_val", None)
                        if kept and "score" in kept:
                            msg += f" (kept: step {kept['step']}, {kept['score']:.3f} dB with the step)"
                    print(msg, flush=True)
        except KeyboardInterrupt:
            loop.close()
            print(f"[{tag}] stopped at step {last.step if last else 0}", flush=True)
    return last
