"""Tasks and data: synthetic families (seeded, disjoint, complexity that really bites), the
pretraining corpus kept apart from them, and real data from local files through `datasets`."""
from __future__ import annotations

import itertools
import json
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # real-data tests read local files only
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest

from orchestrator.spec import DataSpec
from trainables.data import encode, make_splits, splits_for, task_names
from trainables.pretrain import corpus_lines
from trainables.tasks import MARKOV_HORIZON, get_task, markov_successors
from trainables.tokenizer import build_char_tokenizer

FAMILIES = {  # task -> (an easy and a hard complexity)
    "synthetic/kv-recall": (1, 8),
    "synthetic/modular-arith": (13, 97),
    "synthetic/markov": (3, 20),
}


def test_the_three_families_are_registered():
    assert set(FAMILIES) <= set(task_names())


@pytest.mark.parametrize("task", FAMILIES)
def test_splits_are_deterministic_sized_and_disjoint(task):
    complexity = FAMILIES[task][1]
    train, evaluation = make_splits(task, 300, 50, complexity, seed=0)
    assert (len(train), len(evaluation)) == (300, 50)
    assert (train, evaluation) == make_splits(task, 300, 50, complexity, seed=0)
    assert make_splits(task, 300, 50, complexity, seed=1)[1] != evaluation
    train_prompts = {e.prompt for e in train}
    assert len(train_prompts) == 300
    assert not train_prompts & {e.prompt for e in evaluation}
    bigger, same_eval = make_splits(task, 600, 50, complexity, seed=0)
    assert len(bigger) == 600 and same_eval == evaluation  # train_size never changes the eval set


@pytest.mark.parametrize("task", FAMILIES)
def test_bad_complexity_names_task_and_range(task):
    lo, hi = get_task(task).complexity_range
    for bad in (lo - 1, hi + 1, 2.5):
        with pytest.raises(ValueError, match=rf"{task}: complexity .* not allowed; use an integer in {lo}\.\.{hi}"):
            make_splits(task, 10, 10, bad)


def test_unknown_task_lists_registered_ones():
    with pytest.raises(ValueError, match="unknown task 'synthetic/nope'; registered: .*synthetic/markov"):
        make_splits("synthetic/nope", 10, 10, 2)


def test_too_few_distinct_prompts_is_an_error():
    with pytest.raises(ValueError, match="too few distinct prompts"):
        make_splits("synthetic/modular-arith", 30, 10, 5)  # only 25 prompts exist at modulus 5


def test_answers_are_correct():
    for e in make_splits("synthetic/kv-recall", 50, 10, 6)[0]:
        context, key = re.fullmatch(r"(.*)\|(\w)>", e.prompt).groups()
        assert dict(p.split(":") for p in context.split())[key] == e.answer
    for e in make_splits("synthetic/modular-arith", 50, 10, 97)[0]:
        a, b, m = map(int, re.fullmatch(r"\((\d+)\+(\d+)\)%(\d+)>", e.prompt).groups())
        assert m == 97 and int(e.answer) == (a + b) % m
    succ = markov_successors(7)
    for e in make_splits("synthetic/markov", 50, 10, 7)[0]:
        path = list(e.prompt[-3:-1])
        for _ in range(MARKOV_HORIZON):
            path.append(succ[path[-2], path[-1]])
        assert e.answer == "".join(path[2:]) and set(e.prompt[:-1]) <= set("abcdefg")


def test_markov_walks_mostly_follow_the_dominant_transition():
    succ = markov_successors(20)
    walks = [e.prompt[:-1] for e in make_splits("synthetic/markov", 400, 10, 20)[0]]
    steps = [w[i : i + 3] for w in walks for i in range(len(w) - 2)]
    followed = sum(succ[a, b] == c for a, b, c in steps) / len(steps)
    assert 0.7 < followed < 0.8


@pytest.mark.parametrize("task", FAMILIES)
@pytest.mark.slow
def test_higher_complexity_gives_lower_accuracy_after_the_same_fine_tune(task, trial_config, one_thread, monkeypatch):
    """The same zoo model, LoRA budget and data sizes; only complexity changes."""
    from trainables.lora import run_trial
    from trainables.session import LocalSession

    monkeypatch.delenv("LORASWEEP_PRETRAIN_STEPS", raising=False)
    accuracy = {}
    for complexity in FAMILIES[task]:
        config = json.loads(json.dumps(trial_config))
        # modulus 13 has 169 distinct prompts, so that family gets a smaller (still equal) split
        train_size, eval_size = (112, 48) if task == "synthetic/modular-arith" else (192, 64)
        config["data"].update(task=task, complexity=complexity, train_size=train_size, eval_size=eval_size)
        config["train"].update(steps=300, eval_every=300, seq_len=48)
        config["metrics"]["miub"]["enabled"] = False
        session = LocalSession()
        run_trial(config, session)
        accuracy[complexity] = session.reports[-1]["eval_acc"]
    easy, hard = FAMILIES[task]
    print(task, accuracy)
    assert accuracy[hard] < accuracy[easy] - 0.1, accuracy


