"""``python -m hub`` is ``haocha``."""

from .cli import main

main()
