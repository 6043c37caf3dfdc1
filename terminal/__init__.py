"""The terminal program: buttons and lights at a service window, a local journal, the uplink."""

__version__ = "0.1.0"
