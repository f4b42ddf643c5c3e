"""The corpus of real checkpoints: forms that libraries' own save functions write, what each looks like on disk,
and what serbench makes of it today (`tests/test_real_checkpoints.py` reads each one as `serbench bench` does).

Each form is built per test session by one function (`REGISTRY`, `Form.builder`), in the environment of its
library (`MODULES`, `frameworks.environments`): `build.py` runs one child per builder module, all at once
(about 30 s for the whole corpus on the project's 2-core VM). Models are built from configs with tiny sizes and
seeded; nothing is downloaded. Each builder also returns the tensors it saved, from the library's own memory
(`build.Expected`), which the tests compare with what serbench read, bit for bit.

Hugging Face forms (corpus environment: transformers 5.24.0, huggingface_hub 2.4.0, peft 0.21.2, accelerate
1.16.0, on core's torch 2.13.0+cpu; transformers 5.25.0 needs kernels>=0.19.1, which the registry lacks):

- hf-gpt2-safetensors / hf-gpt2-directory: `GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, ...))
  .save_pretrained(dir)`: config.json, generation_config.json, model.safetensors (28 float32 tensors; the tied
  lm_head.weight is left out, transformer.wte.weight holds it). The first gives the file, the second the
  directory, as a user would.
- hf-gpt2-tied-state-dict: `torch.save(model.state_dict(), "pytorch_model.bin")` of the same GPT-2: a torch zip
  whose pickle has lm_head.weight and transformer.wte.weight as views of one storage (29 names, 28 storages).
- hf-llama-bf16-shards: `LlamaForCausalLM` (hidden 64, 2 layers, vocab 256, untied) in bfloat16,
  `save_pretrained(dir, max_shard_size=55_000)`: model-0000{1..5}-of-00005.safetensors and
  model.safetensors.index.json (`{"metadata": {"total_parameters", "total_size"}, "weight_map": {name: shard}}`).
- hf-llama-bf16-bin-shards: `huggingface_hub.save_torch_state_dict(state_dict, dir, safe_serialization=False,
  max_shard_size=55_000)`, the layout transformers 4 wrote: pytorch_model-0000{1..5}-of-00005.bin (torch zips)
  and pytorch_model.bin.index.json.
- hf-llama-both-indexes: both of the above in one directory, as many Hub repositories hold them.
- hf-bert-fp16: `BertModel(BertConfig(hidden_size=32, ...)).to(float16).save_pretrained(dir)`: model.safetensors.
- peft-lora-adapter / peft-lora-directory: `get_peft_model(gpt2, LoraConfig(r=4, target_modules=["c_attn"]))
  .save_pretrained(dir)`: adapter_config.json, README.md and adapter_model.safetensors (4 tensors named
  `base_model.model.transformer.h.<i>.attn.c_attn.lora_{A,B}.weight`); the file, and the directory.
- accelerate-save-state: `Accelerator(cpu=True).save_state(dir)` after one step of a Sequential MLP with AdamW
  and LambdaLR: model.safetensors, optimizer.bin (`torch.save(optimizer.state_dict())`), scheduler.bin (no
  tensors) and random_states_0.pkl (a torch zip of Python's, NumPy's and torch's RNG states). Matched by value:
  the reader's names for it are its own; the RNG states may come with it (`complete=False`).
- accelerate-optimizer-bin: optimizer.bin of such a directory (`state.<i>.{step,exp_avg,exp_avg_sq}`; step is a
  0-d float32 tensor; param_groups' floats and lists are not tensors).

timm 1.0.31 and torchvision 0.28.0 (not installable here: their wheels are CUDA builds) are reproduced by
`fixtures.py`, whose docstring gives their layout and where it was taken from: torchvision-resnet18
(`torch.save(state_dict)`), timm-train-checkpoint (CheckpointSaver's dict, with an argparse.Namespace) and
timm-hub-safetensors (`save_for_hf`'s model.safetensors, with 0-d int64 num_batches_tracked).

torch 2.13.0 (core environment):

- torch-legacy-pickle: `torch.save(state_dict, path, _use_new_zipfile_serialization=False)`: no zip; a stream
  of pickles (magic number 0x1950a86a20f9469cfc6c, protocol, system info, the object, storage keys, storages),
  starting with bytes 80 02 8a 0a.
- torch-dcp: `torch.distributed.checkpoint.save({"model": state_dict, "epoch": 3}, checkpoint_id=dir)` in one
  process without a process group: dir/.metadata (a pickle of `Metadata`: each tensor's fully qualified name,
  e.g. `model.conv1.weight`, with its shape, dtype and chunks' offsets) and dir/__0_0.distcp (each item a
  torch.save zip, one after another; `epoch` is stored as pickled bytes).

Keras 3.15.1 and TensorFlow 2.21.0 (core environment), a Dense(16)-BatchNormalization-Dense(4) model after one
Adam step:

- keras-save-weights: `model.save_weights("model.weights.h5")`: HDF5 datasets `layers/<layer>/vars/<i>`.
- tf-checkpoint-save: `tf.train.Checkpoint(model=model, optimizer=optimizer).save(dir/"ckpt")`: ckpt-1.index,
  ckpt-1.data-00000-of-00001 and the text file `checkpoint` (`model_checkpoint_path: "ckpt-1"`); 23 variables:
  the model's 8, Adam's 14 (iterations, learning_rate, a momentum and a velocity per trainable variable) and
  the Checkpoint's save_counter. Matched by value (their keys are object-graph paths such as
  `model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE`).
- tf-checkpoint-write: `tf.train.Checkpoint(net=model, step=tf.Variable(7)).write(dir/"ckpt")`: ckpt.index and
  ckpt.data-00000-of-00001, no state file; the root's children are `net` and `step`, not serbench's `tree`.

Flax 0.12.8, Orbax 0.12.8, JAX 0.10.2 (core environment), a linen MLP's TrainState after one Adam step:

- flax-msgpack-variables: `flax.serialization.to_bytes({"params": params})`: a msgpack map of maps, each array
  a msgpack ext (dtype, shape, bytes).
- flax-msgpack-train-state: `to_bytes(state)` of the TrainState, as flax's `checkpoints.save_checkpoint` wrote
  it: `step` is a Python int (a msgpack int), the optax state a map keyed "0", "1".
- orbax-standard: `ocp.StandardCheckpointer().save(dir/"state", tree)` of `to_state_dict(state)`:
  _CHECKPOINT_METADATA, _METADATA, _sharding, manifest.ocdbt, array_metadatas/, d/ and ocdbt.process_0/ (the
  OCDBT database). The Python int `step` is stored as a 0-d int64 (its ScalarMetadata).
- orbax-manager: `ocp.CheckpointManager(dir).save(5, args=ocp.args.StandardSave(tree))`: dir/5/ holds
  _CHECKPOINT_METADATA and commit_success.txt, and the item in dir/5/default/ (a StandardCheckpointer
  directory); nothing at dir's top but the step directories.

MXNet 1.9.1 (mxnet environment), a Gluon HybridSequential Dense(16)-BatchNorm-Dense(4) after a forward in
training; every file is an NDArray list (magic 0x112, then per array a marker, shape, context, dtype, data, then
the names):

- mxnet-legacy-save-parameters: `net.save_parameters("net.params")` without `npx.set_np()` (MXNet's default):
  marker 0xF993FAC9 (V2, legacy shapes); names `0.weight`, `1.running_mean`, ... (structural).
- mxnet-legacy-nd-save: `mx.nd.save("arrays.nd", {name: NDArray})` of float32, int64 and float16 arrays: V2.
- mxnet-legacy-export: `net.hybridize(); net(x); net.export(dir/"model")`: model-symbol.json and
  model-0000.params, V2, names `arg:<dense0_weight>` / `aux:<batchnorm0_running_mean>`; matched by value.
- mxnet-np-save-parameters / mxnet-npx-save: with `npx.set_np()` first (d2l's way, and serbench's),
  `save_parameters` and `npx.save("arrays.npx", dict)`: marker 0xF993FACA (V3, NumPy shapes).

`Form.today` records what fails today, as the reason of an xfail(strict=True): when a reader is fixed, its tests
XPASS and the entry is removed. Issue 27's entries are gone (its fixes read every form above); what is left is
upstream, each entry with its cause.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MODULES = {
    "hf": "corpus",
    "fixtures": "core",
    "torch_forms": "core",
    "tensorflow_forms": "core",
    "jax_forms": "core",
    "mxnet_forms": "mxnet",
}
"""Each builder module and the environment it runs in (`frameworks.environments`)."""


@dataclass(frozen=True)
class Form:
    name: str
    builder: str
    """`module:function` in tests.corpus; the function writes the form into a directory, returns `build.Expected`."""
    path: str
    """The checkpoint a user gives `serbench bench`, relative to the form's directory ("" for the directory)."""
    reader: str
    """The framework that reads it (its tests run in that framework's environment)."""
    format: str | None = None
    """The serbench format whose sniffer recognises it first (None: any format of `reader`)."""
    trusted: bool = False
    """Read with --trusted (a pickle)."""
    sniffed: bool = True
    """Recognised by a format's sniffer (False: a directory of files serbench reads through an index or file
    by file, a Hugging Face or accelerate directory)."""
    by_value: bool = False
    """Match tensors by value (dtype, shape, bytes) instead of by name, where the reader chooses the names."""
    complete: bool = True
    """False where the reader may give more tensors than expected (an accelerate directory's RNG states)."""
    shared: bool = False
    """Holds tensors that share one storage: checked to be recorded in the checkpoints.json entry."""
    zero_d: bool = False
    """Holds 0-d tensors: checked to be judged exact through every core safetensors writer."""
    today: dict[str, str] = field(default_factory=dict)
    """Check -> what happens today, for the checks that fail (`recognised`, `read`, `one-line`, `shared`,
    `zero-d:<framework>`): those tests are xfail(strict=True) with this reason."""

    @property
    def module(self) -> str:
        return self.builder.split(":")[0]

    @property
    def function(self) -> str:
        return self.builder.split(":")[1]


