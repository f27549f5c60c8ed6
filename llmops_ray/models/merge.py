"""``llmops model merge``: fold a LoRA adapter into its base model (a plain HF model directory)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from llmops_ray.config import UserError


def adapter_base(adapter_dir: Path) -> str:
    """The base model an adapter was trained on (lineage first, then peft's adapter_config)."""
    lineage = adapter_dir / "lineage.json"
    if lineage.is_file():
        base = json.loads(lineage.read_text()).get("base_model")
        if base:
            return base
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise UserError(f"{adapter_dir}: cannot tell which base model the adapter belongs to")
    return base


def merge_adapter(adapter: str, out: str, base_model: str | None = None) -> dict[str, Any]:
    """Load base + adapter, ``merge_and_unload``, save a full model dir with tokenizer and lineage."""
    from llmops_ray.models.base import check_model_source, load_causal_lm, load_tokenizer, write_lineage
    from llmops_ray.common.artifacts import git_commit, publish_dir, staging_dir

    adapter_dir = Path(adapter).expanduser().resolve()
    if not (adapter_dir / "adapter_config.json").is_file():
        raise UserError(f"{adapter}: not a peft adapter directory (no adapter_config.json)")
    base = check_model_source(base_model or adapter_base(adapter_dir))
    out_dir = Path(out).expanduser().resolve()
    if out_dir == adapter_dir:
        raise UserError("--out must differ from --adapter")

    from peft import PeftModel

    model = PeftModel.from_pretrained(load_causal_lm(base), str(adapter_dir))
    merged = model.merge_and_unload()
    if (adapter_dir / "tokenizer_config.json").is_file():  # fine-tuning outputs carry their tokenizer
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    else:
        tokenizer = load_tokenizer(base)
    tmp = staging_dir(out_dir)
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if (Path(base) / "generation_config.json").is_file():
            shutil.copy2(Path(base) / "generation_config.json", tmp / "generation_config.json")
        adapter_lineage = {}
        if (adapter_dir / "lineage.json").is_file():
            adapter_lineage = json.loads((adapter_dir / "lineage.json").read_text())
        write_lineage(tmp, {
            "kind": "merged-model",
            "base_model": base,
            "adapter": str(adapter_dir),
            "adapter_lineage": adapter_lineage,
            "metrics": adapter_lineage.get("metrics", {}),
            "dataset": adapter_lineage.get("dataset"),
            "git_commit": git_commit(),
        })
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, out_dir)
    return {"output_dir": str(out_dir), "base_model": base, "adapter": str(adapter_dir)}
