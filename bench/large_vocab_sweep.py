"""A 1-trial sweep through the CLI on a model with a Llama-3-sized vocabulary (128,256),
512-token examples and evaluation batch 64: the case that ran out of memory before chunked
evaluation, micro-batches and dynamic padding.

The model is a tiny-width Llama (hidden 64, 2 layers, random init) saved as a local Hugging
Face directory with a word-level tokenizer of 128,256 tokens; the data is a local JSONL file
(prompt: 500 words, answer: 4 words). Nothing is downloaded. Prints the run's exit status,
its wall time and the trial's last row.

    .venv/bin/python bench/large_vocab_sweep.py [--steps 4]
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

VOCAB, PROMPT_WORDS, ANSWER_WORDS = 128_256, 500, 4


def build_model_dir(directory: Path) -> None:
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<s>", "</s>", "<unk>"]
    words = special + [f"w{i}" for i in range(VOCAB - len(special))]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                                      pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    transformers.LlamaForCausalLM(config).save_pretrained(directory)


def build_data(path: Path, rows: int) -> None:
    rng = random.Random(0)
    with path.open("w") as f:
        for _ in range(rows):
            prompt = " ".join(f"w{rng.randrange(VOCAB - 4)}" for _ in range(PROMPT_WORDS))
            answer = " ".join(f"w{rng.randrange(1000)}" for _ in range(ANSWER_WORDS))
            f.write(json.dumps({"prompt": prompt, "answer": answer}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    from orchestrator.cli import main as cli

    with tempfile.TemporaryDirectory(prefix="lorasweep-bigvocab-") as tmp:
        tmp = Path(tmp)
        build_model_dir(tmp / "model")
        build_data(tmp / "data.jsonl", 200)
        spec = {
            "name": "bigvocab",
            "model": {"name": str(tmp / "model"), "dtype": "float32"},
            "data": {"task": f"file:{tmp / 'data.jsonl'}", "train_size": 120, "eval_size": 64, "truncation": "left"},
            "lora": {"rank": 8, "alpha": 16},
            "train": {"steps": args.steps, "eval_every": args.steps, "batch_size": 8, "micro_batch_size": 2,
                      "seq_len": 512, "eval_batch_size": 64, "lr": 1e-3},
            "resources": {"num_workers": 1, "max_concurrent_trials": 1, "gpu_memory_gb": 24},
            "results": {"path": str(tmp / "results")},
        }
        (tmp / "spec.yaml").write_text(json.dumps(spec))
        cli(["run", str(tmp / "spec.yaml"), "--dry-run"])
        started = time.perf_counter()
        status = cli(["run", str(tmp / "spec.yaml"), "--num-cpus", "2"])
        print(f"exit status {status} after {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
