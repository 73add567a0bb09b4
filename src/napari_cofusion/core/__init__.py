"""The core: cubes and their errors, file formats, spectral response functions, degradation
operators, metrics and display helpers. Imports nothing else of the package, and neither Qt nor
napari."""
