"""Helpers every command shares: JSON output, output checks, value parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

JSON_HELP = "print the result as JSON on stdout instead of text"


# ---------------------------------------------------------------------------- shared helpers
def _fmt_metrics(d: dict[str, float]) -> str:
    return "  ".join(f"{k.upper()} {v:.4f}" for k, v in d.items())


def _print_json(obj: Any) -> None:
    """``--json``: the result as JSON on stdout (numpy values as lists / numbers; NaN and infinities,
    which JSON does not have, as null; anything else as its text)."""
    from napari_cofusion.core.io.common import json_text

    print(json_text(obj, fallback=str))


def _norm(v: str) -> Any:
    try:
        return float(v)
    except ValueError:
        return v


def _auto(v: str | None) -> str | None:
    return None if v in (None, "", "auto", "estimate") else v


def _check_out(path: "str | Path", overwrite: bool) -> Path:
    """An output cube checked before any work (:func:`napari_cofusion.core.io.check_output`)."""
    from napari_cofusion.core.io import check_output

    return check_output(path, overwrite)


def _weights_out(out: str, overwrite: bool) -> Path:
    """``--out`` of train/finetune: NAME.safetensors (+ NAME.json), checked before training."""
    from napari_cofusion.learn.weights import check_weights_target

    return check_weights_target(out, overwrite)[0]
