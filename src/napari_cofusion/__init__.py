"""napari-cofusion: hyperspectral / multispectral image fusion."""
__version__ = "0.1.0"
