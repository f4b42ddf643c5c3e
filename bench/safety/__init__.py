"""Safety and robustness matrix: hostile and damaged files against every loader and load mode.

`serbench safety --out DIR` generates the inputs (per framework, in a subprocess), then opens each
one with each load mode in a fresh process (forked from a server that has already imported the
framework) under a timeout, an address-space cap and an RSS watchdog, and classifies the result:
loaded-exact, clear-error, silent-wrong-data, code-executed (proven by a marker file), crash,
hang, memory-blowup.
"""

OUTCOMES = ("loaded-exact", "clear-error", "silent-wrong-data", "code-executed", "crash", "hang", "memory-blowup")
