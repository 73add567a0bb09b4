"""Fusion methods: the registry (which imports no method), the classical methods, the pair
check and :func:`~napari_cofusion.fusion.engine.fuse`. Imports ``core`` and ``degrade``; learned
methods register themselves from ``learn`` (see :mod:`napari_cofusion.api`)."""
