"""`python -m flowbuilder` runs the CLI."""

from flowbuilder.cli import main

main()
