"""The chaos run (``bench/chaos.py``): a whole hall on this machine under a seeded schedule of the
faults of SPEC section 9, then drained and checked for anything lost or counted twice.

:mod:`.run` runs it, :mod:`.hall` holds the hall and its supervisor, :mod:`.faults` makes the
faults, :mod:`.checks` decides, :mod:`.report` prints; :mod:`.terminal` is one terminal's process.
"""
