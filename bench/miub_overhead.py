"""Evaluation wall time with the MIUB collector on vs off (goal: ratio <= 1.10 at one thread).

A ~1M-parameter Llama with LoRA r=8 on q_proj, v_proj (non-zero lora_B), 32 sequences x 128
tokens in batches of 8, under torch.no_grad. On and off runs are interleaved in the same
process so that drift in machine load hits both alike; medians are reported.

    .venv/bin/python bench/miub_overhead.py [--repeats 9] [--hidden 128] [--threads 1]
                                            [--estimator jsd_topk ...]

The collector's cost per token is O(d) for the JSD estimators (a top-k over the d outputs of
each adapted module) while the model's is O(d^2) per layer, so the ratio falls as --hidden
grows; club_gauss costs O(d^2) per token and module, like the module itself.
"""

from __future__ import annotations

import argparse
import statistics
import time

import peft
import torch
import transformers

from trainables.miub import MiubCollector


def build_model(hidden: int = 128) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
    )
    model = peft.get_peft_model(
        transformers.LlamaForCausalLM(config),
        peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
    )
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    return model.eval()


def eval_batches(sequences: int = 32, seq_len: int = 128, batch_size: int = 8) -> list[tuple]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 64, (sequences, seq_len), generator=gen)
    mask = torch.ones_like(ids)
    mask[1::2, seq_len * 3 // 4 :] = 0  # some right padding, as in a real eval set
    return [(ids[i : i + batch_size], mask[i : i + batch_size]) for i in range(0, sequences, batch_size)]


@torch.no_grad()
def run_eval(model, batches, with_miub: bool, estimators=("jsd_topk",)) -> tuple[float, float]:
    """One evaluation pass (forward + CE): its wall time and its process CPU time, in seconds.

    CPU time is less sensitive than wall time to other processes taking the core."""
    start, cpu_start = time.perf_counter(), time.process_time()
    estimator = estimators[0] if len(estimators) == 1 else list(estimators)
    collector = MiubCollector(model, estimator=estimator) if with_miub else None
    if collector is not None:
        collector.__enter__()
    total = torch.zeros((), dtype=torch.float64)
    for ids, mask in batches:
        if collector is not None:
            collector.set_mask(mask)
        logits = model(input_ids=ids, attention_mask=mask).logits
        ce = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
        total += (ce * mask[:, 1:].flatten()).sum()
    if collector is not None:
        collector.__exit__(None, None, None)
        collector.result()
    total.item()
    return time.perf_counter() - start, time.process_time() - cpu_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed passes per setting (>= 7)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden size (128 gives ~1M parameters)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--estimator", nargs="+", default=["jsd_topk"], help="estimators measured in the pass")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, batches = build_model(args.hidden), eval_batches()
    params = sum(p.numel() for p in model.parameters())
    tokens = sum(int(mask.sum()) for _, mask in batches)
    for with_miub in (False, True):  # warm-up
        run_eval(model, batches, with_miub, args.estimator)
    times = {False: [], True: []}
    for i in range(args.repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        for with_miub in order:
            times[with_miub].append(run_eval(model, batches, with_miub, args.estimator))
    off, on = (statistics.median(wall for wall, _ in times[key]) for key in (False, True))
    cpu_off, cpu_on = (statistics.median(cpu for _, cpu in times[key]) for key in (False, True))
    print(f"model: {params / 1e6:.2f}M parameters, eval set: {tokens} real tokens, threads: {torch.get_num_threads()}")
    print(f"estimators: {', '.join(args.estimator)}; repeats: {args.repeats} each, interleaved")
    print(f"median eval time, MIUB off: {off * 1e3:.1f} ms wall, {cpu_off * 1e3:.1f} ms CPU")
    print(f"median eval time, MIUB on:  {on * 1e3:.1f} ms wall, {cpu_on * 1e3:.1f} ms CPU")
    paired = statistics.median(a[0] / b[0] for a, b in zip(times[True], times[False]))
    print(f"ratio on/off: {on / off:.3f} wall, {cpu_on / cpu_off:.3f} CPU (goal <= 1.10)")
    print(f"median of back-to-back pair ratios: {paired:.3f} (less sensitive to drifting machine load)")

if __name__ == "__main__":
    main()
