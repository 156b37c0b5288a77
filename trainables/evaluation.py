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
) -> dict:
    """Return ``eval_ce`` (nats per answer token), ``eval_ppl``, ``eval_acc`` and MIUB fields.

    ``miub`` is the trial's ``metrics.miub`` section (``None`` or ``enabled: false`` skips it).
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
            if collector is not None:
                collector.set_mask(batch["attention_mask"])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            sums += _batch_sums(logits.float(), batch["labels"]).cpu()
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


def _batch_sums(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Teacher-forced sums over answer tokens: CE, token count, exact matches, examples."""
    pred_logits, target = logits[:, :-1], labels[:, 1:]
    mask = target != IGNORE_INDEX
    ce = torch.nn.functional.cross_entropy(
        pred_logits.reshape(-1, pred_logits.size(-1)), target.reshape(-1).clamp_min(0), reduction="none"
    ).view_as(target)
    correct = (pred_logits.argmax(-1) == target) | ~mask
    exact = correct.all(dim=1) & mask.any(dim=1)
    return torch.tensor(
        [(ce * mask).sum().item(), mask.sum().item(), exact.sum().item(), mask.any(dim=1).sum().item()],
        dtype=torch.float64,
    )


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
