"""`serbench bench` on checkpoints that real libraries wrote (the corpus, `tests/corpus`): each form is built
once per session by its library's own save function, in its library's environment, then read as the command
reads it (`bench.checkpoints.prepare`, a child in the reader's environment) and checked: recognised by the
right format, read with every tensor bit-exact against the library's in-memory values, what the reader chose
said in its description, shared storage recorded (stored once, saved once again by torch), 0-d tensors judged
exact through safetensors, and, where a form is refused, refused in one line.

What fails today is data in the registry (`Form.today`): those tests are xfail(strict=True) with the issue's
item, so a reader fix shows up as XPASS and its entry is removed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import frameworks
from bench import checkpoints, workloads
from bench.conformance.roundtrip import exact_by_name, roundtrip
from bench.errors import UsageError
from frameworks import environments
from tests.conftest import adapter_or_skip
from tests.corpus import FORMS, REGISTRY, Form
from tests.corpus.build import Expected, Failure, build, read_expected

SAFETENSORS_WRITERS = tuple(
    n for n in frameworks.names() if "safetensors" in frameworks.adapter_class(n).format_names()
)
"""The frameworks whose safetensors format a checkpoint is timed in (each case runs in its writer's environment)."""


def _params(
    check: str, forms: list[Form], extra: tuple[str, ...] = (), by_writer: bool = False
) -> list[pytest.ParameterSet]:
    """One case per form (and per `extra` value), marked with its reader's framework (with `by_writer`, the
    `extra` value's: the case runs in that framework's environment) and, where the registry says the check fails
    today, xfail(strict=True) with the reason."""
    cases = []
    for form in forms:
        for value in extra or (None,):
            key = check if value is None else f"{check}:{value}"
            marks = [pytest.mark.framework(value if by_writer and value else form.reader)]
            if key in form.today:
                marks.append(pytest.mark.xfail(strict=True, reason=form.today[key]))
            arguments = (form.name,) if value is None else (form.name, value)
            cases.append(pytest.param(*arguments, marks=marks, id="-".join(arguments)))
    return cases


@dataclass
class Corpus:
    """The built forms of this session (`tests.corpus.build`) and each one's reading, made once."""

    out: Path
    failed: dict[str, Failure]
    readings: dict[str, dict | UsageError] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        if name in self.failed:
            failure = self.failed[name]
            pytest.fail(f"building {name} failed in the {failure.environment} environment: {failure.detail}")
        return self.out / name / FORMS[name].path

    def expected(self, name: str) -> Expected:
        self.path(name)
        return read_expected(self.out, name)

    def read(self, name: str) -> dict | UsageError:
        """What `serbench bench` makes of the form: its checkpoints.json entry, or the UsageError it answers."""
        if name not in self.readings:
            try:
                (entry,) = checkpoints.prepare([self.path(name)], self.out / "store" / name, FORMS[name].trusted)
                self.readings[name] = entry
            except UsageError as error:
                self.readings[name] = error
        return self.readings[name]

    def entry(self, name: str) -> dict:
        reading = self.read(name)
        if isinstance(reading, UsageError):
            pytest.fail(f"serbench bench refuses it: {reading}")
        return reading


@pytest.fixture(scope="session")
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Every form this session's tests use, built at once (one child per builder module)."""
    wanted = {
        item.callspec.params["form"]
        for item in request.session.items
        if hasattr(item, "callspec") and item.callspec.params.get("form") in FORMS
    }
    out = tmp_path_factory.mktemp("corpus")
    return Corpus(out, build(out, wanted))


def _stored(entry: dict) -> dict[str, np.ndarray]:
    """The tensors serbench stored for the run, as every process of the run rebuilds them (`workloads`)."""
    import ml_dtypes  # noqa: F401  (registers bfloat16 with NumPy)

    return workloads._read_stored(entry["store"], entry["tensors"], entry.get("shared", []))


def _same(left: np.ndarray, right: np.ndarray) -> bool:
    return left.dtype == right.dtype and left.shape == right.shape and left.tobytes() == right.tobytes()


def _describe(array: np.ndarray) -> str:
    return f"{array.dtype}{list(array.shape)}"


def _differences(form: Form, expected: dict[str, np.ndarray], found: dict[str, np.ndarray]) -> list[str]:
    """What keeps `found` from being `expected` bit for bit: by name, or by value where the reader names them."""
    if not form.by_value:
        problems = [f"missing {sorted(set(expected) - set(found))[:5]}"] if set(expected) - set(found) else []
        extra = sorted(set(found) - set(expected))
        problems += [f"extra {extra[:5]}"] if extra and form.complete else []
        return problems + [
            f"{name}: {_describe(value)} read as {_describe(found[name])}"
            + (" (bits differ)" if _describe(value) == _describe(found[name]) else "")
            for name, value in expected.items()
            if name in found and not _same(value, found[name])
        ]
    pool = list(found.items())
    problems = []
    for name, value in expected.items():
        match = next((index for index, (_, other) in enumerate(pool) if _same(value, other)), None)
        if match is None:
            problems.append(f"no tensor read equals {name} ({_describe(value)})")
        else:
            pool.pop(match)
    if pool and form.complete:
        problems.append(f"{len(pool)} tensors read that were not saved: {[name for name, _ in pool][:5]}")
    return problems


SNIFFED = [form for form in REGISTRY if form.sniffed]


@pytest.mark.parametrize("form", _params("recognised", SNIFFED))
def test_the_form_is_recognised_by_its_format(form: str, corpus: Corpus) -> None:
    """The first reader serbench would use is the form's own (its framework's format; for a form that has no
    serbench format yet, any of its framework's)."""
    spec = FORMS[form]
    found = frameworks.readers_of(corpus.path(form))
    assert found, "no format recognises it"
    fmt = found[0][1]
    assert found[0] == (spec.reader, spec.format or fmt), f"recognised as {found}"


@pytest.mark.parametrize("form", _params("read", list(REGISTRY)))
def test_the_form_is_read_bit_exactly(form: str, corpus: Corpus) -> None:
    spec = FORMS[form]
    entry = corpus.entry(form)
    assert f"{spec.reader} (" in entry["reader"], f"read by the wrong reader: {entry['reader']}"
    expected = corpus.expected(form).tensors
    problems = _differences(spec, expected, _stored(entry))
    assert not problems, f"{entry['reader']}: " + "; ".join(problems[:8])


@pytest.mark.parametrize("form", _params("one-line", list(REGISTRY)))
def test_a_refusal_is_one_line_that_says_what_to_do(form: str, corpus: Corpus) -> None:
    """A form serbench does not read is answered in one line naming the path and what is wrong with it, not
    with a crash of the reader (a form it reads passes: there is nothing to answer)."""
    reading = corpus.read(form)
    if not isinstance(reading, UsageError):
        return
    message = str(reading)
    assert len(message.splitlines()) == 1, message
    assert "crashed" not in message, message
    assert "Traceback" not in message, message
    assert str(corpus.path(form)) in message, message


SHARING = [form for form in REGISTRY if form.shared]


@pytest.mark.parametrize("form", _params("shared", SHARING))
def test_tensors_sharing_one_storage_are_recorded(form: str, corpus: Corpus) -> None:
    """The entry (checkpoints.json) names the tensors that are one storage in the file (GPT-2's tied
    embeddings): `shared`, a sorted list of sorted groups of names."""
    expected = corpus.expected(form).shared
    assert expected, "the builder saw tensors sharing a storage"
    entry = corpus.entry(form)
    assert entry.get("shared") == expected, f"checkpoints.json entry has shared={entry.get('shared')!r}"


@pytest.mark.parametrize("form", _params("stored-once", SHARING))
def test_tied_tensors_are_stored_once_counted_once_and_saved_once_by_torch(form: str, corpus: Corpus) -> None:
    """The run rebuilds each shared group as one array; the payload counts it once; torch.save of what the run
    times writes one storage again (a file about the user's size, not one tensor larger), and safetensors.torch,
    which refuses shared tensors, is an unsupported outcome with its reason, not an error."""
    entry = corpus.entry(form)
    stored = _stored(entry)
    for group in entry["shared"]:
        assert len({id(stored[name]) for name in group}) == 1, f"{group} rebuilt as separate arrays"
    distinct = {id(array): array for array in stored.values()}.values()
    assert entry["payload_bytes"] == sum(array.nbytes for array in distinct)
    assert "each storage once" in entry["payload_counts"]
    adapter = adapter_or_skip("torch")
    resaved = corpus.out / "store" / form / "resaved.pt"
    adapter.save(adapter.from_numpy(stored), resaved, "torch")
    user_bytes = corpus.path(form).stat().st_size
    assert abs(resaved.stat().st_size - user_bytes) < 0.05 * user_bytes, (resaved.stat().st_size, user_bytes)
    manifest = corpus.out / "store" / form / "checkpoints.json"
    manifest.write_text(json.dumps({"checkpoints": [entry]}))
    try:
        workloads.register_checkpoints(manifest)
        outcome = roundtrip(adapter, "safetensors", entry["name"], corpus.out)
    finally:
        workloads.WORKLOADS.pop(entry["name"], None)
    assert outcome.status == "unsupported", outcome.summary()
    assert "share one storage" in outcome.detail, outcome.detail


CHOSEN = {
    "hf-gpt2-directory": ("model.safetensors, the directory's one weights file", "config.json"),
    "peft-lora-directory": ("adapter_model.safetensors, the directory's one weights file",),
    "hf-llama-both-indexes": ("via model.safetensors.index.json", "pytorch_model.bin.index.json not read"),
    "accelerate-save-state": ("model.safetensors with numpy", "optimizer.bin with torch (torch) (as optimizer.*)"),
    "tf-checkpoint-save": ("prefix ckpt-1, the latest, as its `checkpoint` file names it",),
    "tf-checkpoint-write": ("prefix ckpt",),
    "orbax-manager": ("step 5, its only step; item default",),
    "mxnet-legacy-save-parameters": ("legacy (V2) arrays, read with mx.nd.load",),
    "mxnet-legacy-nd-save": ("legacy (V2) arrays, read with mx.nd.load",),
    "mxnet-legacy-export": ("legacy (V2) arrays, read with mx.nd.load",),
}
"""What the reader description of each form whose reader chooses says: which file, index, prefix, step."""
DROPPED = {
    "accelerate-save-state": ("random_states_0.pkl (RNG states, not tensors: not read)", "scheduler.bin: "),
    "timm-train-checkpoint": ("args (Namespace)", "epoch (int)"),
    "flax-msgpack-train-state": ("step (int)",),
    "torch-dcp": ("epoch (int)",),
}
"""What each form's entry says was dropped (values that are not tensors, files not read)."""


@pytest.mark.parametrize("form", _params("chosen", [FORMS[name] for name in CHOSEN]))
def test_the_reader_says_what_it_chose(form: str, corpus: Corpus) -> None:
    entry = corpus.entry(form)
    for words in CHOSEN[form]:
        assert words in entry["reader"], entry["reader"]


@pytest.mark.parametrize("form", _params("dropped", [FORMS[name] for name in DROPPED]))
def test_the_entry_names_what_was_dropped(form: str, corpus: Corpus) -> None:
    dropped = " | ".join(corpus.entry(form)["dropped"])
    for words in DROPPED[form]:
        assert words in dropped, dropped


ZERO_D = [form for form in REGISTRY if form.zero_d]


@pytest.mark.parametrize(("form", "framework"), _params("zero-d", ZERO_D, SAFETENSORS_WRITERS, by_writer=True))
def test_zero_d_tensors_are_judged_exact_through_safetensors(form: str, framework: str, corpus: Corpus) -> None:
    """The checkpoint as the benchmark times it (`roundtrip`: saved in safetensors by the framework, loaded back,
    compared) keeps its 0-d tensors (BatchNorm's num_batches_tracked) 0-d: judged exact (by name)."""
    entry = corpus.entry(form)
    assert any(tensor["shape"] == [] for tensor in entry["tensors"]), "the form holds 0-d tensors"
    adapter = adapter_or_skip(framework)
    manifest = corpus.out / "store" / form / "checkpoints.json"
    manifest.write_text(json.dumps({"checkpoints": [entry]}))
    try:
        workloads.register_checkpoints(manifest)
        outcome = roundtrip(adapter, "safetensors", entry["name"], corpus.out)
    finally:
        workloads.WORKLOADS.pop(entry["name"], None)
    assert exact_by_name(outcome.summary()), outcome.summary()[:500]


@pytest.mark.environment("corpus")
def test_the_corpus_environment_has_its_locked_libraries_on_cores_cpu_torch() -> None:
    """The corpus environment (layered on core) imports its locked transformers, accelerate, peft and
    huggingface_hub, and core's own CPU torch: no second torch, no CUDA build."""
    if environments.current() is None:
        pytest.skip("serbench's environments are not built here (one interpreter runs everything)")
    import importlib.metadata

    import torch

    corpus_pins = environments.ENVIRONMENTS["corpus"].pins()
    for package in ("transformers", "accelerate", "peft", "huggingface-hub"):
        assert importlib.metadata.version(package) == corpus_pins[package], package
    core = environments.ENVIRONMENTS["core"]
    assert torch.__version__.split("+")[0] == core.pins()["torch"]
    assert torch.version.cuda is None, f"a CUDA build of torch ({torch.version.cuda}) is installed"
    assert Path(torch.__file__).resolve().is_relative_to((environments.root() / core.directory).resolve())
