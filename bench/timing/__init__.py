"""`serbench run`: the plan, the pytest-benchmark plugin and its one test module, the machine's limits,
and the stored results of a run."""
