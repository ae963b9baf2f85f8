"""``python -m segkit`` (and ``torchrun -m segkit``) run the command line."""

from segkit.cli import main

main()
