"""`python -m ran_edge.cli`: the same as the `ran-edge` script."""

from ran_edge.cli import main

main(prog_name="ran-edge")
