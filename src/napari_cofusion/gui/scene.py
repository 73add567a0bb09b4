"""The viewer's cube layers as one scene: placed in one world frame, shown with sensible defaults.

One :class:`Scene` per viewer (:func:`install`; the Fusion dock, the plugin's reader and its
sample data install it) follows the viewer's layer list:

* **Geometry** (arithmetic in :mod:`napari_cofusion.core.geometry`): the world frame is the HR
  pixel grid (the Fusion dock's HRMSI, else the largest cube layer). Cubes on that grid (HRMSI,
  references, fused results) get scale 1 and translate 0; a cube ``s`` times smaller (the LRHSI)
  gets scale ``s`` and translate ``p`` on rows and columns. napari centres data pixel ``i`` at
  world ``scale·i + translate``, and the degradation keeps LR sample ``i`` at HR pixel
  ``s·i + p``, so each LR pixel is drawn centred over the HR pixel it observed (covering
  ``s·i + p ± s/2``), and a click maps to the same place in every layer. ``p``: the recipe's
  phase in the layer metadata ``["recipe"]``, else the Fusion dock's PSF / SRF estimate for that
  pair (:meth:`Scene.follow`), else ``s // 2``. Pseudo-colour composites follow their cube. When
  the scene's extent changes (files opened, a pair placed) the view is fitted (``reset_view``).
* **Display defaults** for each new cube layer of the plugin (metadata ``napari_cofusion``):
  contrast limits at its 1–99 % percentiles; a 3- or 4-band image whose band centres are known
  and visible (RGB, RGB + NIR) is shown as a true-colour composite: the Pseudo-colour dock's
  layer ``"<name> pseudo-colour"`` (same metadata, so that dock takes it over), with the cube
  itself hidden under it (its values stay in the Spectra and Fusion docks).
* **The band slider** (the band axis, third from last) is labelled with the wavelength of the
  current band, ``"λ 550 nm"``: napari has no per-step labels, so the axis label follows
  ``dims.current_step`` and the active layer. The wavelengths are the active cube layer's when
  the band exists there, else those of the cube with the most bands; ``"band i"`` without them.
* **Drag-and-drop**: :func:`prefer_plugin_reader`.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from napari_cofusion.core import display, geometry

__all__ = ["Scene", "install", "prefer_plugin_reader", "READER_PATTERNS", "PLUGIN"]

PLUGIN = "napari-cofusion"
#: File patterns for which the plugin's reader becomes napari's choice on drag-and-drop.
READER_PATTERNS = ("*.hdr", "*.tif", "*.tiff", "*.mat", "*.npy", "*.npz")

_SCENES: "weakref.WeakKeyDictionary[Any, Scene]" = weakref.WeakKeyDictionary()
_reader_preference_checked = False


def composite_name(cube_name: str) -> str:
    """The Pseudo-colour dock's name for a cube's composite (``gui.pseudocolor.composite_name``;
    repeated here so that this module imports no dock, and ``gui.layers`` can use it)."""
    return f"{cube_name} pseudo-colour"


def _unwrap(obj: Any) -> Any:
    return getattr(obj, "__wrapped__", obj)


def _key(layer: Any) -> str | None:
    return None if layer is None else str(id(_unwrap(layer)))


def _recipe_kernel(recipe: Any) -> "np.ndarray | None":
    """The PSF kernel of a layer's recipe (its half-pixel offset places the LR layer); None for a
    recipe that does not build (the layer is then placed by its phase alone)."""
    from napari_cofusion.degrade.simulate import Recipe

    try:
        return Recipe.from_json(recipe).kernel()
    except Exception:  # a bad recipe is reported where it is used (fusion), not while drawing
        return None


def _is_cube(layer: Any) -> bool:
    from napari.layers import Image

    return isinstance(layer, Image) and not layer.rgb and layer.data.ndim == 3


def _wavelengths(layer: Any) -> np.ndarray | None:
    wl = layer.metadata.get("wavelengths")
    if wl is None or len(wl) != layer.data.shape[0]:
        return None
    return np.asarray(wl, dtype=float)


def prefer_plugin_reader(patterns: tuple[str, ...] = READER_PATTERNS) -> list[str]:
    """Make the plugin napari's reader for dropped or opened files matching ``patterns`` (napari's
    settings ``plugins.extension2reader``), only for the patterns the user has no preference for
    yet: a choice made in napari's preferences or in its reader dialog is kept. The setting is
    napari's and persists between sessions; it is changed there (Preferences → Plugins) like any
    other. Returns the patterns set now."""
    try:
        from napari.settings import get_settings

        settings = get_settings()
        current = dict(settings.plugins.extension2reader)
    except Exception:  # noqa: BLE001 - no napari settings: nothing to prefer
        return []
    new = [p for p in patterns if p not in current]
    if new:
        settings.plugins.extension2reader = {**current, **{p: PLUGIN for p in new}}
    return new


def _prefer_once() -> None:
    global _reader_preference_checked
    if not _reader_preference_checked:
        _reader_preference_checked = True
        prefer_plugin_reader()


def install(viewer: Any) -> "Scene":
    """The viewer's :class:`Scene`, made and connected on the first call (later calls return it);
    also sets the plugin's reader preference (:func:`prefer_plugin_reader`) once per session."""
    real = _unwrap(viewer)
    scene = _SCENES.get(real)
    if scene is None:
        scene = _SCENES[real] = Scene(real)
    _prefer_once()
    return scene


