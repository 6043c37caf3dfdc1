"""The test rig lives in :mod:`simulators.rig` (the benches use it too); here for the tests."""

from simulators.rig import HubApi, TerminalRig

__all__ = ["HubApi", "TerminalRig"]
