"""The plugin's exceptions: one base class, a few specific kinds.

Every error meant for the user derives from :class:`CofusionError`; its message names the file,
layer or argument and what is wrong with it. The CLI prints it as one line (exit code 2) and the
napari widgets show it in their error line and as a notification. Anything else escaping the
core is a bug.

None of these derives from ``RuntimeError``: superqt's generator workers take a ``RuntimeError``
for "worker deleted" and would swallow it.
"""

from __future__ import annotations

__all__ = ["CofusionError", "CubeError", "WeightsError", "DeviceError", "TrainingError", "Cancelled", "CofusionWarning"]


class CofusionError(Exception):
    """Base class: a problem the user can fix, described in the message."""


class CubeError(CofusionError, ValueError):
    """Bad input data: an unreadable file, a wrong shape, a pair that does not fit, a bad argument."""


class WeightsError(CofusionError, ValueError):
    """Weights that cannot be used: missing or unsafe file, bad card, unknown architecture, or
    weights for other band counts or another scale than the input."""


class DeviceError(CofusionError):
    """A compute device that is not available (e.g. CUDA asked for on a machine without it)."""


class TrainingError(CofusionError):
    """Training that cannot go on (no scenes, a diverging loss)."""


class Cancelled(CofusionError):
    """The user stopped a job."""


class CofusionWarning(UserWarning):
    """Data was changed on the way in (e.g. values clipped to [0, 1], with the count): the CLI
    prints it as one line, the napari reader shows it as a notification."""
