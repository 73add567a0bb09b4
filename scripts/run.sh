#!/usr/bin/env bash
# The main job. Sets up .venv if needed, then, with no arguments:
#   1. simulates a cave-x4 pair from the bundled CAVE crop, fuses it with the classical methods
#      and CoFusion (the shipped weights) and prints the metrics (`napari-cofusion demo`);
#   2. opens napari with the plugin's widgets docked, the sample pair loaded and fused with
#      glp-hs and CoFusion, CoFusion shown (`napari-cofusion gui --fuse glp-hs cofusion`).
#      Without a display (or with --headless) the window
#      opens on a virtual display (Xvfb) and a screenshot is saved under runs/ instead.
# Any other arguments are passed to the CLI, e.g. `scripts/run.sh fuse --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
headless=0
if [ "${1:-}" = "--headless" ]; then headless=1; shift; fi
if [ "$#" -gt 0 ]; then exec .venv/bin/napari-cofusion "$@"; fi
.venv/bin/napari-cofusion demo
if [ "$headless" -eq 0 ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; }; then
  exec .venv/bin/napari-cofusion gui --fuse glp-hs cofusion
fi
mkdir -p runs
shot="runs/window-$(date +%Y%m%d-%H%M%S).png"
echo "[run] no display (or --headless): opening napari on a virtual display, screenshot to $shot"
exec xvfb-run -a .venv/bin/napari-cofusion gui --fuse glp-hs cofusion --screenshot "$shot"