TENSORFLOW_0D = (
    "upstream, not serbench: safetensors 0.8.0's safetensors.tensorflow.save_file turns each tensor into NumPy with "
    "tensor.numpy() (its _tf2np), which gives a NumPy scalar, not an array, for a 0-d tensor, and "
    "safetensors.numpy's _flatten then reads its .ctypes: AttributeError: 'numpy.int64' object has no attribute "
    "'ctypes' (the TensorFlow adapter records it as a finding for shape-0d/dict and keys-dotted)"
)

REGISTRY: tuple[Form, ...] = (
    Form("hf-gpt2-safetensors", "hf:gpt2_safetensors", "model.safetensors", "numpy", "safetensors"),
    Form("hf-gpt2-directory", "hf:gpt2_safetensors", "", "numpy", sniffed=False),
    Form(
        "hf-gpt2-tied-state-dict",
        "hf:gpt2_tied_state_dict",
        "pytorch_model.bin",
        "torch",
        "torch",
        trusted=True,
        shared=True,
    ),
    Form("hf-llama-bf16-shards", "hf:llama_bf16_shards", "", "numpy", sniffed=False),
    Form("hf-llama-bf16-bin-shards", "hf:llama_bf16_bin_shards", "", "torch", trusted=True, sniffed=False),
    Form("hf-llama-both-indexes", "hf:llama_both_indexes", "", "numpy", sniffed=False),
    Form("hf-bert-fp16", "hf:bert_fp16", "model.safetensors", "numpy", "safetensors"),
    Form("peft-lora-adapter", "hf:peft_lora", "adapter_model.safetensors", "numpy", "safetensors"),
    Form("peft-lora-directory", "hf:peft_lora", "", "numpy", sniffed=False),
    Form(
        "accelerate-save-state",
        "hf:accelerate_state",
        "",
        "torch",
        trusted=True,
        sniffed=False,
        by_value=True,
        complete=False,
    ),
    Form("accelerate-optimizer-bin", "hf:accelerate_optimizer", "optimizer.bin", "torch", "torch", trusted=True),
    Form(
        "torchvision-resnet18",
        "fixtures:torchvision_resnet18",
        "resnet18.pth",
        "torch",
        "torch",
        trusted=True,
        zero_d=True,
        today={"zero-d:tensorflow": TENSORFLOW_0D},
    ),
    Form(
        "timm-train-checkpoint",
        "fixtures:timm_train_checkpoint",
        "checkpoint-0.pth.tar",
        "torch",
        "torch",
        trusted=True,
    ),
    Form(
        "timm-hub-safetensors",
        "fixtures:timm_hub_safetensors",
        "model.safetensors",
        "numpy",
        "safetensors",
        zero_d=True,
        today={"zero-d:tensorflow": TENSORFLOW_0D},
    ),
    Form("torch-legacy-pickle", "torch_forms:legacy_pickle", "resnet18-legacy.pt", "torch", "torch", trusted=True),
    Form("torch-dcp", "torch_forms:distributed_checkpoint", "checkpoint", "torch", trusted=True),
    Form(
        "keras-save-weights",
        "tensorflow_forms:keras_weights",
        "model.weights.h5",
        "tensorflow",
        "keras-h5",
        by_value=True,
    ),
    Form("tf-checkpoint-save", "tensorflow_forms:checkpoint_save", "", "tensorflow", "tf-checkpoint", by_value=True),
    Form("tf-checkpoint-write", "tensorflow_forms:checkpoint_write", "", "tensorflow", "tf-checkpoint", by_value=True),
    Form("flax-msgpack-variables", "jax_forms:flax_msgpack_variables", "variables.msgpack", "jax", "flax-msgpack"),
    Form("flax-msgpack-train-state", "jax_forms:flax_msgpack_train_state", "state.msgpack", "jax", "flax-msgpack"),
    Form("orbax-standard", "jax_forms:orbax_standard", "state", "jax", "orbax"),
    Form("orbax-manager", "jax_forms:orbax_manager", "checkpoints", "jax", "orbax"),
    # MXNet's legacy forms first: its NumPy mode, once set, is global to the builder's process
    Form("mxnet-legacy-save-parameters", "mxnet_forms:legacy_save_parameters", "net.params", "mxnet", "gluon-params"),
    Form("mxnet-legacy-nd-save", "mxnet_forms:legacy_nd_save", "arrays.nd", "mxnet", "mx-ndarray"),
    Form(
        "mxnet-legacy-export",
        "mxnet_forms:legacy_export",
        "model-0000.params",
        "mxnet",
        "gluon-params",
        by_value=True,
    ),
    Form("mxnet-np-save-parameters", "mxnet_forms:np_save_parameters", "net.params", "mxnet", "gluon-params"),
    Form("mxnet-npx-save", "mxnet_forms:npx_save", "arrays.npx", "mxnet", "mx-ndarray"),
)

FORMS = {form.name: form for form in REGISTRY}
