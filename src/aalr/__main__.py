"""`python -m aalr`: the command line."""

from aalr.cli import entry

entry()
