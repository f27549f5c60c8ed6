"""DPO step time: our Ray Train + DeepSpeed loop (``objective: dpo``, LoRA) vs a plain
single-process torch DPO step, and the peak memory of the two ways to hold the reference model.

Same model (the default tiny Llama shape, random init, LoRA r=8 on q/k/v/o), same batch
(B synthetic pairs: a P-token prompt and R-token chosen/rejected answers), same loss
(``llmops_ray.train.dpo``), same thread count. A step is: reference forward (adapter
disabled, no grad), policy forward over the 2B rows, backward, clip, AdamW step. Target:
Ray Train + DeepSpeed (1 worker) / plain loop <= 1.15.

Memory: a fresh process per variant runs the same DPO steps with the reference held either as
the base with the LoRA adapter disabled (what training does) or as a separate frozen copy of
the base; its peak RSS (``ru_maxrss``) is reported.

Run: .venv/bin/python benchmarks/dpo_step.py [--steps 12] [--threads 2] [--pairs 4] [--prompt 64] [--answer 32]
The last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def synthetic_pairs(vocab: int, n: int, prompt_len: int, answer_len: int, seed: int = 0) -> list[dict]:
    """Tokenized pair rows (the layout of ``train.dpo_data``): labels -100 on the prompt."""
    import torch

    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        prompt = torch.randint(4, vocab, (prompt_len,), generator=g).tolist()
        chosen = torch.randint(4, vocab, (answer_len,), generator=g).tolist()
        rejected = torch.randint(4, vocab, (answer_len,), generator=g).tolist()
        rows.append({"chosen_input_ids": prompt + chosen, "chosen_labels": [-100] * prompt_len + chosen,
                     "rejected_input_ids": prompt + rejected, "rejected_labels": [-100] * prompt_len + rejected,
                     "truncated": False})
    return rows


def lora_model(model_dir: str):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.config.use_cache = False
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **LORA))


def plain_steps(model_dir: str, rows: list[dict], steps: int, threads: int, lr: float, separate_ref: bool = False) -> list[float]:
    """Plain single-process DPO loop; seconds per step. ``separate_ref``: the reference is a
    frozen copy of the base instead of the adapter-disabled policy."""
    import torch

    from llmops_ray.train.config import DpoSettings
    from llmops_ray.train.dpo import dpo_micro_step
    from llmops_ray.train.dpo_data import collate_pairs

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = lora_model(model_dir)
    model.train()
    reference = None
    if separate_ref:
        from transformers import AutoModelForCausalLM

        reference = AutoModelForCausalLM.from_pretrained(model_dir).eval().requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    batch = collate_pairs({k: [r[k] for r in rows] for k in rows[0]}, pad_id=0)
    settings = DpoSettings(beta=0.1)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss, _ = dpo_micro_step(model, model, reference, batch, settings)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times


def ray_steps(model_dir: str, rows: list[dict], steps: int, workers: int, threads: int, micro: int, stage: int, lr: float) -> list[float]:
    """Our loop (``llmops_ray.train.loop`` with ``objective: dpo``) on Ray Train; per-step seconds from rank 0."""
    import ray

    from llmops_ray.config import runs_root
    from llmops_ray.train.config import (
        CheckpointSettings, DeepSpeedSettings, DpoSettings, LoraSettings, OptimConfig, StepsGeometry, TrainPlan,
        WorkerSettings,
    )
    from llmops_ray.train.runner import run_plan

    ds = ray.data.from_items(rows).materialize()
    optim = OptimConfig(lr=lr, max_steps=steps, micro_batch_size=micro, schedule="constant", grad_clip=1.0)
    plan = TrainPlan(
        run_name=f"bench-dpo-step-{workers}w-z{stage}-{int(time.time())}", label="bench-dpo", model_dir=model_dir,
        method="lora", lora=LoraSettings(rank=LORA["r"], alpha=LORA["lora_alpha"], dropout=0.0,
                                         target_modules=LORA["target_modules"]),
        objective="dpo", dpo=DpoSettings(beta=0.1),
        optim=optim, deepspeed=DeepSpeedSettings(zero_stage=stage, torch_adam=True),
        workers=WorkerSettings(num_workers=workers, cpus_per_worker=threads, torch_threads=threads),
        checkpoint=CheckpointSettings(every_steps=10**6, keep_best=1, max_failures=0),
        geometry=StepsGeometry.of(len(rows), optim, workers), has_val=False, pad_id=0, log_every=10**6,
        storage_path=str(runs_root()),
    )
    _, state = run_plan(plan, {"train": ds})
    return [h["step_time_s"] for h in state["history"]]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_probe(model_dir: str, rows_file: str, variant: str, threads: int) -> None:
    """Child process: 3 DPO steps with the given reference; prints, as JSON, the peak RSS of
    the process and how far it rose above the RSS after the imports (MiB)."""
    import peft  # noqa: F401 - imports first, so that the baseline holds the libraries
    import transformers  # noqa: F401

    import llmops_ray.train.dpo  # noqa: F401
    import llmops_ray.train.dpo_data  # noqa: F401

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    base = _status_kib("VmRSS")
    rows = json.loads(Path(rows_file).read_text())
    plain_steps(model_dir, rows, 3, threads, 1e-3, separate_ref=(variant == "copy"))
    peak = _status_kib("VmHWM")
    print(json.dumps({"variant": variant, "peak_rss_mib": peak / 1024, "peak_growth_mib": (peak - base) / 1024,
                      "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3, help="leading steps left out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=4, help="pairs per step (2x rows per forward)")
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens")
    parser.add_argument("--answer", type=int, default=32, help="tokens of each answer")
    parser.add_argument("--mem-hidden", type=int, default=512, help="width of the (larger) model of the memory probe")
    parser.add_argument("--mem-layers", type=int, default=8, help="layers of the memory probe's model")
    parser.add_argument("--memory-probe", nargs=3, metavar=("MODEL_DIR", "ROWS_JSON", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(*args.memory_probe, threads=args.threads)
        return

    os.environ.setdefault("LLMOPS_HOME", tempfile.mkdtemp(prefix="llmops-bench-"))
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "llmops-torch-extensions"))
    from transformers import AutoConfig

    from llmops_ray.cluster import init_ray
    from llmops_ray.models.base import TinyModelConfig, build_random_model_dir

    model_dir = Path(tempfile.mkdtemp(prefix="bench-model-")) / "m"
    texts = [p.read_text(encoding="utf-8") for p in (Path(__file__).resolve().parents[1] / "llmops_ray").rglob("*.py")]
    build_random_model_dir(texts, model_dir, TinyModelConfig())
    vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    rows = synthetic_pairs(vocab, args.pairs * (args.steps + 2), args.prompt, args.answer)
    step_rows = rows[: args.pairs]
    tokens = 2 * args.pairs * (args.prompt + args.answer)  # policy forward/backward tokens per step

    def row(name: str, times: list[float]) -> tuple[str, float]:
        # Best step after warm-up: the least disturbed by other processes on a shared machine.
        kept = times[args.warmup:] or times
        print(f"{name}: median {statistics.median(kept) * 1000:.1f} ms, best {min(kept) * 1000:.1f} ms over {len(kept)} steps", flush=True)
        return name, min(kept)

    # The Ray loop cycles through its shard; the plain loop repeats one batch (same shapes).
    results = [row("plain torch DPO step (1 process)", plain_steps(str(model_dir), step_rows, args.steps, args.threads, 1e-3))]
    init_ray(num_cpus=max(2, args.threads), address="local")
    results.append(row("Ray Train + DeepSpeed ZeRO-0, 1 worker",
                       ray_steps(str(model_dir), rows, args.steps, 1, args.threads, args.pairs, 0, 1e-3)))
    results.append(row("Ray Train + DeepSpeed ZeRO-2, 1 worker",
                       ray_steps(str(model_dir), rows, args.steps, 1, args.threads, args.pairs, 2, 1e-3)))
    again = row("plain torch DPO step (1 process)", plain_steps(str(model_dir), step_rows, args.steps, args.threads, 1e-3))
    results[0] = min(results[0], again, key=lambda r: r[1])

    # Memory: a larger model, so that the weights (not the libraries) decide the difference.
    mem_dir = Path(tempfile.mkdtemp(prefix="bench-mem-model-")) / "m"
    build_random_model_dir(texts, mem_dir, TinyModelConfig(hidden_size=args.mem_hidden, num_hidden_layers=args.mem_layers,
                                                           num_attention_heads=args.mem_hidden // 64,
                                                           num_key_value_heads=args.mem_hidden // 64,
                                                           intermediate_size=args.mem_hidden * 11 // 4))
    mem_params = sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(mem_dir).parameters())
    rows_file = Path(tempfile.mkdtemp(prefix="bench-rows-")) / "rows.json"
    rows_file.write_text(json.dumps(synthetic_pairs(AutoConfig.from_pretrained(mem_dir).vocab_size, args.pairs,
                                                    args.prompt, args.answer)))
    memory = {}
    for variant in ("adapter-disabled", "copy"):
        proc = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--memory-probe",
                               str(mem_dir), str(rows_file), variant], capture_output=True, text=True, check=True)
        memory[variant] = json.loads(proc.stdout.strip().splitlines()[-1])

    base = results[0][1]
    import torch  # noqa: F401 - loaded already; parameter count below
    from transformers import AutoModelForCausalLM

    n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_dir).parameters())
    print(f"\nmodel: {n_params / 1e6:.2f}M params (fp32 {n_params * 4 / 2**20:.0f} MiB), LoRA r={LORA['r']}, "
          f"{args.pairs} pairs x ({args.prompt} prompt + {args.answer} answer) tokens, {args.threads} threads")
    print(f"{'DPO step':<44} {'step ms':>9} {'tokens/s':>9} {'ratio':>6}")
    for name, t in results:
        print(f"{name:<44} {t * 1000:9.1f} {tokens / t:9.0f} {t / base:6.2f}")
    print(f"\nmemory probe model: {mem_params / 1e6:.1f}M params (fp32 {mem_params * 4 / 2**20:.0f} MiB), 3 DPO steps")
    print(f"{'reference model':<44} {'peak RSS MiB':>12} {'growth MiB':>10}")
    for variant, m in memory.items():
        print(f"{variant:<44} {m['peak_rss_mib']:12.0f} {m['peak_growth_mib']:10.0f}")
    ratio = results[1][1] / base
    saved = memory["copy"]["peak_growth_mib"] - memory["adapter-disabled"]["peak_growth_mib"]
    print(f"\nratio (Ray Train + DeepSpeed, 1 worker / plain loop): {ratio:.2f} (target <= 1.15); "
          f"reference memory saved by disabling the adapter: {saved:.0f} MiB")
    print(json.dumps({
        "plain_step_ms": base * 1000, "ray_zero0_step_ms": results[1][1] * 1000, "ray_zero2_step_ms": results[2][1] * 1000,
        "ratio_ray_zero0": ratio, "ratio_ray_zero2": results[2][1] / base, "target": 1.15,
        "peak_rss_mib_adapter_disabled_ref": memory["adapter-disabled"]["peak_rss_mib"],
        "peak_rss_mib_copy_ref": memory["copy"]["peak_rss_mib"],
        "peak_growth_mib_adapter_disabled_ref": memory["adapter-disabled"]["peak_growth_mib"],
        "peak_growth_mib_copy_ref": memory["copy"]["peak_growth_mib"], "memory_saved_mib": saved,
        "params_m": n_params / 1e6, "memory_probe_params_m": mem_params / 1e6,
    }))


if __name__ == "__main__":
    main()
