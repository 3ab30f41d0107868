"""Search spaces: dimensions, validation and the built-in presets (YAML)."""
