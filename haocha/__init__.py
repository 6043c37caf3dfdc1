"""``haocha``: the one command-line program, on top of the parts (SPEC section 7).

The layers (docs/layers.md): :mod:`protocol` at the bottom; :mod:`terminal` and :mod:`hub` beside
each other above it, never importing each other; :mod:`simulators` above both; this package on
top, composing their command groups.
"""
