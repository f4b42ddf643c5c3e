"""The prepared GPU run (issue 32): one command for the rare, short GPU machine, and its dry run for CI.

    python3 -m bench.gpu              on a GPU machine (`make gpu`): install what is missing, measure, report
    python3 -m bench.gpu --dry-run    anywhere (`make gpu-dry-run`, CI): plan it, check the wheels, fit the budget

- `plan`: the steps, what each measures, and each one's estimate from its payload and documented rates;
- `wheels`: the wheels carried in `.whl/` (requirements/gpu-carry.txt), checked here and installed there;
- `run`: the run itself, enforcing the budget step by step (refuses in one line without a CUDA device);
- `steps`: the measuring steps, each run in a process group of its own;
- `report`: gpu.md, with the one place where bench/decide.py's verdicts are asked for (`report.decide`).

The machine gets a copy of the working tree and runs plain `python3` (3.12, the image's packages; no
virtualenv, no `serbench` entry point). The run writes `results/reference-gpu-<gpu>-<date>/`: a serbench run
directory (torch on cpu and cuda, JAX on cuda) with the limits, `scale-llama-1b/` (and `scale-llama-8b/` if
the budget allowed), `gpu-run.json` (the plan, every step's estimate and time, the installs, the probe) and
`gpu.md`.
"""
