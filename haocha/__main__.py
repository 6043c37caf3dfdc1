"""``python -m haocha`` is ``haocha``."""

from .cli import main

main()
