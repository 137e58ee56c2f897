"""One module per config.json modifier; each exposes ``apply(spec, ctx) -> (spec, notes)``."""
