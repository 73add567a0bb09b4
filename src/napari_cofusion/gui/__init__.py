"""The napari layer: npe2 adapters (readers, writers, samples), dock widgets and plots. Thin: it
calls :mod:`napari_cofusion.api` and :mod:`napari_cofusion.jobs` and holds no computation."""