def test_corpus_never_contains_a_fine_tuning_prompt():
    sample = "\n".join(itertools.islice(corpus_lines(0), 30_000))
    assert ">" not in sample  # every fine-tuning prompt ends with ">"
    for task, complexities in FAMILIES.items():
        for complexity in complexities:
            # Small complexities have few distinct prompts (modulus 13: 169); take what exists.
            try:
                train, evaluation = make_splits(task, 400, 100, complexity, seed=0)
            except ValueError:
                train, evaluation = make_splits(task, 60, 20, complexity, seed=0)
            for e in train + evaluation:
                assert e.prompt not in sample and e.prompt[:-1] + e.answer not in sample


def test_corpus_mixes_every_family():
    lines = list(itertools.islice(corpus_lines(0), 2000))
    patterns = {
        "markov text": r"[a-z ]+", "lookup": r"([a-z]=\d\d;)*[a-z]=\d\d\?[a-z]=\d\d", "arithmetic": r"\d+[-+%]\d+=\d+",
        "walk": r"~[a-z]+", "copy": r"([a-z0-9]+)\|\1",
    }
    for family, pattern in patterns.items():
        assert any(re.fullmatch(pattern, line) for line in lines), family
    assert all(any(re.fullmatch(p, line) for p in patterns.values()) for line in lines)
    assert list(itertools.islice(corpus_lines(0, "heldout"), 50)) != lines[:50]


def test_encode_labels_only_answer_tokens():
    tokenizer = build_char_tokenizer()
    train, _ = make_splits("synthetic/kv-recall", 4, 2, 2)
    batch = encode(train, tokenizer, 24)
    for row, e in zip(range(4), train):
        labelled = [t for t in batch["labels"][row].tolist() if t != -100]
        assert labelled == tokenizer(e.answer, add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="train.seq_len 8 is too short"):
        encode(train, tokenizer, 8)


# Real data: local files written here, read through `datasets`.

ROWS = [{"question": f"q{i}: {i}+{i}=", "label": str(2 * i), "text": f"the number after {i} is {i + 1}."} for i in range(60)]


def _write(path, rows):
    import pandas as pd

    frame = pd.DataFrame(rows)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_local_file_prompt_answer(tmp_path, suffix):
    path = _write(tmp_path / f"data{suffix}", ROWS)
    train, evaluation = make_splits(f"file:{path}", 40, 10, 1, 0, prompt_field="question", answer_field="label")
    assert (len(train), len(evaluation)) == (40, 10)
    assert not {e.prompt for e in train} & {e.prompt for e in evaluation}
    by_prompt = {r["question"]: r["label"] for r in ROWS}
    assert all(by_prompt[e.prompt] == e.answer for e in train + evaluation)
    again = make_splits(f"file:{path}", 40, 10, 1, 0, prompt_field="question", answer_field="label")
    assert again == (train, evaluation)


def test_text_field_becomes_last_word_cloze(tmp_path):
    path = _write(tmp_path / "text.jsonl", ROWS)
    data = DataSpec(task=f"file:{path}", train_size=20, eval_size=5, complexity=4, seed=3, text_field="text")
    train, evaluation = splits_for(data)
    for e in train + evaluation:
        i = int(re.fullmatch(r"the number after (\d+) is ", e.prompt).group(1))
        assert e.answer == str(i + 1)  # trailing "." dropped


def test_separate_eval_file_and_too_small_data(tmp_path):
    train_path = _write(tmp_path / "train.csv", ROWS[:40])
    eval_path = _write(tmp_path / "eval.parquet", ROWS[40:])
    train, evaluation = make_splits(f"file:{train_path}", 40, 20, 1, prompt_field="question", answer_field="label",
                                    eval_split=str(eval_path))
    assert {e.prompt for e in evaluation} == {r["question"] for r in ROWS[40:]}
    with pytest.raises(ValueError, match=r"only 40 usable examples .* for train \(41 requested\); lower data.train_size"):
        make_splits(f"file:{train_path}", 41, 20, 1, prompt_field="question", answer_field="label",
                    eval_split=str(eval_path))


