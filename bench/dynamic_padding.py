"""Real (non-padding) tokens per second of training on synthetic/kv-recall at seq_len 64:
every batch padded to seq_len (the loop before dynamic padding) vs the trainable's step,
which pads each micro-batch to its longest example.

Both train copies of the same PEFT model (same init, same batches) through their own
DeepSpeed engine in one process; blocks of steps are interleaved. Prints medians and the ratio.

    .venv/bin/python bench/dynamic_padding.py [--model zoo/llama-m] [--steps 20] [--rounds 5]
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
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--complexity", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import deepspeed
    import peft

    from trainables.batching import global_batch
    from trainables.data import encode, make_splits
    from trainables.deepspeed_config import build_config
    from trainables.distributed import ensure_process_group
    from trainables.lora import train_step
    from trainables.models import build_zoo_model

    torch.set_num_threads(1)
    ensure_process_group()
    base, tokenizer = build_zoo_model(args.model)
    torch.manual_seed(0)
    lora = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = peft.get_peft_model(base, lora)
    train, _ = make_splits("synthetic/kv-recall", 2048, 8, args.complexity, 0)
    data = encode(train, tokenizer, args.seq_len)
    fill_value = {"input_ids": tokenizer.pad_token_id, "attention_mask": 0, "labels": -100}
    width = args.seq_len - data["input_ids"].size(1)
    padded = {k: torch.nn.functional.pad(v, (0, width), value=fill_value[k]) for k, v in data.items()}
    n = data["input_ids"].size(0)

    def engine_for(m):
        config = build_config(micro_batch_size=args.batch, lr=1e-3, zero_stage=0, grad_clip=1.0)
        return deepspeed.initialize(model=m, model_parameters=[p for p in m.parameters() if p.requires_grad], config=config)[0]

    ours, old = engine_for(copy.deepcopy(model)), engine_for(copy.deepcopy(model))

    def ours_block(start):
        real, t = 0, time.perf_counter()
        for s in range(start, start + args.steps):
            batch = global_batch(data, s, args.batch, n, 0)
            real += int(batch["attention_mask"].sum())
            train_step(ours, batch, 0, 1, "cpu")
        return real / (time.perf_counter() - t)

    def old_block(start):  # the step before dynamic padding: one forward on the seq_len-padded batch
        real, t = 0, time.perf_counter()
        for s in range(start, start + args.steps):
            batch = global_batch(padded, s, args.batch, n, 0)
            real += int(batch["attention_mask"].sum())
            loss = old(**batch).loss
            old.backward(loss)
            old.step()
            loss.item()
        return real / (time.perf_counter() - t)

    ours_block(0), old_block(0)  # warm-up
    a, b = [], []
    for r in range(1, args.rounds + 1):
        if r % 2:
            a.append(ours_block(r * args.steps))
            b.append(old_block(r * args.steps))
        else:
            b.append(old_block(r * args.steps))
            a.append(ours_block(r * args.steps))
    fill = float(data["attention_mask"].sum()) / (n * args.seq_len)
    print(f"{args.model}, kv-recall complexity {args.complexity}, batch {args.batch}, seq_len {args.seq_len}: "
          f"{fill:.0%} of a seq_len-padded batch is real tokens")
    print(f"padded to seq_len : {statistics.median(b):9,.0f} real tokens/s (range {min(b):,.0f}-{max(b):,.0f})")
    print(f"dynamic padding   : {statistics.median(a):9,.0f} real tokens/s (range {min(a):,.0f}-{max(a):,.0f})")
    print(f"ratio dynamic/padded: {statistics.median(a) / statistics.median(b):.2f}x (goal >= 2x)")


if __name__ == "__main__":
    main()
