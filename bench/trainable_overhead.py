"""Tokens/s of the trainable's training step (DeepSpeed engine + PEFT) vs a bare PyTorch loop.

Both loops train the same PEFT model (same init, same batches, same clipping) in the same
process; blocks of steps are interleaved so machine noise hits both alike. Prints the
median tokens/s of each and their ratio (goal: ours >= 0.9x bare).

    .venv/bin/python bench/trainable_overhead.py [--model zoo/llama-m] [--steps 20] [--rounds 7]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="zoo/llama-m")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--zero-stage", type=int, default=0)
    args = parser.parse_args()

    import deepspeed
    import peft

    from trainables.data import encode, make_splits
    from trainables.deepspeed_config import build_config
    from trainables.distributed import ensure_process_group
    from trainables.lora import global_batch, train_step
    from trainables.models import build_zoo_model, count_params

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    ensure_process_group()
    base, tokenizer = build_zoo_model(args.model)  # random init: speed does not depend on weights
    total, non_embedding = count_params(base)
    lora = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    torch.manual_seed(0)
    ours_model = peft.get_peft_model(copy.deepcopy(base), lora)
    bare_model = copy.deepcopy(ours_model)
    train, _ = make_splits("synthetic/kv-recall", 2048, 8, 16, 0)
    data = encode(train, tokenizer, args.seq_len)
    n = data["input_ids"].size(0)

    engine, *_ = deepspeed.initialize(
        model=ours_model,
        model_parameters=[p for p in ours_model.parameters() if p.requires_grad],
        config=build_config(micro_batch_size=args.batch, lr=1e-3, zero_stage=args.zero_stage, grad_clip=1.0),
    )
    bare_params = [p for p in bare_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(bare_params, lr=1e-3, weight_decay=0.0)
    bare_model.train()

    def ours_block(start: int) -> float:
        t = time.perf_counter()
        for s in range(start, start + args.steps):
            train_step(engine, global_batch(data, s, args.batch, n, 0), 0, 1, "cpu")
        return time.perf_counter() - t

    def bare_block(start: int) -> float:
        t = time.perf_counter()
        for s in range(start, start + args.steps):
            batch = global_batch(data, s, args.batch, n, 0)
            loss = bare_model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(bare_params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss.item()
        return time.perf_counter() - t

    ours_block(0), bare_block(0)  # warm-up
    tokens_per_block = args.batch * args.seq_len * args.steps
    ours, bare = [], []
    for r in range(1, args.rounds + 1):
        first, second = (ours_block, bare_block) if r % 2 else (bare_block, ours_block)
        a, b = first(r * args.steps), second(r * args.steps)
        (ours if first is ours_block else bare).append(tokens_per_block / a)
        (bare if first is ours_block else ours).append(tokens_per_block / b)

    ours_tps, bare_tps = statistics.median(ours), statistics.median(bare)
    print(f"model {args.model}: {total:,} params ({non_embedding:,} non-embedding), LoRA r=8 on q_proj,v_proj")
    print(f"batch {args.batch} x seq {args.seq_len}, {args.rounds} interleaved rounds of {args.steps} steps, ZeRO {args.zero_stage}")
    print(f"bare PyTorch AdamW : {bare_tps:10,.0f} tokens/s (median; range {min(bare):,.0f}-{max(bare):,.0f})")
    print(f"lorasweep trainable: {ours_tps:10,.0f} tokens/s (median; range {min(ours):,.0f}-{max(ours):,.0f})")
    print(f"ratio trainable/bare: {ours_tps / bare_tps:.3f}x (goal >= 0.9x)")


if __name__ == "__main__":
    main()
