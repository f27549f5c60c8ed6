"""End to end on a local Ray with 2 workers: bootstrap a very small model (vLLM loads it),
LoRA fine-tune with ZeRO-2 (loss falls), resume at the saved step and data position, merge
(same logits as base + adapter), and recovery from a killed worker (full FT, ZeRO-3).

Sizes are tiny on purpose (the area's test budget is about 5 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "llmops_ray" / "resources" / "sample_corpus"

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = [
    "model.vocab_size=512", "model.hidden_size=128", "model.num_attention_heads=2", "model.num_key_value_heads=2",
    "model.num_hidden_layers=2", "model.intermediate_size=256", "model.max_position_embeddings=256",
]


def _corpus() -> list[str]:
    if SAMPLE.is_dir() and any(SAMPLE.rglob("*.md")):
        return [str(SAMPLE)]
    return [str(REPO / "llmops_ray")]  # fallback: the package's own text (jsonl/md)


@pytest.fixture(scope="module")
def boot(ray_session, tmp_path_factory):
    """A bootstrapped very small model (head_dim 64 so vLLM's CPU attention takes it)."""
    from llmops_ray.config import load_config
    from llmops_ray.train.bootstrap import BootstrapConfig, bootstrap

    out = tmp_path_factory.mktemp("boot") / "tiny"
    cfg = load_config(BootstrapConfig, "bootstrap_tiny_cpu", TINY + [
        "run_name=test-boot", f"out={out}", "seq_len=64", "optim.max_steps=16", "optim.warmup_steps=2",
        "optim.lr=5e-3", "optim.micro_batch_size=8", "checkpoint.every_steps=8", "log_every=4",
    ])
    cfg = cfg.model_copy(update={"corpus": _corpus()})
    return bootstrap(cfg)


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory) -> Path:
    """A small, learnable chat set (plus Alpaca records in the same file's sibling)."""
    path = tmp_path_factory.mktemp("sft") / "chat.jsonl"
    colours = ["red", "green", "blue", "black", "white", "yellow"]
    with path.open("w") as handle:
        for i in range(48):
            c = colours[i % len(colours)]
            handle.write(json.dumps({"messages": [
                {"role": "user", "content": f"What colour is item {i}?"},
                {"role": "assistant", "content": f"Item {i} is {c}."},
            ]}) + "\n")
    return path


def test_bootstrap_output_is_a_standard_model_dir_with_falling_loss(boot):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(boot["output_dir"])
    for name in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", "lineage.json", "loss_curve.png"]:
        assert (out / name).is_file(), name
    history = boot["history"]
    assert len(history) == 16
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 1.0
    lineage = json.loads((out / "lineage.json").read_text())
    assert len(lineage["corpus"]["sha256"]) == 64 and lineage["metrics"]["train_loss"] == boot["metrics"]["train_loss"]
    assert lineage["model_config"]["hidden_size"] == 128
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.head_dim == 64 if hasattr(model.config, "head_dim") else True


