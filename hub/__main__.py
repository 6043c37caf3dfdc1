"""``python -m hub``: the hub's commands of ``haocha``."""

from .cli import main

main()
