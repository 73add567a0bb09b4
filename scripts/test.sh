#!/usr/bin/env bash
# The whole test suite, headless: set up .venv if needed, then pytest (pytest-xvfb starts Xvfb
# for the napari window tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_API=pyqt6
exec .venv/bin/python -m pytest -ra "$@"
