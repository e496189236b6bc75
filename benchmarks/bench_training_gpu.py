"""Tokens/s and MFU of packed SFT on one GPU: a ~0.5B Llama (random init from a config), trl SFTTrainer via the
same labpipe training stage. Not run in this project's CI (no GPU); run on an H200 node:

    python benchmarks/bench_training_gpu.py --steps 30 --peak-tflops 989

MFU = 6 * parameters * tokens/s / peak FLOP/s (dense bf16; attention FLOPs ignored, so MFU is a lower bound).
Figures go to benchmarks/RESULTS.md (section "Training").
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# ~0.5B parameters, Qwen2.5-0.5B-like shape on the Llama architecture.
LLAMA_05B = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    num_key_value_heads=8,
    max_position_embeddings=4096,
    tie_word_embeddings=True,
)


def build_model(out: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from labpipe.models.tiny import build_tokenizer

    tokenizer = build_tokenizer(1024)
    tokenizer.model_max_length = 4096
    config = LlamaConfig(
        vocab_size=32_000,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **LLAMA_05B,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def synthetic_set(path: Path, n: int = 4000) -> Path:
    rng = random.Random(0)
    words = "the model learns knowledge and skills from a taxonomy of examples written by people".split()
    with path.open("w") as f:
        for _ in range(n):
            q = " ".join(rng.choices(words, k=rng.randint(10, 200)))
            a = " ".join(rng.choices(words, k=rng.randint(20, 800)))
            f.write(
                json.dumps(
                    {
                        "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                        "metadata": {"phase": "skills"},
                    }
                )
                + "\n"
            )
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="H200 dense bf16")
    args = parser.parse_args()

    import torch
    from transformers import TrainerCallback

    from labpipe.training.config import TrainingConfig
    from labpipe.training.stage import run_training

    assert torch.cuda.is_available(), "this benchmark needs a GPU"

    class StepTimer(TrainerCallback):
        seconds, skipped = 0.0, 0

        def on_step_begin(self, a, state, control, **kw):
            torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            torch.cuda.synchronize()
            if state.global_step > 3:  # warm-up steps excluded
                StepTimer.seconds += time.perf_counter() - self.start

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = build_model(work / "base")
        data = synthetic_set(work / "skills.jsonl")
        params = sum(
            p.numel()
            for p in __import__("safetensors.torch").torch.load_file(str(base / "model.safetensors")).values()
        )
        summary = run_training(
            TrainingConfig(
                phase="skills",
                base_model=str(base),
                data=str(data),
                out=str(work / "out"),
                overrides={
                    "max_steps": args.steps,
                    "per_device_batch_size": 4,
                    "effective_batch_size": 4,
                    "max_length": 4096,
                    "bf16": "true",
                    "learning_rate": 1e-5,
                    "save_steps": 10_000,
                    "gradient_checkpointing": False,
                },
            ),
            callbacks=[StepTimer()],
        )
        tokens_per_step = summary["tokens"] / summary["steps"]
        tokens_per_s = tokens_per_step * (args.steps - 3) / StepTimer.seconds
        mfu = 6 * params * tokens_per_s / (args.peak_tflops * 1e12)
        print(
            json.dumps(
                {
                    "parameters": params,
                    "tokens_per_s": tokens_per_s,
                    "mfu": mfu,
                    "padding_efficiency": summary["padding_efficiency"],
                    "steps": summary["steps"],
                    "gpu": torch.cuda.get_device_name(),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