def install_current() -> "Scene | None":
    """:func:`install` on napari's current viewer (for the reader and the samples, which are not
    handed one); None without a viewer."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001
        viewer = None
    if viewer is None:
        _prefer_once()
        return None
    return install(viewer)


class Scene:
    """Places the viewer's cube layers and sets their display defaults (see the module docstring)."""

    def __init__(self, viewer: Any) -> None:
        self._viewer = weakref.ref(viewer)
        self._hr_key: str | None = None  # the Fusion dock's HRMSI: the HR frame
        self._estimates: dict[str, Any] = {}  # LR layer key -> PSF / SRF estimate (phase)
        self._extent: tuple | None = None
        self._bands = max([int(l.data.shape[0]) for l in viewer.layers if _is_cube(l)] + [0])
        self._followed: list = []  # cube layers whose data changes refresh their true-colour composite
        # "last": after napari's own handlers (dims, the Qt layer list) have seen the change
        viewer.layers.events.inserted.connect(self._on_inserted, position="last")
        viewer.layers.events.removed.connect(self._on_removed, position="last")
        viewer.dims.events.current_step.connect(self.update_band_label, position="last")
        viewer.layers.selection.events.active.connect(self.update_band_label, position="last")
        self.arrange()

    @property
    def viewer(self) -> Any:
        return self._viewer()

    # ------------------------------------------------------------------ following
    def follow(self, state: Any) -> None:
        """Place the pair of a Fusion dock's state (``pair``, ``scale``, ``degradation`` /
        ``degradation_key``) whenever it or its PSF / SRF estimate changes."""
        ref = weakref.ref(state)
        state.events.pair.connect(lambda *_: self._state_changed(ref()))
        state.events.degradation.connect(lambda *_: self._state_changed(ref()))
        self._state_changed(state)

    def _state_changed(self, state: Any) -> None:
        if state is None or self.viewer is None:
            return
        pair = state.pair
        if state.scale is None or pair.lr is None or pair.msi is None:
            return
        self._hr_key = _key(pair.msi)
        deg, key = state.degradation, state.degradation_key
        if deg is not None and key and key[0] == _key(pair.lr) and key[1] == _key(pair.msi):
            self._estimates[_key(pair.lr)] = deg
        self.arrange()

    def _on_inserted(self, event) -> None:
        layer = event.value
        if _is_cube(layer) and layer.metadata.get("napari_cofusion"):
            self.apply_display_defaults(layer)
        self.arrange(fit=_is_cube(layer))  # not for points, shapes, composites: the user's view stays
        if _is_cube(layer) and layer.data.shape[0] > self._bands:
            self._bands = int(layer.data.shape[0])
            self.go_to_green(layer)

    def go_to_green(self, layer: Any) -> None:
        """Move the band slider to ``layer``'s band nearest 550 nm (its middle band without
        wavelengths): a cube with more bands than any before opens at a band worth looking at."""
        dims = self.viewer.dims
        if dims.ndim < 3:
            return
        wl = _wavelengths(layer)
        band = display.nearest_band(wl, 550.0) if wl is not None else layer.data.shape[0] // 2
        dims.set_current_step(dims.ndim - 3, int(band))

    def _on_removed(self, event) -> None:
        layer = event.value
        self._followed = [l for l in self._followed if l is not _unwrap(layer)]
        self._estimates.pop(_key(layer), None)
        self.update_band_label()

    # ------------------------------------------------------------------ geometry
    def arrange(self, fit: bool = True) -> bool:
        """Place every cube layer in the HR frame (and composites with their cube); with ``fit``,
        fit the view when the scene's extent changed. Returns whether a layer moved."""
        viewer = self.viewer
        if viewer is None:
            return False
        cubes = [l for l in viewer.layers if _is_cube(l)]
        moved = False
        if cubes:
            hr = next((l for l in cubes if _key(l) == self._hr_key), None)
            hr_shape = hr.data.shape if hr is not None else max(
                (l.data.shape for l in cubes), key=lambda sh: int(sh[-2]) * int(sh[-1]))
            for layer in cubes:
                s = geometry.integer_scale(hr_shape, layer.data.shape)
                if s is None:
                    continue
                at = geometry.sample_centre(s, layer.metadata.get("recipe"), self._estimates.get(_key(layer)),
                                            kernel_of=_recipe_kernel)
                (sy, sx), (ty, tx) = geometry.lr_transform(s, at if s > 1 else 0)
                moved |= _place(layer, (1.0, sy, sx), (0.0, ty, tx))
            by_name = {l.name: l for l in cubes}
            for layer in viewer.layers:
                src = by_name.get(layer.metadata.get("pseudocolor_of")) if not _is_cube(layer) else None
                if src is not None and layer.data.ndim == 3 and layer.rgb:
                    moved |= _place(layer, tuple(src.scale[-2:]), tuple(src.translate[-2:]))
        if fit or moved:
            self.fit()
        self.update_band_label()
        return moved

    def fit(self, force: bool = False) -> None:
        """``reset_view`` when the scene's world extent changed since the last fit (or ``force``)."""
        viewer = self.viewer
        if viewer is None or not len(viewer.layers):
            self._extent = None
            return
        extent = tuple(np.round(np.asarray(viewer.layers.extent.world, dtype=float), 3).ravel())
        if force or extent != self._extent:
            self._extent = extent
            viewer.reset_view()

    # ------------------------------------------------------------------ display
    def apply_display_defaults(self, layer: Any) -> None:
        """Percentile contrast (1–99 %) and, for an RGB(+NIR) image, its true-colour composite."""
        layer.contrast_limits = display.percentile_limits(layer.data)
        self.show_true_colour(layer)

    def show_true_colour(self, layer: Any) -> Any:
        """Add the true-colour composite of a 3- or 4-band cube with visible band centres (hiding
        the cube under it); returns the composite, or None when there is none to show."""
        viewer = self.viewer
        bands = display.true_colour_bands(layer.data.shape[0], _wavelengths(layer))
        name = composite_name(layer.name)
        if viewer is None or bands is None or name in viewer.layers:
            return None
        wl = _wavelengths(layer)
        meta = {"pseudocolor_of": layer.name, "bands": [int(b) for b in bands], "stretch": [1.0, 99.0],
                "band_wavelengths": [float(wl[b]) for b in bands], "true_colour_default": True}
        comp = viewer.add_image(display.composite(layer.data, bands), name=name, rgb=True,
                                contrast_limits=(0.0, 1.0), metadata=meta,
                                scale=tuple(layer.scale[-2:]), translate=tuple(layer.translate[-2:]))
        layer.visible = False
        if not any(l is _unwrap(layer) for l in self._followed):
            layer.events.data.connect(self._on_cube_data)
            self._followed.append(_unwrap(layer))
        return comp

    def _on_cube_data(self, event) -> None:
        layer, viewer = event.source, self.viewer
        name = composite_name(layer.name)
        if viewer is None or name not in viewer.layers:
            return
        comp = viewer.layers[name]
        if not comp.metadata.get("true_colour_default") or comp.metadata.get("pseudocolor_of") != layer.name:
            return
        bands = display.true_colour_bands(layer.data.shape[0], _wavelengths(layer))
        if bands is not None and tuple(comp.metadata.get("bands", ())) == tuple(bands):
            comp.data = display.composite(layer.data, bands, *comp.metadata.get("stretch", (1.0, 99.0)))

    def update_band_label(self, event: Any = None) -> None:
        """Label the band axis with the current band's wavelength (see the module docstring)."""
        viewer = self.viewer
        if viewer is None:
            return
        dims = viewer.dims
        cubes = [l for l in viewer.layers if _is_cube(l)]
        if dims.ndim < 3 or not cubes:
            return
        axis = dims.ndim - 3
        step = int(dims.current_step[axis])
        active = viewer.layers.selection.active
        layer = active if _is_cube(active) and step < active.data.shape[0] else max(cubes, key=lambda l: l.data.shape[0])
        text = display.band_label(step, _wavelengths(layer))
        labels = list(dims.axis_labels)
        if labels[axis] != text:
            labels[axis] = text
            dims.axis_labels = tuple(labels)


def _place(layer: Any, scale: tuple, translate: tuple) -> bool:
    """Set the last axes' scale and translate of ``layer`` when they differ; returns whether they did."""
    n = len(scale)
    old_s, old_t = np.asarray(layer.scale, float), np.asarray(layer.translate, float)
    new_s, new_t = old_s.copy(), old_t.copy()
    new_s[-n:], new_t[-n:] = scale, translate
    if np.allclose(old_s, new_s) and np.allclose(old_t, new_t):
        return False
    layer.translate = tuple(new_t)
    layer.scale = tuple(new_s)
    return True
