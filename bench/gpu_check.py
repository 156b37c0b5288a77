"""GPU check: two LoRA trials on a ~1B-parameter zoo-style Llama, bf16, ZeRO 2, MIUB on.

Builds a Llama of the zoo's shape scaled to about 1B parameters (random init: throughput does
not depend on the weights; nothing is downloaded), saves it as a local model directory, and
runs two trials (rank 8 and rank 64) through the trainable itself (setup -> fit -> evaluate,
the code every sweep trial runs), one GPU. Prints per trial:

- training tokens/s (non-padding tokens of the rows / training wall time);
- MFU, with the LoRA convention: FLOPs per token = 4 N_frozen (forward 2N, backward through
  activations 2N; no weight gradients for frozen weights) + 6 N_adapter + attention
  12 x layers x seq_len x hidden, against the GPU's dense bf16 peak (--peak-tflops, default
  989 for an H100/H200 SXM);
- peak GPU memory (torch.cuda.max_memory_allocated);
- MIUB's share of evaluation time (one evaluation pass with and without MIUB, same batches).

On a machine without CUDA it says so and exits 0. Under 5 minutes on one H100/H200.

    python bench/gpu_check.py [--steps 30] [--seq-len 512] [--batch 16]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time


def build_model_dir(directory: str, hidden: int, layers: int, heads: int) -> int:
    import torch
    import transformers

    from trainables.tokenizer import VOCAB_SIZE, build_char_tokenizer

    config = transformers.LlamaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=hidden, intermediate_size=int(hidden * 8 / 3) // 64 * 64,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=4096, tie_word_embeddings=False,
    )
    with torch.device("cuda"):
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory, safe_serialization=True)
    build_char_tokenizer().save_pretrained(directory)
    return sum(p.numel() for p in model.parameters())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=18)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: needs a CUDA GPU; none here (torch", torch.__version__, "CUDA", torch.version.cuda, ")")
        return 0

    from orchestrator.spec import parse_spec
    from orchestrator.spec.trial_config import TrialConfig
    from orchestrator.spec.trials import expand_grid
    from trainables.evaluation import evaluate
    from trainables.lora import fit, setup
    from trainables.session import LocalSession

    with tempfile.TemporaryDirectory() as directory:
        params = build_model_dir(directory, args.hidden, args.layers, args.hidden // 128)
        print(f"model: Llama {args.layers} layers x {args.hidden} hidden, {params / 1e9:.2f}B parameters, bf16, "
              f"{torch.cuda.get_device_name(0)}")
        spec = parse_spec({
            "name": "gpu-check", "model": {"name": directory, "dtype": "bfloat16"},
            "data": {"task": "synthetic/kv-recall", "train_size": 4096, "eval_size": 256, "complexity": 64},
            "lora": {"rank": {"grid": [8, 64]}, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
            "train": {"steps": args.steps, "batch_size": args.batch, "seq_len": args.seq_len,
                      "eval_every": args.steps, "lr": 1e-4},
            "resources": {"gpus_per_worker": 1}, "deepspeed": {"zero_stage": 2},
        })
        for config in expand_grid(spec):
            torch.cuda.reset_peak_memory_stats()
            trial = setup(TrialConfig.model_validate(config))
            session = LocalSession()
            torch.cuda.synchronize()
            start = time.perf_counter()
            fit(trial, session)
            torch.cuda.synchronize()
            wall = time.perf_counter() - start
            last = session.reports[-1]
            model = trial.engine.module
            times = {}
            for name, miub in (("with", trial.config.metrics.miub), ("without", None)):
                torch.cuda.synchronize()
                t = time.perf_counter()
                evaluate(model, trial.eval_batches, miub=miub, device=trial.device)
                torch.cuda.synchronize()
                times[name] = time.perf_counter() - t
            frozen = last["model_params"]
            adapter = last["trainable_params"]
            flops_per_token = 4 * frozen + 6 * adapter + 12 * args.layers * args.seq_len * args.hidden
            tokens_per_s = last["tokens_seen"] / last["wall_time_s"]
            mfu = tokens_per_s * flops_per_token / (args.peak_tflops * 1e12)
            print(f"rank {config['lora']['rank']:>3}: {tokens_per_s:,.0f} tokens/s, MFU {mfu:.1%} "
                  f"(LoRA FLOPs: 4N + 6N_adapter + attention; peak {args.peak_tflops:g} TFLOP/s), peak memory "
                  f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, precision {last['precision']}, "
                  f"optimizer {last['optimizer']}, MIUB {times['with'] / times['without']:.2f}x eval time "
                  f"({1 - times['without'] / times['with']:.0%} of it), eval_ce {last['eval_ce']:.3f}, "
                  f"wall {wall:.0f} s")
            del trial, model
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
