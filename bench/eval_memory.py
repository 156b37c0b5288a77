"""Peak memory of one evaluation at a Llama-3-sized vocabulary: chunked (lorasweep) vs the
full-logits evaluation it replaced, each in a fresh process.

A tiny-width Llama (hidden 64, 2 layers, vocabulary 128,256, random init, LoRA r=8 on q/v,
MIUB on) evaluates ``batch`` sequences of 512 tokens whose last 16 are the answer. The
figure is the process's peak RSS (ru_maxrss) minus its RSS just before the evaluation.

    .venv/bin/python bench/eval_memory.py [--batches 8 64] [--old-batches 8]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

VOCAB, LENGTH, ANSWER = 128_256, 512, 16


def measure(mode: str, batch: int) -> dict:
    import psutil
    import peft
    import torch
    import transformers

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=LENGTH)
    model = peft.get_peft_model(transformers.LlamaForCausalLM(config),
                                peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    model.eval()
    ids = torch.randint(0, VOCAB, (batch, LENGTH))
    labels = torch.full_like(ids, -100)
    labels[:, -ANSWER:] = ids[:, -ANSWER:]
    data = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}]
    before = psutil.Process().memory_info().rss
    if mode == "chunked":
        from orchestrator.spec.sections import MiubSpec
        from trainables.evaluation import evaluate

        ce = evaluate(model, data, miub=MiubSpec(), chunk_tokens=128)["eval_ce"]
    else:  # the evaluation before chunking: float32 logits, sliced and reshaped
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=data[0]["attention_mask"]).logits.float()
            pred, target = logits[:, :-1], labels[:, 1:]
            mask = target != -100
            ce_all = torch.nn.functional.cross_entropy(pred.reshape(-1, VOCAB), target.reshape(-1).clamp_min(0), reduction="none")
            ce = float((ce_all.view_as(target) * mask).sum() / mask.sum())
            (pred.argmax(-1) == target).sum()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": mode, "batch": batch, "peak_mib": (peak - before) / 2**20, "eval_ce": ce}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--old-batches", type=int, nargs="+", default=[8])
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]))))
        return
    cases = [("chunked", b) for b in args.batches] + [("old", b) for b in args.old_batches]
    results = {}
    for mode, batch in cases:
        out = subprocess.run([sys.executable, __file__, "--one", mode, str(batch)], capture_output=True, text=True)
        if out.returncode:
            print(f"{mode} batch {batch}: failed (exit {out.returncode}) {out.stderr[-300:]}")
            continue
        results[mode, batch] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[mode, batch]
        print(f"{mode:8s} eval batch {batch:3d} x {LENGTH}: peak +{r['peak_mib']:8.1f} MiB  (eval_ce {r['eval_ce']:.4f})")
    lo, hi = min(args.batches), max(args.batches)
    if ("chunked", lo) in results and ("chunked", hi) in results:
        ratio = results["chunked", hi]["peak_mib"] / results["chunked", lo]["peak_mib"]
        print(f"ratio chunked batch {hi} / batch {lo}: {ratio:.2f}x (goal <= 1.5x)")
    for b in args.old_batches:
        if ("old", b) in results and ("chunked", b) in results:
            print(f"ratio old / chunked at batch {b}: {results['old', b]['peak_mib'] / results['chunked', b]['peak_mib']:.1f}x")


if __name__ == "__main__":
    main()
