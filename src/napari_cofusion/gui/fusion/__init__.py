"""The Fusion dock widget (``napari.yaml``: ``napari_cofusion.gui.fusion:FusionWidget``), built from
panels around an evented state and one job runner; see :mod:`.widget`."""

from napari_cofusion.gui.fusion.widget import FusionWidget

__all__ = ["FusionWidget"]
