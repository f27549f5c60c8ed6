"""Model directories: tokenizer training, a small Llama-architecture model, load and save.

No weights can be downloaded on the project's own machines, so the project makes its own
tiny base model; users with weights point ``base_model`` at a hub id or a local Hugging
Face directory and :func:`load_causal_lm` / :func:`load_tokenizer` load it the same way.

A model directory is self-describing: ``config.json``, ``model.safetensors``, tokenizer
files whose ``tokenizer_config.json`` carries the chat template, ``generation_config.json``
and ``lineage.json`` (where it came from).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

from pydantic import Field

from llmops_ray.config import StrictModel, UserError

BOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [BOS_TOKEN, PAD_TOKEN, IM_START, IM_END]

# ChatML-style template. The assistant turn ends in <|im_end|>, which is also the
# generation stop token, so a served model stops where its training targets stopped.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TinyModelConfig(StrictModel):
    """Shape of the project's own small Llama-architecture base model."""

    vocab_size: int = Field(4096, ge=300)
    """Target BPE vocabulary size (byte-level, so any text is representable)."""
    hidden_size: int = Field(256, ge=64)
    """Model width. With ``num_attention_heads`` it fixes head_dim = hidden / heads."""
    num_hidden_layers: int = Field(4, ge=1)
    """Number of transformer blocks."""
    num_attention_heads: int = Field(4, ge=1)
    """Query heads. vLLM's CPU attention needs head_dim 64 (16 is refused)."""
    num_key_value_heads: int = Field(4, ge=1)
    """Key/value heads (grouped-query attention when fewer than query heads)."""
    intermediate_size: int = Field(704, ge=64)
    """Width of the SwiGLU MLP."""
    max_position_embeddings: int = Field(1024, ge=64)
    """Longest sequence (tokens) the model is built for; serving's max_model_len <= this."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    tie_word_embeddings: bool = True
    """Share input embedding and LM head weights (halves the embedding parameters)."""
    seed: int = 0
    """Seed of the random initialisation."""

    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def text_hash(texts: Iterable[str]) -> str:
    """sha256 over a sequence of texts (order matters), for lineage."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def file_hash(paths: Iterable[str | os.PathLike[str]]) -> str:
    """sha256 over the contents of files, in sorted path order."""
    digest = hashlib.sha256()
    for path in sorted(str(p) for p in paths):
        digest.update(Path(path).name.encode("utf-8"))
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096):
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer.

    Returns a ``PreTrainedTokenizerFast`` with BOS/EOS/PAD set and the chat template.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        model_max_length=1 << 30,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def init_llama(config: TinyModelConfig, tokenizer) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` matching ``tokenizer``'s vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if config.hidden_size % config.num_attention_heads:
        raise UserError("hidden_size must be a multiple of num_attention_heads")
    if config.num_attention_heads % config.num_key_value_heads:
        raise UserError("num_attention_heads must be a multiple of num_key_value_heads")
    torch.manual_seed(config.seed)
    llama_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        rope_theta=config.rope_theta,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS_TOKEN),
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
    )
    return LlamaForCausalLM(llama_config)


def write_lineage(out_dir: str | os.PathLike[str], lineage: dict[str, Any]) -> Path:
    """Write ``lineage.json`` (with a UTC timestamp) into a model directory."""
    path = Path(out_dir) / "lineage.json"
    record = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **lineage}
    path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return path


def save_model_dir(model, tokenizer, out_dir: str | os.PathLike[str], lineage: dict[str, Any]) -> Path:
    """Save a standard HF model directory plus ``generation_config.json`` and ``lineage.json``."""
    from transformers import GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    stop_ids = [tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(BOS_TOKEN)]
    GenerationConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS_TOKEN),
        eos_token_id=stop_ids,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=0.7,
        top_p=0.9,
        max_new_tokens=128,
    ).save_pretrained(out)
    write_lineage(out, lineage)
    return out


def build_random_model_dir(
    texts: Iterable[str],
    out_dir: str | os.PathLike[str],
    config: TinyModelConfig | None = None,
    lineage: dict[str, Any] | None = None,
) -> Path:
    """Tokenizer trained on ``texts`` + a randomly initialised model, saved as an HF directory.

    The starting point of ``llmops model bootstrap`` (which then pretrains it) and a fast
    fixture for serving tests that need a real, loadable model but not a good one.
    """
    config = config or TinyModelConfig()
    texts = list(texts)
    if not texts:
        raise UserError("cannot train a tokenizer on an empty corpus")
    tokenizer = train_tokenizer(texts, config.vocab_size)
    model = init_llama(config, tokenizer)
    record = {"kind": "random-init", "model_config": config.model_dump(), "corpus_sha256": text_hash(texts)}
    record.update(lineage or {})
    return save_model_dir(model, tokenizer, out_dir, record)


def is_local_model_dir(path_or_id: str | os.PathLike[str]) -> bool:
    return (Path(path_or_id) / "config.json").is_file()


def check_model_source(path_or_id: str) -> str:
    """Validate a ``base_model`` value early: an existing HF directory, or a hub id.

    A value that looks like a filesystem path (absolute, ``./``, ``~``) but is not a model
    directory is an error here, before any worker starts.
    """
    value = str(path_or_id)
    looks_like_path = value.startswith(("/", "./", "../", "~")) or os.sep in value.strip("/").split("/", 1)[0]
    if is_local_model_dir(value):
        return str(Path(value).resolve())
    if Path(value).expanduser().exists():
        raise UserError(f"model directory {value!r} has no config.json")
    if looks_like_path or value.count("/") > 1:
        raise UserError(f"base model path {value!r} does not exist")
    return value  # a hub id such as "Qwen/Qwen2.5-0.5B-Instruct"


def load_tokenizer(path_or_id: str):
    """``AutoTokenizer.from_pretrained`` for a local directory or a hub id."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(check_model_source(path_or_id))


def load_causal_lm(path_or_id: str, dtype: str | None = None):
    """``AutoModelForCausalLM.from_pretrained`` for a local directory or a hub id."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {}
    if dtype:
        kwargs["dtype"] = getattr(torch, dtype)
    return AutoModelForCausalLM.from_pretrained(check_model_source(path_or_id), **kwargs)


