"""Pure functions from a stored run to tables, plots, comparisons and the index of runs."""