VLLM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from vllm import LLM, SamplingParams

    if __name__ == "__main__":
        llm = LLM(model=sys.argv[1], gpu_memory_utilization=0.15, enforce_eager=True, dtype="bfloat16",
                  max_model_len=256, max_num_seqs=4)
        outs = llm.generate(["The knowledge base"], SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))
        print("RESULT " + json.dumps({"tokens": len(outs[0].outputs[0].token_ids), "text": outs[0].outputs[0].text}))
    """
)


def test_vllm_loads_the_bootstrapped_model_and_generates(boot, tmp_path):
    script = tmp_path / "gen.py"
    script.write_text(VLLM_SCRIPT)
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_WORKER_MULTIPROC_METHOD="spawn")
    proc = subprocess.run([sys.executable, str(script), boot["output_dir"]], capture_output=True, text=True, timeout=420, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    assert json.loads(lines[-1][7:])["tokens"] == 8


def _sft_config(boot, data: Path, *extra: str):
    from llmops_ray.config import load_config
    from llmops_ray.train.config import FinetuneConfig

    return load_config(FinetuneConfig, "sft_lora_tiny_cpu", [
        f"base_model={boot['output_dir']}", f"data.path={data}", "data.max_seq_len=64", "optim.micro_batch_size=4",
        "optim.lr=1e-2", "optim.warmup_steps=1", "log_every=1", *extra,
    ])


@pytest.fixture(scope="module")
def lora_runs(boot, sft_file):
    """LoRA + ZeRO-2: 4 steps, then a rerun of the same run name to 8 steps (resume)."""
    from llmops_ray.train import finetune

    first = finetune(_sft_config(boot, sft_file, "run_name=test-lora", "optim.max_steps=4", "checkpoint.every_steps=2"))
    first_lineage = json.loads((Path(first["output_dir"]) / "lineage.json").read_text())
    second = finetune(_sft_config(boot, sft_file, "run_name=test-lora", "optim.max_steps=8", "checkpoint.every_steps=2"))
    return first, first_lineage, second


def test_lora_zero2_loss_falls_and_output_is_complete(lora_runs, sft_file):
    first, lineage, second = lora_runs
    out = Path(second["output_dir"])
    for name in ["adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja",
                 "finetune_config.yaml", "lineage.json", "loss_curve.png"]:
        assert (out / name).is_file(), name
    hist = second["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert second["metrics"]["eval_loss"] is not None and second["metrics"]["train_loss"] is not None
    assert lineage["kind"] == "lora-adapter" and lineage["hyperparameters"]["deepspeed"]["zero_stage"] == 2
    assert lineage["dataset"]["path"] == str(sft_file) and len(lineage["dataset"]["sha256"]) == 64
    assert lineage["dataset"]["records"] == 48 and "git_commit" in lineage and "ray_job_id" in lineage
    assert lineage["metrics"]["steps"] == 4


def test_rerun_resumes_at_saved_step_and_data_position(lora_runs):
    from llmops_ray.config import runs_root
    from llmops_ray.train.runner import steps_geometry
    from llmops_ray.train.config import OptimConfig

    first, _, second = lora_runs
    assert [h["step"] for h in first["history"]] == [1, 2, 3, 4]
    # The rerun restored the step-4 checkpoint: steps 1-4 are the first run's, 5-8 new.
    assert [h["step"] for h in second["history"]] == list(range(1, 9))
    assert second["history"][:4] == first["history"]
    assert second["metrics"]["restarts"] == 1
    # Data position: 43 train rows -> 21 per worker -> 6 micro-batches of 4 per epoch... computed.
    geo = steps_geometry(43, OptimConfig(micro_batch_size=4, max_steps=8), 2)
    state = json.loads((Path(second["checkpoint_path"]) / "state.json").read_text())
    assert state["global_step"] == 8
    assert (state["epoch"], state["micro_in_epoch"]) == divmod(8, geo["steps_per_epoch"])
    assert (runs_root() / "test-lora").is_dir()


def test_merged_model_matches_base_plus_adapter(lora_runs, boot, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llmops_ray.cli import main

    adapter = lora_runs[2]["output_dir"]
    out = tmp_path / "merged"
    with pytest.raises(SystemExit) as exc:
        main(["model", "merge", "--adapter", adapter, "--out", str(out)])
    assert exc.value.code == 0
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7]])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(out)(ids).logits
        ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(boot["output_dir"]), adapter)(ids).logits
        base = AutoModelForCausalLM.from_pretrained(boot["output_dir"])(ids).logits
    assert torch.allclose(merged, ref, atol=1e-4)
    assert not torch.allclose(merged, base, atol=1e-3)  # the adapter did change the model
    assert json.loads((out / "lineage.json").read_text())["kind"] == "merged-model"


def test_killed_worker_is_recovered_from_last_checkpoint(boot, sft_file):
    """Full fine-tuning with ZeRO-3; a Ray Train worker is SIGKILLed after the first checkpoint."""
    import signal

    from ray._private.state import actors  # the GCS actor table of *this* cluster (no dashboard needed)

    from llmops_ray.config import runs_root
    from llmops_ray.train import finetune

    cfg = _sft_config(boot, sft_file, "run_name=test-kill", "method=full", "deepspeed.zero_stage=3",
                      "optim.lr=1e-3", "optim.max_steps=30", "checkpoint.every_steps=3", "checkpoint.max_failures=2", "log_every=10")
    storage = runs_root() / "test-kill"
    killed: list[int] = []
    done = threading.Event()

    def killer():
        # fit() stays on the main thread (Ray Train installs signal handlers); this thread
        # SIGKILLs one Ray Train worker process once checkpoints exist.
        while not done.is_set() and not killed:
            # Kill only once the controller has registered a checkpoint (its snapshot names
            # the latest one): Ray Train polls workers every 2 s, and a checkpoint uploaded
            # but not yet registered is not restored.
            try:
                snapshot = json.loads((storage / "checkpoint_manager_snapshot.json").read_text())
            except (OSError, ValueError):
                snapshot = {}
            if snapshot.get("latest_checkpoint_result"):
                workers = [a["Pid"] for a in actors(actor_state_name="ALIVE").values() if a["ActorClassName"] == "RayTrainWorker"]
                if workers:
                    killed.append(workers[-1])
                    os.kill(workers[-1], signal.SIGKILL)
            time.sleep(0.2)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        out = finetune(cfg)
    finally:
        done.set()
        thread.join(timeout=10)
    assert killed, "the run finished before a worker could be killed"
    assert out["metrics"]["restarts"] >= 1 and out["metrics"]["steps"] == 30
    steps = [h["step"] for h in out["history"]]
    assert steps == list(range(1, 31))
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out["output_dir"])  # the gathered ZeRO-3 full model
    assert model.num_parameters() > 0
