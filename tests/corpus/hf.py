"""Builders of the Hugging Face forms (transformers, huggingface_hub, peft, accelerate), run in the corpus
environment. Every model is built from a config with tiny sizes and seeded; nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tests.corpus.build import Expected, flatten_tensors, torch_leaf, torch_to_numpy

LLAMA_SHARD_BYTES = 55_000
"""max_shard_size for the tiny Llama in bfloat16 (214 KB): five shards."""


def _seed() -> None:
    import torch
    import transformers

    transformers.set_seed(27)
    torch.manual_seed(27)


def _gpt2() -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    _seed()
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=32, vocab_size=128, tie_word_embeddings=True)
    return GPT2LMHeadModel(config).eval()


def _llama() -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    _seed()
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=256,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).to(torch.bfloat16).eval()


def _saved_keys(path: Path) -> list[str]:
    """The tensor names a safetensors file holds (its header), in the file's order."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return list(handle.keys())


def _as_saved(model: Any, files: list[Path]) -> dict[str, np.ndarray]:
    """The model's own in-memory tensors under the names `save_pretrained` wrote to `files` (it drops tied
    copies and non-persistent buffers): the values come from memory, the names from the files."""
    state = model.state_dict()
    return {key: torch_to_numpy(state[key]) for path in files for key in _saved_keys(path)}


def gpt2_safetensors(root: Path) -> Expected:
    """`GPT2LMHeadModel.save_pretrained(dir)`: model.safetensors (without the tied lm_head.weight)."""
    model = _gpt2()
    model.save_pretrained(root)
    return Expected(_as_saved(model, [root / "model.safetensors"]))


def gpt2_tied_state_dict(root: Path) -> Expected:
    """`torch.save(model.state_dict(), 'pytorch_model.bin')` of GPT-2 with tied embeddings: lm_head.weight and
    transformer.wte.weight are one storage in the pickle."""
    import torch

    model = _gpt2()
    state = model.state_dict()
    torch.save(state, root / "pytorch_model.bin")
    by_storage: dict[int, list[str]] = {}
    for key, tensor in state.items():
        by_storage.setdefault(tensor.untyped_storage().data_ptr(), []).append(key)
    shared = [sorted(names) for names in by_storage.values() if len(names) > 1]
    return Expected({key: torch_to_numpy(tensor) for key, tensor in state.items()}, shared=sorted(shared))


def llama_bf16_shards(root: Path) -> Expected:
    """`LlamaForCausalLM.save_pretrained(dir, max_shard_size=...)` in bfloat16: five safetensors shards and
    model.safetensors.index.json."""
    model = _llama()
    model.save_pretrained(root, max_shard_size=LLAMA_SHARD_BYTES)
    shards = sorted(root.glob("model-*-of-*.safetensors"))
    return Expected(_as_saved(model, shards))


def _torch_bin_shards(model: Any, root: Path) -> list[str]:
    """`huggingface_hub.save_torch_state_dict(..., safe_serialization=False)`: pytorch_model-*.bin shards (torch
    pickles) and pytorch_model.bin.index.json, as transformers 4 wrote them; the names it saved."""
    from huggingface_hub import save_torch_state_dict

    save_torch_state_dict(model.state_dict(), root, safe_serialization=False, max_shard_size=LLAMA_SHARD_BYTES)
    return list(json.loads((root / "pytorch_model.bin.index.json").read_text())["weight_map"])


def llama_bf16_bin_shards(root: Path) -> Expected:
    model = _llama()
    names = _torch_bin_shards(model, root)
    state = model.state_dict()
    return Expected({key: torch_to_numpy(state[key]) for key in names})


def llama_both_indexes(root: Path) -> Expected:
    """A Hub repository's layout: the safetensors shards with their index and the .bin shards with theirs."""
    model = _llama()
    model.save_pretrained(root, max_shard_size=LLAMA_SHARD_BYTES)
    _torch_bin_shards(model, root)
    return Expected(_as_saved(model, sorted(root.glob("model-*-of-*.safetensors"))))


def bert_fp16(root: Path) -> Expected:
    """`BertModel.half().save_pretrained(dir)`: model.safetensors in float16."""
    import torch
    from transformers import BertConfig, BertModel

    _seed()
    config = BertConfig(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    model = BertModel(config).to(torch.float16).eval()
    model.save_pretrained(root)
    return Expected(_as_saved(model, [root / "model.safetensors"]))


def peft_lora(root: Path) -> Expected:
    """peft `get_peft_model(gpt2, LoraConfig(...)).save_pretrained(dir)`: adapter_model.safetensors and
    adapter_config.json; the values are `get_peft_model_state_dict`, what peft saves."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    model = get_peft_model(
        _gpt2(), LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], init_lora_weights=False, fan_in_fan_out=True)
    )
    model.save_pretrained(root)
    saved = get_peft_model_state_dict(model)
    return Expected({key: torch_to_numpy(tensor) for key, tensor in saved.items()})


def _trained_with_accelerate(root: Path) -> tuple[Any, Any]:
    """A model, AdamW and a LambdaLR prepared by `Accelerator(cpu=True)`, one step taken, then
    `accelerator.save_state(dir)`; the model and optimizer."""
    import torch
    from accelerate import Accelerator

    _seed()
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9**step)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    loss = model(torch.randn(5, 8)).square().mean()
    accelerator.backward(loss)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    accelerator.save_state(str(root))
    return accelerator.unwrap_model(model), optimizer


def accelerate_state(root: Path) -> Expected:
    """The save_state directory: model.safetensors, optimizer.bin, scheduler.bin, random_states_0.pkl."""
    model, optimizer = _trained_with_accelerate(root)
    tensors = {f"model.{key}": torch_to_numpy(value) for key, value in model.state_dict().items()}
    tensors |= {f"optimizer.{key}": value for key, value in flatten_tensors(optimizer.state_dict(), torch_leaf)}
    return Expected(tensors)


def accelerate_optimizer(root: Path) -> Expected:
    """optimizer.bin of a save_state directory: `torch.save(optimizer.state_dict())` (AdamW, after a step)."""
    _, optimizer = _trained_with_accelerate(root)
    return Expected(dict(flatten_tensors(optimizer.state_dict(), torch_leaf)))
