"""Drawing the spectra on a matplotlib axes (used by :class:`~napari_cofusion.gui.spectra.SpectraWidget`).

* Hyperspectral curves are lines: one colour per layer, one line style per pixel set (solid:
  the current click; dashed, dotted, dash-dot: the pinned sets); in a difference view one colour
  per curve.
* Multispectral curves (at most :data:`~napari_cofusion.core.spectra.MS_MAX_BANDS` bands, e.g.
  the HRMSI) are points at their band centres, without a line, with horizontal error bars of
  ± FWHM/2 where the band widths are known; one marker shape per pixel set.
* ROI means are lines with a shaded ± std band (points with vertical error bars for an MSI).
* A curve without wavelengths is drawn against band index on a secondary x axis at the top, so
  one such layer does not turn every other curve into band index; when no curve has
  wavelengths the main axis is the band index.
* The legend sits outside the axes, below them (constrained layout makes room), in a readable
  font; it can be switched off.
"""

from __future__ import annotations

import matplotlib
import numpy as np

from napari_cofusion.core import spectra as core

__all__ = ["PINNED_STYLES", "PINNED_MARKERS", "draw_curves"]

#: line styles of the pinned pixel sets, in pinning order (the current set is solid)
PINNED_STYLES = ("--", ":", "-.")
#: marker shapes of the multispectral points: the current set, then the pinned sets
PINNED_MARKERS = ("s", "^", "D", "v")


def draw_curves(ax, entries: list[tuple[core.Spectrum, int]], legend: bool = True) -> tuple[list, object, list[str]]:
    """Draw ``(spectrum, set index)`` entries (set index -1 for ROI curves); returns the data
    lines in entry order, the secondary (band index) axes or None, and notes for the user."""
    cycle = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]] or ["C0"]
    colours: dict[str, str] = {}
    any_nm = any(s.wavelengths is not None for s, _ in entries)
    twin = None
    lines, notes, bare = [], [], []
    for s, i in entries:
        key = s.label if s.kind == "difference" else s.layer  # a difference: one colour per curve
        colour = colours.setdefault(key, cycle[len(colours) % len(cycle)])
        target = ax
        if s.wavelengths is None and any_nm:
            if twin is None:
                twin = ax.twiny()
                twin.set_xlabel("band index (layers without wavelengths)", fontsize="small")
            target = twin
            if s.layer not in bare:
                bare.append(s.layer)
        x = s.x()
        pinned_set = s.pinned and i >= 0
        if core.is_multispectral(s):
            half = None if s.fwhm is None or target is twin else np.asarray(s.fwhm, float) / 2
            marker = PINNED_MARKERS[(i + 1) % len(PINNED_MARKERS)] if pinned_set else PINNED_MARKERS[0]
            cont = target.errorbar(x, s.values, xerr=half, yerr=s.std, fmt=marker, linestyle="none", color=colour,
                                   markersize=6, capsize=3, elinewidth=1, label=s.label,
                                   markerfacecolor="none" if pinned_set else colour)
            line = cont.lines[0]
        else:
            style = PINNED_STYLES[i % len(PINNED_STYLES)] if pinned_set else "-"
            (line,) = target.plot(x, s.values, linestyle=style, color=colour, marker="." if s.kind != "roi" else None,
                                  markersize=3, linewidth=1.4 if s.kind == "roi" else 1.2, label=s.label)
            if s.std is not None:
                target.fill_between(x, s.values - s.std, s.values + s.std, color=colour, alpha=0.2, linewidth=0)
        lines.append(line)
    if bare:
        notes.append(f"no wavelengths for {', '.join(bare)}: drawn against band index (top axis)")
    ax.set_xlabel("wavelength (nm)" if any_nm else "band")
    ax.set_ylabel("difference" if entries and all(s.kind == "difference" for s, _ in entries) else "value")
    ax.grid(True, alpha=0.3)
    if any(s.kind == "difference" for s, _ in entries):
        ax.axhline(0.0, color=matplotlib.rcParams["axes.edgecolor"], linewidth=0.8, alpha=0.6)
    if legend and lines:
        ax.legend(lines, [s.label for s, _ in entries], loc="upper center", bbox_to_anchor=(0.5, -0.18),
                  ncol=1, fontsize="small", frameon=False)
    return lines, twin, notes
