"""Member and item data: the canonical model, validation, features, offline and online stores."""
