"""Migration scripts of the campaign store, applied in order of their down_revision chain."""
