"""`python -m perfsmith.cli ...`: the same as the `perfsmith` command."""

from perfsmith.cli import main

main()
