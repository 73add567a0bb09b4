"""``python -m napari_cofusion.cli``: the same as the ``napari-cofusion`` command."""

import sys

from napari_cofusion.cli import main

sys.exit(main())
