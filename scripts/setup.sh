#!/usr/bin/env bash
# Create or reuse .venv and install everything the plugin and its tests need,
# including the Debian packages that headless Qt (Xvfb + Mesa + xcb) requires.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS="xvfb xauth libgl1 libegl1 libgl1-mesa-dri libglx-mesa0 libdbus-1-3 libfontconfig1 \
libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xfixes0"

missing=""
for p in $APT_PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "[setup] installing apt packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
# Re-install only when the project's dependency declaration changed.
stamp=.venv/.napari-cofusion-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing python packages into .venv"
  pipq() {  # quiet pip; drop the warnings about package-index folders this machine lacks
    .venv/bin/python -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  }
  pipq --upgrade pip
  # constraints.txt pins torch to the CPU build on this machine's disk (not a multi-GB CUDA
  # build); the testing extra brings the Qt binding (PyQt6) the package itself does not name.
  pipq -c constraints.txt torch
  pipq -c constraints.txt -e ".[testing]"
  echo "$want" > "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, napari; print("torch", torch.__version__, "napari", napari.__version__)')"