def test_missing_file_and_missing_field_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"file .*nothere.jsonl not found"):
        make_splits(f"file:{tmp_path / 'nothere.jsonl'}", 10, 5, 1)
    path = _write(tmp_path / "data.jsonl", ROWS)
    with pytest.raises(ValueError, match=r"data.jsonl: field 'answer' .* not found; fields present: question, label, text"):
        make_splits(f"file:{path}", 10, 5, 1, prompt_field="question")
    with pytest.raises(ValueError, match="unsupported format '.txt'"):
        make_splits(f"file:{tmp_path / 'data.txt'}", 10, 5, 1)


def test_hf_name_loads_a_local_dataset_directory_with_splits(tmp_path):
    _write(tmp_path / "train.jsonl", ROWS[:45])
    _write(tmp_path / "test.jsonl", ROWS[45:])
    train, evaluation = make_splits(f"hf:{tmp_path}", 30, 15, 1, prompt_field="question", answer_field="label",
                                    split="train", eval_split="test")
    assert {e.prompt for e in evaluation} == {r["question"] for r in ROWS[45:]}
    assert {e.prompt for e in train} <= {r["question"] for r in ROWS[:45]}
    with pytest.raises(ValueError, match=r"dataset .* split 'validation': could not be loaded"):
        make_splits(f"hf:{tmp_path}", 30, 15, 1, split="validation")


def _chat_tokenizer(tmp_path):
    """A word-level tokenizer with a chat template, saved and reloaded like a hub model's."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "<user>", "<bot>"] + [f"w{i}" for i in range(50)]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.chat_template = (
        "<s>{% for m in messages %}{% if m['role'] == 'user' %} <user> {{ m['content'] }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %} <bot> {% endif %}"
    )
    tok.save_pretrained(tmp_path)
    return AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)


def test_chat_template_wraps_the_prompt_and_answers_stay_the_labels(tmp_path):
    from trainables.tasks import Example

    tok = _chat_tokenizer(tmp_path)
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]
    data = encode([Example("w1 w2", "w3")], tok, 16, chat_template=True)
    assert data["input_ids"][0].tolist() == ids("<s> <user> w1 w2 <bot> w3")
    assert data["labels"][0].tolist() == [-100] * 5 + ids("w3")
    with pytest.raises(ValueError, match="has no chat template; set data.chat_template: false"):
        encode([Example("a", "b")], build_char_tokenizer(), 16, chat_template=True)


def test_truncation_left_cuts_the_prompt_and_keeps_bos_and_answer():
    from trainables.tasks import Example

    tok = build_char_tokenizer()
    data = encode([Example("abcdefghij", "XY"), Example("ab", "Z")], tok, 6, truncation="left")
    assert "".join(tok.convert_ids_to_tokens(data["input_ids"][0])) == "<s>hijXY" and data["input_ids"].size(1) == 6
    assert (data["labels"][0] != -100).sum() == 2  # the whole answer is still scored
    with pytest.raises(ValueError, match=r"eval example 0 \(prompt 'abcdefghij'\) needs 13 tokens; raise train.seq_len or set data.truncation: left"):
        encode([Example("abcdefghij", "XY")], tok, 6, split="eval")
    with pytest.raises(ValueError, match=r"cannot hold the answer of train example 1 \(prompt 'ab'\): its 6 answer tokens"):
        encode([Example("a", "b"), Example("ab", "UVWXYZ")], tok, 6, truncation="left")


def test_batching_knobs_are_checked_in_the_spec():
    from orchestrator.errors import UsageError
    from orchestrator.spec import parse_spec

    for fields, message in [
        ({"train": {"batch_size": 16, "micro_batch_size": 5}}, "train.micro_batch_size: 5 does not divide train.batch_size"),
        ({"train": {"batch_size": 16, "micro_batch_size": 16}, "resources": {"num_workers": 2}},
         "train.micro_batch_size: 16 does not divide the per-worker batch 8"),
        ({"train": {"eval_batch_size": 0}}, "train.eval_batch_size"),
        ({"data": {"truncation": "right"}}, "data.truncation"),
        ({"resources": {"gpu_memory_gb": -1}}, "resources.gpu_memory_gb"),
    ]:
        with pytest.raises(UsageError) as info:
            parse_spec({"name": "k", "train": {"steps": 10, "eval_every": 10}, **{k: {**({"steps": 10, "eval_every": 10} if k == "train" else {}), **v} for k, v in fields.items()}})
        assert any(message in line for line in info.value.problems), info.value.problems
