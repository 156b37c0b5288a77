"""One evaluation pass: CE, PPL, exact-match accuracy and MIUB from the same forward.

Each worker sums over its shard of the eval set; the sums are all-reduced before any
division, so every figure is independent of the number of data-parallel workers.
"""
from __future__ import annotations

import math

import torch

from orchestrator.spec.sections import MiubSpec
from trainables.data import IGNORE_INDEX
from trainables.distributed import all_reduce_sum


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: list[dict[str, torch.Tensor]],
    *,
    miub: MiubSpec | None = None,
    device: torch.device | str = "cpu",
    chunk_tokens: int = 128,
) -> dict:
    """Return ``eval_ce`` (nats per answer token), ``eval_ppl``, ``eval_acc`` and MIUB fields.

    ``miub`` is the trial's ``metrics.miub`` section (``None`` or ``enabled: false`` skips it).
    Full-vocabulary logits exist for at most ``chunk_tokens`` answer tokens at a time
    (:func:`_batch_sums`), so memory does not grow with vocabulary x batch x length.
    """
    was_training = model.training
    model.eval()
    collector = _collector(model, miub, batches)
    sums = torch.zeros(4, dtype=torch.float64)  # ce_sum, answer_tokens, exact, examples
    try:
        if collector is not None:
            collector.__enter__()
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            sums += _batch_sums(model, batch, collector, chunk_tokens)
    finally:
        if collector is not None:
            collector.__exit__(None, None, None)
        model.train(was_training)
    sums = all_reduce_sum(sums)
    ce = (sums[0] / sums[1]).item()
    out = {"eval_ce": ce, "eval_ppl": math.exp(min(ce, 700.0)), "eval_acc": (sums[2] / sums[3]).item()}
    if collector is not None:
        from trainables.miub.fields import miub_fields

        out.update(miub_fields(collector, all_reduce_sum(collector.stats_tensor())))
    return out


def _batch_sums(model, batch: dict[str, torch.Tensor], collector, chunk_tokens: int) -> torch.Tensor:
    """Teacher-forced sums over answer tokens: CE, token count, exact matches, examples.

    Where the model is a decoder followed by a plain linear LM head, the decoder runs once
    on the whole batch (MIUB hooks included) and the head is applied only to the hidden
    states that predict answer tokens, ``chunk_tokens`` of them at a time. Any other model
    runs whole forwards on slices of the batch small enough to keep ``chunk_tokens`` rows of
    logits. Logits stay in the model's dtype until the float32 log-softmax of one chunk.
    """
    input_ids, attention_mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    parts = _decoder_and_head(model)
    if parts is None:
        return _sliced_forward_sums(model, batch, collector, chunk_tokens)
    decoder, head = parts
    if collector is not None:
        collector.set_mask(attention_mask)
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    rows = mask.nonzero()[:, 0]
    states, wanted = hidden[:, :-1][mask], target[mask]  # [answer tokens, H] and their next tokens
    return _answer_sums(lambda h: head(h), states, wanted, rows, labels.size(0), chunk_tokens)


def _answer_sums(head, states, wanted, rows, examples: int, chunk_tokens: int) -> torch.Tensor:
    ce_sum, wrong = 0.0, torch.zeros(examples, dtype=torch.long, device=states.device)
    for start in range(0, states.size(0), chunk_tokens):
        logits = head(states[start : start + chunk_tokens])
        target = wanted[start : start + chunk_tokens]
        ce = torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum")
        ce_sum += ce.item()
        miss = logits.argmax(-1) != target
        wrong += torch.bincount(rows[start : start + chunk_tokens][miss], minlength=examples)
    answered = torch.bincount(rows, minlength=examples) > 0
    exact = (wrong == 0) & answered
    return torch.tensor([ce_sum, wanted.numel(), exact.sum().item(), answered.sum().item()], dtype=torch.float64)


def _sliced_forward_sums(model, batch, collector, chunk_tokens: int) -> torch.Tensor:
    """Whole forwards on slices of at most ``chunk_tokens`` tokens (at least one sequence)."""
    n, length = batch["input_ids"].shape
    per_slice = max(1, chunk_tokens // max(length, 1))
    sums = torch.zeros(4, dtype=torch.float64)
    for start in range(0, n, per_slice):
        part = {k: v[start : start + per_slice] for k, v in batch.items()}
        if collector is not None:
            collector.set_mask(part["attention_mask"])
        logits = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits
        target = part["labels"][:, 1:]
        mask = target != IGNORE_INDEX
        rows = mask.nonzero()[:, 0]
        states = logits[:, :-1][mask]  # already logits: the "head" is the identity
        sums += _answer_sums(lambda h: h, states, target[mask], rows, target.size(0), chunk_tokens)
    return sums


def _decoder_and_head(model):
    """``(decoder, lm_head)`` where logits are exactly ``lm_head(decoder(...).last_hidden_state)``,
    else None: a head LoRA adapts (MIUB hooks it per forward), or a model that scales or caps
    its logits (Gemma's softcapping, Cohere's logit_scale)."""
    lm = model.module if isinstance(getattr(model, "module", None), torch.nn.Module) else model
    lm = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    get_decoder, get_head = getattr(lm, "get_decoder", None), getattr(lm, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None
    decoder, head = get_decoder(), get_head()
    config = getattr(lm, "config", None)
    if decoder is None or decoder is lm or type(head) is not torch.nn.Linear:
        return None
    if any(getattr(config, name, None) not in (None, 1.0) for name in ("final_logit_softcapping", "logit_scale")):
        return None
    return decoder, head


def _collector(model, miub: MiubSpec | None, batches):
    if miub is None or not miub.enabled:
        return None
    import importlib

    from trainables.miub import MiubCollector

    for module in miub.imports:  # modules that register more estimators
        importlib.import_module(module)

    return MiubCollector(
        model,
        estimator=miub.estimators,
        top_k=miub.top_k,
        temperature=miub.temperature,
        noise=miub.noise,
        standard_error=True,
        max_tokens=miub.max_tokens,
        expected_tokens=sum(int(batch["attention_mask"].sum()) for batch in batches),
    )
