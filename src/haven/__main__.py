"""``python -m haven``: the ``haven`` command."""

from haven.cli.main import main

main()
