#!/usr/bin/env bash
# The main job: set up .venv if needed, then run `napari-cofusion` (default: the demo on the
# bundled CAVE crop). Any arguments are passed to the CLI, e.g. `scripts/run.sh fuse --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$#" -eq 0 ]; then set -- demo; fi
exec .venv/bin/napari-cofusion "$@"
