"""`python -m modelsat.cli`: the same as the `modelsat` command."""

from modelsat.cli import main

main()
