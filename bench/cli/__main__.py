"""`python -m bench.cli`: the `serbench` command (as a child in another environment starts it)."""

from bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
