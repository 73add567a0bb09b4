"""Learned fusion: networks and their shared layers, devices, training, scene-only fine-tuning,
tiled inference, safetensors weights with JSON cards, and the ``cofusion`` fusion method.
Imports ``core``, ``degrade`` and ``fusion``."""
