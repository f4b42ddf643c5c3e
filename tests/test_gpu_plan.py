"""The prepared GPU run (bench/gpu) without a GPU: its dry run passes here, a plan over budget fails, a missing,
wrong-platform or inconsistent wheel is caught, the run refuses in one line where there is no CUDA device, the
estimator does not promise less than the H100 run took, the run keeps its budget step by step (ends a step
that runs over, skips an optional one that would not fit), and its scale step writes a record the scale report
and gpu.md read (on the CPU, with the tiny LLM)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from bench.gpu import __main__ as cli
from bench.gpu import plan, wheels
from bench.gpu.report import NOT_DECIDED, write_gpu_report
from bench.timing.plan import PRESETS, read_plan_file

from .conftest import adapter_or_skip

ROOT = Path(__file__).resolve().parents[1]
H100 = ROOT / "results" / "reference-gpu-h100-20261123" / "raw"
GOOD_TAG = "cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64"


def make_wheel(directory: Path, name: str, version: str, tag: str = GOOD_TAG, **metadata: str) -> Path:
    """A minimal wheel pip accepts: METADATA, WHEEL and an empty RECORD."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = directory / f"{dist}-{tag}.whl"
    fields = {"Name": name, "Version": version, **metadata}
    body = "Metadata-Version: 2.1\n" + "".join(
        f"{key.replace('_', '-')}: {line}\n" for key, value in fields.items() for line in value.split("\n")
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{dist}.dist-info/METADATA", body)
        archive.writestr(f"{dist}.dist-info/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n")
        archive.writestr(f"{dist}.dist-info/RECORD", "")
    return path


@pytest.fixture
def fake_wheels(tmp_path: Path) -> Path:
    """A wheel directory holding a stand-in for every carried wheel, with good tags."""
    directory = tmp_path / "whl"
    directory.mkdir()
    for carried in wheels.read_carry_list():
        make_wheel(directory, carried.name, carried.version)
    return directory


# The dry run ----------------------------------------------------------------------------------------------
def test_the_dry_run_passes_here(fake_wheels: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--dry-run", "--no-fetch", "--wheels-dir", str(fake_wheels)]) == 0
    out = capsys.readouterr().out
    for name in plan.STEP_NAMES:
        assert re.search(rf"^  {re.escape(name)} ", out, re.M), name
    assert "the plan fits and every wheel is in order" in out
    assert "transfer: tree" in out
    assert "nccl" in out
    assert "needs 2 GPUs" in out


def test_the_carried_wheels_here_are_in_order_when_fetched() -> None:
    """The real wheels (make gpu-dry-run fetches them into .whl/ before make test in CI)."""
    carried = wheels.read_carry_list()
    if not all(wheels.find_wheel(wheels.WHEELS, entry) for entry in carried):
        pytest.skip(f"{wheels.WHEELS} does not hold every carried wheel yet (make gpu-dry-run fetches them)")
    report = wheels.check_carry(wheels.WHEELS, fetch_missing=False)
    assert report.ok, report.problems
    assert report.tree_bytes is not None
    assert report.tree_bytes + report.wheels_bytes <= wheels.TRANSFER_LIMIT_BYTES


def test_the_default_plan_fits_its_budget_with_its_reserve() -> None:
    chosen = plan.build_plan()
    assert chosen.problems() == []
    assert chosen.required_s + chosen.reserve_s <= plan.BUDGET_S == 480
    assert all(step.estimate_s > 0 for step in chosen.steps)
    assert [step.name for step in chosen.steps] == list(plan.STEP_NAMES)
    assert chosen.skipped == {"nccl": "needs 2 GPUs (NCCL runs one rank per GPU); this machine has 1"}


def test_a_plan_over_budget_fails(fake_wheels: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert plan.build_plan(budget_s=200).problems()
    assert cli.main(["--dry-run", "--no-fetch", "--wheels-dir", str(fake_wheels), "--budget-s", "200"]) == 1
    captured = capsys.readouterr()
    assert "DOES NOT FIT" in captured.out
    assert "over the 200 s budget" in captured.err


def test_selecting_steps_plans_only_those_and_the_ones_they_need() -> None:
    chosen = plan.build_plan(selected=("scale-llama-8b",))
    running = [step.name for step in chosen.chosen()]
    assert running == ["check", "install", "probe", "limits", "scale-llama-8b", "report"]
    assert chosen.optional_fits() == {"scale-llama-8b": True}
    with pytest.raises(ValueError, match="unknown step"):
        plan.build_plan(selected=("nope",))


def test_a_bad_budget_or_step_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--budget-s", "0"], ["--budget-s", "900"]):
        with pytest.raises(SystemExit) as stop:
            cli.main(argv)
        assert stop.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert cli.main(["--dry-run", "--no-fetch", "--steps", "warp"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "warp is not a step" in err
    assert cli.DEFAULT_BUDGET_S == plan.BUDGET_S


# The wheels -----------------------------------------------------------------------------------------------
def test_a_missing_wheel_is_caught(fake_wheels: Path) -> None:
    next(fake_wheels.glob("instanttensor-*.whl")).unlink()
    report = wheels.check_carry(fake_wheels, fetch_missing=False)
    assert not report.ok
    assert any(problem.startswith("instanttensor==0.2.2: no wheel in") for problem in report.problems)


@pytest.mark.parametrize(
    "tag",
    [
        "cp311-cp311-manylinux_2_28_x86_64",  # another Python
        "cp312-cp312-macosx_11_0_arm64",  # another system
        "cp312-cp312-manylinux_2_28_aarch64",  # another processor
        "cp312-cp312-linux_x86_64",  # not manylinux
        "cp312-cp312-manylinux_2_40_x86_64",  # a newer C library than the machine's 2.39
    ],
)
def test_a_wrong_platform_wheel_is_caught(fake_wheels: Path, tag: str) -> None:
    next(fake_wheels.glob("fastsafetensors-*.whl")).unlink()
    make_wheel(fake_wheels, "fastsafetensors", "0.5.0", tag)
    report = wheels.check_carry(fake_wheels, fetch_missing=False)
    assert any("fastsafetensors" in problem and "none of its tags" in problem for problem in report.problems)


def test_pip_itself_refuses_a_wheel_for_another_python(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "fastsafetensors", "0.5.0", "cp311-cp311-manylinux_2_28_x86_64")
    assert "is not a supported wheel" in wheels.pip_would_install([wheel])
    assert wheels.pip_would_install([make_wheel(tmp_path, "fastsafetensors", "0.5.0")]) == ""


def test_a_wheel_whose_metadata_disagrees_or_needs_the_unknown_is_caught(fake_wheels: Path) -> None:
    next(fake_wheels.glob("runai_model_streamer-*.whl")).unlink()
    make_wheel(fake_wheels, "runai-model-streamer", "0.17.1", Requires_Dist="left-pad-for-gpus>=1\nnumpy")
    path = next(fake_wheels.glob("pytest_benchmark-*.whl"))
    with zipfile.ZipFile(path, "w") as archive:  # the right file name, another release inside
        archive.writestr("pytest_benchmark-5.3.1.dist-info/METADATA", "Name: pytest-benchmark\nVersion: 4.0.0\n")
    problems = wheels.check_carry(fake_wheels, fetch_missing=False).problems
    assert any("left-pad-for-gpus" in problem and "neither in the image" in problem for problem in problems)
    assert not any("needs numpy" in problem for problem in problems)  # in the image
    assert any("its metadata says pytest-benchmark 4.0.0" in problem for problem in problems)


def test_a_carry_too_large_for_the_transfer_is_caught(fake_wheels: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wheels, "TRANSFER_LIMIT_BYTES", 1 << 20)
    problems = wheels.check_carry(fake_wheels, fetch_missing=False).problems
    assert any("exceed the 1 MiB a device call carries" in problem for problem in problems)


def test_the_carry_list_pins_what_the_core_lock_pins() -> None:
    locked = {
        wheels.canonical(name): version
        for name, _, version in (
            line.split("#")[0].strip().partition("==")
            for line in (ROOT / "requirements" / "core.lock.txt").read_text().splitlines()
        )
        if version
    }
    for carried in wheels.read_carry_list():
        assert locked.get(carried.name) == carried.version, carried


def test_a_carry_list_with_two_versions_of_one_package_is_refused(tmp_path: Path) -> None:
    listed = tmp_path / "carry.txt"
    listed.write_text("fastsafetensors==0.5.0\nFastSafetensors==0.4.0\n")
    with pytest.raises(ValueError, match="listed twice"):
        wheels.read_carry_list(listed)
    listed.write_text("fastsafetensors>=0.5\n")
    with pytest.raises(ValueError, match="is not `name==version`"):
        wheels.read_carry_list(listed)


def test_only_what_the_image_lacks_is_installed(fake_wheels: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checks = wheels.check_carry(fake_wheels, fetch_missing=False).checks
    for check in checks:
        if check.carried.name == "pytest-benchmark":
            check.requires = ["py-cpuinfo2>=10.1"]
    versions = {"fastsafetensors": None, "runai-model-streamer": "0.12.0", "instanttensor": "0.2.2"}
    versions |= {"pytest-benchmark": "3.4.1", "py-cpuinfo2": None}
    monkeypatch.setattr(wheels, "installed_version", versions.get)
    reasons = wheels.to_install(checks, wheels.pyproject_specifiers())
    assert set(reasons) == {"fastsafetensors", "runai-model-streamer", "pytest-benchmark", "py-cpuinfo2"}
    assert "0.12.0" in reasons["runai-model-streamer"]
    assert reasons["py-cpuinfo2"].startswith("required by an installed wheel")


# The run, without a GPU -----------------------------------------------------------------------------------
def _run_without_gpu(path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "bench.gpu", "--out", "/nonexistent/never-written"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_run_without_a_gpu_refuses_in_one_line() -> None:
    if Path("/dev/nvidiactl").exists():
        pytest.skip("this machine has an NVIDIA device")
    result = _run_without_gpu(os.path.dirname(sys.executable))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("serbench gpu: refused: no NVIDIA GPU here")


@pytest.mark.framework("torch")
def test_the_run_with_a_gpu_tool_but_no_cuda_torch_refuses_in_one_line(tmp_path: Path) -> None:
    adapter = adapter_or_skip("torch")
    if "cuda" in adapter.devices():
        pytest.skip("torch sees a CUDA device here")
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA H200, 143771 MiB, 580.159.03'\n")
    (tmp_path / "nvidia-smi").chmod(0o755)
    result = _run_without_gpu(f"{tmp_path}:{os.path.dirname(sys.executable)}:/usr/bin:/bin")
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no CUDA device for torch here" in result.stderr
    assert not Path("/nonexistent/never-written").exists()


# The estimates ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plan_file", "log"),
    [
        ("plan-torch.json", "pytest-torch-p0.log"),
        ("loads-plan-torch.json", "pytest-torch-p1.log"),
        ("loads-plan-torch.json", "pytest-torch-p2.log"),
    ],
)
def test_the_estimator_promises_no_less_than_the_h100_run_took(plan_file: str, log: str) -> None:
    cases, passes = read_plan_file(H100 / plan_file)
    measured = float(re.findall(r"in ([0-9.]+)s", (H100 / log).read_text())[-1])
    estimate = plan.timing_s(cases, passes)
    assert measured <= estimate <= 1.6 * measured, (estimate, measured)


def test_every_figure_says_where_it_comes_from() -> None:
    for name, figure in plan.FIGURES.items():
        assert figure.value > 0, name
        assert figure.unit, name
        assert len(figure.source) > 10, name


def test_the_gpu_preset_exists_only_inside_its_block() -> None:
    assert plan.GPU_PRESET_NAME not in PRESETS
    with plan.gpu_preset() as name:
        assert PRESETS[name].passes == 2
    assert plan.GPU_PRESET_NAME not in PRESETS
    cases = plan.TIMING["timing-jax"].cases()
    assert {case.framework for case in cases} == {"jax"}
    assert {case.device for case in cases if case.op == "load"} == {"cuda"}
    assert {case.format for case in cases} == {"safetensors", "orbax", "flax-msgpack"}


def test_the_scale_runs_use_every_gpu_loader_of_safetensors() -> None:
    names = {loader.name for loader in plan.SCALE["scale-llama-1b"].loaders()}
    assert {"safetensors load_file", "fastsafetensors", "runai-model-streamer", "instanttensor"} <= names
    assert "reference: parallel preadv" in names
    assert plan.SCALE["scale-llama-1b"].rounds() == [(0, "warm"), (0, "cold"), (1, "warm")]


# The budget, kept step by step ----------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_run_keeps_its_budget_step_by_step(
    tmp_path: Path, fake_wheels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Steps are given what the budget leaves after the later required steps and the reserve; an optional step
    that would not fit is skipped with its reason; the record says all of it; nothing installs what is here."""
    from bench.gpu import run as gpu_run

    clock = Clock()
    calls: list[tuple[str, float]] = []
    estimates = {step.name: step.estimate_s for step in plan.steps()}
    took = {**estimates, "timing-jax": estimates["timing-jax"] + 30}  # every step as estimated; one 30 s over

    def fake_child(arguments: list[str], timeout_s: float, log: Path | None, env=None, echo=True, module=""):
        name = arguments[arguments.index("--name") + 1] if "--name" in arguments else arguments[0]
        calls.append((name, timeout_s))
        clock.now += min(took[name], timeout_s)
        status = "ok" if took[name] <= timeout_s else "stopped"
        return gpu_run.Outcome(status, min(took[name], timeout_s), "", {"fake": True})

    monkeypatch.setattr(gpu_run, "run_child", fake_child)
    monkeypatch.setattr(gpu_run, "gpu_description", lambda: "NVIDIA H200, 143771 MiB, 580.159.03")
    monkeypatch.setattr(wheels, "installed_version", lambda name: "9.9.9")
    monkeypatch.setattr(wheels, "install", lambda paths, site: pytest.fail("nothing is missing here"))
    monkeypatch.setattr(wheels, "activate", lambda site: None)
    options = gpu_run.Options(out=tmp_path / "run", wheels=fake_wheels, site=tmp_path / "site")
    runner = gpu_run.Runner(options, clock.now, clock)
    assert runner.run() == 0
    record = json.loads((tmp_path / "run" / "gpu-run.json").read_text())
    steps = {step["name"]: step for step in record["steps"]}
    assert [step["name"] for step in record["steps"]] == list(plan.STEP_NAMES)
    for name, allowed in calls:
        assert allowed <= plan.BUDGET_S, name
        assert allowed >= estimates[name] - 1, (name, allowed)
    assert "scale-llama-8b" not in dict(calls)
    assert steps["scale-llama-8b"]["status"] == "skipped"
    assert "needs about" in steps["scale-llama-8b"]["why"]
    assert steps["nccl"]["status"] == "skipped"
    assert "needs 2 GPUs" in steps["nccl"]["why"]
    assert all(step["status"] == "ok" for step in record["steps"] if step["required"])
    assert record["wall_s"] <= plan.BUDGET_S
    assert all(item["status"].startswith("not needed") for item in record["installs"])
    assert "scale-llama-8b  estimate" in capsys.readouterr().out
    assert calls[-1][0] == "report"


def test_a_required_step_that_overruns_is_ended_and_the_later_ones_keep_their_time(
    tmp_path: Path, fake_wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.gpu import run as gpu_run

    clock = Clock()
    given: dict[str, float] = {}

    def fake_child(arguments: list[str], timeout_s: float, log: Path | None, env=None, echo=True, module=""):
        name = arguments[arguments.index("--name") + 1] if "--name" in arguments else arguments[0]
        given[name] = timeout_s
        spent = 1000.0 if name == "timing-torch" else 5.0  # hangs: ended at its time
        clock.now += min(spent, timeout_s)
        status = "ok" if spent <= timeout_s else "stopped"
        return gpu_run.Outcome(status, min(spent, timeout_s), "ran out" if status == "stopped" else "", None)

    monkeypatch.setattr(gpu_run, "run_child", fake_child)
    monkeypatch.setattr(gpu_run, "gpu_description", lambda: "NVIDIA H200, 143771 MiB, 580.159.03")
    monkeypatch.setattr(wheels, "installed_version", lambda name: "9.9.9")
    monkeypatch.setattr(wheels, "activate", lambda site: None)
    runner = gpu_run.Runner(gpu_run.Options(out=tmp_path / "run", wheels=fake_wheels), clock.now, clock)
    assert runner.run() == 1
    record = json.loads((tmp_path / "run" / "gpu-run.json").read_text())
    steps = {step["name"]: step for step in record["steps"]}
    assert steps["timing-torch"]["status"] == "stopped"
    estimates = {step.name: step.estimate_s for step in plan.steps()}
    assert given["timing-jax"] >= estimates["timing-jax"] - 1
    assert given["scale-llama-1b"] >= estimates["scale-llama-1b"] - 1
    assert steps["report"]["status"] == "ok"
    assert record["wall_s"] <= plan.BUDGET_S


def test_a_step_that_runs_over_is_ended_with_its_whole_process_group(tmp_path: Path) -> None:
    from bench.gpu.run import run_child

    (tmp_path / "slow_step.py").write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(tmp_path / 'pid')!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    start = time.monotonic()
    outcome = run_child(["x"], 2.0, tmp_path / "log", env, echo=False, module="slow_step")
    assert outcome.status == "stopped"
    assert time.monotonic() - start < 30
    grandchild = int((tmp_path / "pid").read_text())
    for _ in range(50):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the step's own child outlived it")


# The scale step and the GPU report, on the CPU ------------------------------------------------------------
@pytest.mark.framework("torch")
def test_the_scale_step_writes_what_the_scale_report_and_gpu_md_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.gpu import steps
    from bench.reporting.scale import write_scale_report

    adapter_or_skip("torch")
    monkeypatch.setitem(plan.SCALE, "scale-tiny", plan.ScaleRun("llama-tiny", "single", 1, 1, device="cpu"))
    out = tmp_path / "run"
    (out / "scale-tiny").mkdir(parents=True)
    limits = {"h2d_pinned": {"gbps": 50.0, "note": "made up"}, "memcpy": {"gbps": 10.0, "note": "made up"}}
    (out / "limits.json").write_text(json.dumps(limits))
    found = steps.scale(out / "scale-tiny", tmp_path / "data", "scale-tiny", out / "limits.json", 300, pause=False)
    assert found["rounds_skipped"] == 0
    record = json.loads((out / "scale-tiny" / "scale.json").read_text())
    rows = record["llm"]["rows"]
    timed = [row for row in rows if not row["unavailable"]]
    assert {row["cache"] for row in timed} == {"warm", "cold"}
    assert any(row["reference"] for row in timed)
    for row in timed:
        assert len(row["rounds"]) == 1, row
        assert row["rounds"][0]["wrong"] == [], row
    assert write_scale_report(out / "scale-tiny").read_text().startswith("# scale-tiny:")
    (out / "gpu-run.json").write_text(json.dumps({"budget_s": 480, "steps": [], "installs": []}))
    report = write_gpu_report(out).read_text()
    assert "## Scale loaders to the GPU: llama-tiny" in report
    assert NOT_DECIDED in report
    assert "(no timing ran)" in report


def test_the_scale_step_starts_no_round_the_budget_cannot_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.gpu import steps

    adapter_or_skip("torch")
    monkeypatch.setitem(plan.SCALE, "scale-tiny", plan.ScaleRun("llama-tiny", "single", 1, 1, device="cpu"))
    monkeypatch.setattr(steps, "_load_in_child", lambda *args: pytest.fail("no round fits in no time"))
    monkeypatch.setattr(plan, "scale_child_s", lambda payload, cache: 1e6)
    found = steps.scale(tmp_path / "s", tmp_path / "data", "scale-tiny", tmp_path / "none.json", 60, pause=False)
    record = json.loads((tmp_path / "s" / "scale.json").read_text())
    skipped = [reason for row in record["llm"]["rows"] for reason in row["skipped_rounds"]]
    assert found["rounds_skipped"] == len(skipped) > 0
    assert all("left in the budget" in reason for reason in skipped)
    assert all(not row["rounds"] for row in record["llm"]["rows"])
