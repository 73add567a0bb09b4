"""napari dock widgets. Thin: each calls the core (io, simulate, methods, metrics, train)."""
