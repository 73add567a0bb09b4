"""Pieces shared by the dock widgets (fusion, pseudo-colour, quality, spectra): layer combo boxes
that follow the viewer's layer list, a themed matplotlib panel, and the red error label."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

import matplotlib.style as mplstyle
from napari_matplotlib.base import BaseNapariMPLWidget
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFrame, QGroupBox, QLabel, QScrollArea, QStyle, QVBoxLayout, QWidget

from napari_cofusion.gui.layers import cube_layers, show_error

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["NONE", "PlotPanel", "ErrorLabel", "LayerListWatcher", "refill_combo", "layer_by_name", "same_layer",
           "scrollable", "collapsible"]

#: The combo-box entry meaning "no layer".
NONE = "(none)"


def refill_combo(combo: QComboBox, names: list[str], none_option: bool = False,
                 prefer: Callable[[list[str]], str | None] | None = None, sticky: bool = True) -> None:
    """Put ``names`` (plus "(none)" first when asked) into ``combo``, keeping its current choice
    when it is still there, else ``prefer(names)``, else the first entry; with ``sticky=False``
    (nothing chosen by the user yet) ``prefer(names)`` comes first. Emits ``currentTextChanged``
    only when the choice really changes."""
    old = combo.currentText()
    items = ([NONE] if none_option else []) + list(names)
    preferred = prefer(names) if prefer is not None else None
    if not sticky and preferred in items:
        choice = preferred
    elif old in items:
        choice = old
    else:
        choice = preferred or (items[0] if items else "")
    combo.blockSignals(True)
    try:
        combo.clear()
        combo.addItems(items)
        if choice:
            combo.setCurrentIndex(items.index(choice))
    finally:
        combo.blockSignals(False)
    if combo.currentText() != old:
        combo.currentTextChanged.emit(combo.currentText())


def same_layer(a, b) -> bool:
    """Whether ``a`` and ``b`` are the same layer; napari hands plugin widgets a proxy of the
    viewer whose layers are proxies too, so identity is checked on the wrapped objects."""
    if a is None or b is None:
        return False
    return getattr(a, "__wrapped__", a) is getattr(b, "__wrapped__", b)


def layer_by_name(viewer: "napari.Viewer", name: str):
    """The layer called ``name``, or None (also for "(none)" and "")."""
    if not name or name == NONE or name not in viewer.layers:
        return None
    return viewer.layers[name]


class LayerListWatcher:
    """Calls ``on_change()`` when a layer is added, removed or renamed, until ``close()``."""

    def __init__(self, viewer: "napari.Viewer", on_change: Callable[[], None]):
        self.viewer = viewer
        self._on_change = on_change
        self._named: list = []
        viewer.layers.events.inserted.connect(self._inserted)
        viewer.layers.events.removed.connect(self._changed)
        viewer.layers.events.reordered.connect(self._changed)
        for layer in viewer.layers:
            self._watch(layer)

    def _watch(self, layer) -> None:
        if not any(same_layer(l, layer) for l in self._named):
            layer.events.name.connect(self._changed)
            self._named.append(layer)

    def _inserted(self, event) -> None:
        self._watch(event.value)
        self._on_change()

    def _changed(self, event=None) -> None:
        live = list(self.viewer.layers)
        self._named = [l for l in self._named if any(same_layer(l, x) for x in live)]
        self._on_change()

    def close(self) -> None:
        ev = self.viewer.layers.events
        ev.inserted.disconnect(self._inserted)
        ev.removed.disconnect(self._changed)
        ev.reordered.disconnect(self._changed)
        for layer in self._named:
            layer.events.name.disconnect(self._changed)
        self._named = []


def cube_layer_names(viewer: "napari.Viewer") -> list[str]:
    return [l.name for l in cube_layers(viewer)]


class ErrorLabel(QLabel):
    """A red, word-wrapped label that is hidden while it has nothing to say."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setStyleSheet("color: #e04040; font-weight: bold;")
        self.setVisible(False)

    def show_message(self, message: str, notify: bool = True) -> None:
        self.setText(message)
        self.setVisible(bool(message))
        if message and notify:
            show_error(message)

    def clear_message(self) -> None:
        self.setText("")
        self.setVisible(False)


class PlotPanel(BaseNapariMPLWidget):
    """napari-matplotlib's themed canvas (and toolbar) with ``ncols`` axes side by side; ``axes`` is
    the first, ``all_axes`` all of them. When the napari theme changes the axes are made anew in the
    new style and ``redraw`` is called to plot again (so a plot never keeps the colours of the theme
    it was built in): plot inside :meth:`styled` and take colours from the style, not literals."""

    def __init__(self, napari_viewer: "napari.Viewer", redraw: Callable[[], None] | None = None,
                 parent: QWidget | None = None, ncols: int = 1, min_height: int = 220, toolbar: bool = True):
        super().__init__(napari_viewer, parent=parent)
        self._redraw = redraw
        self._ncols = max(1, int(ncols))
        self._add_axes()
        self.toolbar.setVisible(toolbar)
        self.setMinimumHeight(min_height)

    def _add_axes(self) -> None:
        if self._ncols == 1:
            self.add_single_axes()
            self.all_axes = (self.axes,)
            return
        with self.styled():
            self.all_axes = tuple(self.figure.add_subplot(1, self._ncols, i + 1) for i in range(self._ncols))
        self.axes = self.all_axes[0]

    @contextmanager
    def styled(self) -> Iterator[None]:
        """Matplotlib style context matching the napari theme (wrap clearing and plotting)."""
        with mplstyle.context(self.napari_theme_style_sheet):
            yield

    def reset_axes(self) -> None:
        with self.styled():
            for ax in self.all_axes:
                ax.clear()

    def draw_idle(self) -> None:
        self.canvas.draw_idle()

    def draw_now(self) -> None:
        self.canvas.draw()

    def _on_napari_theme_changed(self, event) -> None:
        super()._on_napari_theme_changed(event)
        # the axes keep the colours they were created with: make them anew in the new style
        self.figure.clear()
        self._add_axes()
        if self._redraw is not None:
            self._redraw()
        else:
            self.canvas.draw_idle()


def scrollable(widget: QWidget) -> QScrollArea:
    """Move ``widget``'s content (its layout, with the widgets in it) into a vertical scroll area
    that fills ``widget``, so that a dock needs little height (the window fits small screens) and
    scrolls when its content is taller. Call it once, at the end of a dock widget's ``__init__``;
    the widgets keep their attributes and signals. The area is at least as wide as the content
    (no horizontal scrolling); returns it (also ``widget.scroll_area``)."""
    content = QWidget()
    layout = widget.layout()
    if layout is not None:
        content.setLayout(layout)  # Qt takes the layout (and reparents its widgets) off ``widget``
    area = QScrollArea()
    area.setObjectName("cofusion_scroll_area")
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(content)
    bar = area.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
    area.setMinimumWidth(content.minimumSizeHint().width() + bar + 2)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    widget.scroll_area = area
    return area


def collapsible(panel: QGroupBox, expanded: bool = True) -> QWidget:
    """``panel`` (a titled group) inside a superqt ``QCollapsible`` that shows and hides it with a
    click on its title (the group's title moves to the header)."""
    from superqt import QCollapsible

    box = QCollapsible(panel.title())
    panel.setTitle("")
    box.addWidget(panel)
    box.setDuration(0)  # no animation: sizes settle at once (tests, slow remote displays)
    if expanded:
        box.expand(animate=False)
    else:
        box.collapse(animate=False)
    return box
