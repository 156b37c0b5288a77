"""MiubCollector: forward hooks that measure MIUB for every LoRA layer during evaluation.

Per-token estimators (``TokenMeanEstimator``: `jsd_topk`, `jsd_full`) are not computed module
by module: the hooks keep each module's real-token rows of (h, g) for the current batch, and
one call per batch and module width computes every module at once. That turns 2 x modules
small selections into one large one, which is what makes MIUB cheap next to the forward pass
(bench/miub_overhead.py). Other estimators reduce (h, g, mask) in the hook, as they arrive.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from trainables.miub.registry import Estimator, TokenMeanEstimator, get_estimator

_PENDING_LIMIT = 1 << 24  # buffered (h, g) elements before computing early (bounds the memory)


@dataclass
class _Site:
    """One LoRA-adapted module: its hooks' state for the current batch and its running sums."""

    name: str
    layer: nn.Module
    h: Tensor | None = None
    sums: list = field(default_factory=list)  # one entry (Tensor or None) per estimator


def _select_rows(source: Tensor, rows: Tensor, slot: Tensor) -> Tensor:
    """slot[:] = source[rows] as float32, without a temporary where the dtypes allow."""
    if source.dtype == slot.dtype and source.device == slot.device:
        return torch.index_select(source, 0, rows, out=slot)
    return slot.copy_(source.index_select(0, rows))


def _short_name(name: str, wrapped: bool) -> str:
    if wrapped and name.startswith("module."):  # DeepSpeed engine / DDP wrapper
        name = name[len("module.") :]
    return name.removeprefix("base_model.model.")


class MiubCollector:
    """Context manager measuring MIUB for every LoRA layer during evaluation forwards.

    ``estimator`` is one registered name or a list of them; the first is the headline figure
    (:meth:`result`), every one is in :meth:`results`. On enter, hooks go on each PEFT LoRA
    layer's `base_layer` (keeps h for the current forward) and `lora_B[adapter]` (output times
    scaling is g). On exit every hook is removed, so training steps pay nothing. Sums restart
    at each enter: one `with` block is one evaluation pass.

    ``standard_error=True`` adds one row to :meth:`stats_tensor` with the sums needed for the
    standard error of the first estimator's figure over tokens (per-token estimators only).
    ``max_tokens`` keeps a random subset of about that many real tokens out of
    ``expected_tokens`` (the real tokens this worker will see), the same for every module.

    Meant for eval mode (`model.eval()`): in train mode LoRA dropout changes g (a warning says so).
    Plain LoRA on linear layers only; DoRA and other variants, merged or inactive adapters are
    refused. Works through a DeepSpeed engine or DDP wrapper (hooks go on the inner modules).
    """

    def __init__(
        self,
        model: nn.Module,
        estimator: str | list[str] = "jsd_topk",
        top_k=32,
        temperature: float = 1.0,
        adapter: str = "default",
        *,
        noise: float = 0.1,
        standard_error: bool = False,
        max_tokens: int | None = None,
        expected_tokens: int | None = None,
        seed: int = 0,
    ):
        from peft.tuners.lora.layer import LoraLayer

        names = [estimator] if isinstance(estimator, str) else list(estimator)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"estimators must be a non-empty list without repeats, got {names!r}")
        self.estimators: list[Estimator] = [
            get_estimator(name)(top_k=top_k, temperature=temperature, noise=noise) for name in names
        ]
        self.estimator = self.estimators[0]
        self.estimator_name = self.estimator.name
        self.adapter = adapter
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1 or not expected_tokens):
            raise ValueError("max_tokens needs an integer >= 1 and expected_tokens, the real tokens to sample from")
        self._rate = None if max_tokens is None else min(1.0, max_tokens / expected_tokens)
        self._seed = seed
        self._with_se = standard_error
        wrapped = isinstance(getattr(model, "module", None), nn.Module)
        self._sites = sorted(
            (
                _Site(_short_name(name, wrapped), module)
                for name, module in model.named_modules()
                if isinstance(module, LoraLayer) and hasattr(module, "base_layer") and adapter in module.lora_B
            ),
            key=lambda site: site.name,
        )
        if not self._sites:
            raise ValueError(f"no PEFT LoRA layer with adapter {adapter!r} found in the model")
        self._mask: Tensor | None = None
        self._rows: dict = {}  # device -> indices of the kept tokens of the current batch
        self._handles: list = []
        self._warned_dropout = False
        self._width_count: dict[int, int] = {}
        for site in self._sites:
            width = site.layer.lora_B[adapter].out_features
            self._width_count[width] = self._width_count.get(width, 0) + 1
        self._reset()

    @property
    def module_names(self) -> list[str]:
        return [site.name for site in self._sites]

    @property
    def estimator_names(self) -> list[str]:
        return [estimator.name for estimator in self.estimators]

    def _reset(self) -> None:
        for site in self._sites:
            site.h, site.sums = None, [None] * len(self.estimators)
        self._pending: dict[int, list] = {}  # width -> [(site index, h rows, g rows)]
        self._buffers: dict[int, tuple[Tensor, Tensor]] = {}  # width -> flat h, g buffers
        self._pending_size = 0
        self._seen: set[int] = set()  # sites already in the current batch
        self._token_sum: Tensor | None = None  # per kept token: sum over modules of the first value
        self._se_sums = torch.zeros(3, dtype=torch.float64)  # sum m_t, sum m_t^2, tokens
        self._gen = torch.Generator().manual_seed(self._seed)

    def __enter__(self) -> MiubCollector:
        if self._handles:
            raise RuntimeError("MiubCollector is already active")
        for site in self._sites:
            self._check_layer(site)
        self._reset()
        for index, site in enumerate(self._sites):
            self._handles.append(site.layer.base_layer.register_forward_hook(self._keep_h(site)))
            self._handles.append(site.layer.lora_B[self.adapter].register_forward_hook(self._reduce(index, site)))
        return self

    def __exit__(self, exc_type, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if exc_type is None:
            self._flush(end_of_batch=True)
        self._pending.clear()
        self._buffers.clear()
        for site in self._sites:
            site.h = None
        self._mask = None
        self._rows = {}

    def _check_layer(self, site: _Site) -> None:
        layer, adapter = site.layer, self.adapter
        if adapter in getattr(layer, "lora_variant", {}):
            variant = type(layer.lora_variant[adapter]).__name__
            raise ValueError(f"MIUB supports plain LoRA only; {site.name} uses {variant}")
        if not isinstance(layer.lora_B[adapter], nn.Linear):
            raise ValueError(f"MIUB is defined for linear LoRA layers; {site.name} has {type(layer.lora_B[adapter]).__name__}")
        if layer.merged:
            raise ValueError(f"{site.name} has merged adapters; unmerge them before measuring MIUB")
        if layer.disable_adapters or adapter not in layer.active_adapters:
            raise ValueError(f"adapter {adapter!r} is not active on {site.name}")

    def set_mask(self, attention_mask: Tensor) -> None:
        """Mask for the next forward(s), [B, T], 1 = real token; without one every token counts."""
        self._flush(end_of_batch=True)
        mask = attention_mask.detach().to(torch.bool)
        if self._rate is not None and self._rate < 1.0:
            mask = mask & (torch.rand(mask.shape, generator=self._gen) < self._rate).to(mask.device)
        self._mask, self._rows = mask, {}

    # --- hooks --------------------------------------------------------------------------------

    def _keep_h(self, site: _Site):
        def hook(module, inputs, output):
            site.h = output.detach()

        return hook

    def _reduce(self, index: int, site: _Site):
        def hook(module, inputs, output):
            h, site.h = site.h, None
            if h is None:
                raise RuntimeError(f"lora_B of {site.name} ran without its base_layer output")
            if h.shape != output.shape:
                raise RuntimeError(
                    f"{site.name}: LoRA output {tuple(output.shape)} does not match base output "
                    f"{tuple(h.shape)} (mixed-adapter batches are not supported)"
                )
            self._warn_if_dropout(site)
            if index in self._seen:  # a new forward without set_mask: close the previous batch
                self._flush(end_of_batch=True)
            self._seen.add(index)
            with torch.no_grad():
                self._take(index, site, h, output.detach())

        return hook

    def _take(self, index: int, site: _Site, h: Tensor, out: Tensor) -> None:
        scaling = site.layer.scaling[self.adapter]
        mask = self._mask_for(h)
        if any(not isinstance(e, TokenMeanEstimator) for e in self.estimators):
            g = out.float() * scaling
            for e_index, estimator in enumerate(self.estimators):
                if not isinstance(estimator, TokenMeanEstimator):
                    self._add(site, e_index, estimator.batch_stats(h.float(), g, mask))
        if any(isinstance(e, TokenMeanEstimator) for e in self.estimators):
            d = h.shape[-1]
            rows = self._kept_rows(mask)
            pending = self._pending.setdefault(d, [])
            h_rows, g_rows = self._slots(d, len(pending), rows.numel(), h.device)
            _select_rows(h.reshape(-1, d), rows, h_rows)
            _select_rows(out.reshape(-1, d), rows, g_rows).mul_(scaling)
            pending.append((index, h_rows, g_rows))
            self._pending_size += 2 * h_rows.numel()
            if self._pending_size > _PENDING_LIMIT:
                self._flush(end_of_batch=False)

    def _slots(self, d: int, position: int, n: int, device) -> tuple[Tensor, Tensor]:
        """Views [n, d] into this width's buffers, where module number ``position`` of the batch
        goes: consecutive modules fill one block, so a flush needs no concatenation, and the
        buffers live for the whole pass (no fresh allocation per batch)."""
        need = self._width_count[d] * n * d
        buffers = self._buffers.get(d)
        if buffers is None or buffers[0].numel() < need or buffers[0].device != device:
            buffers = self._buffers[d] = (torch.empty(need, device=device), torch.empty(need, device=device))
        start, stop = position * n * d, (position + 1) * n * d
        return buffers[0][start:stop].view(n, d), buffers[1][start:stop].view(n, d)

    def _kept_rows(self, mask: Tensor) -> Tensor:
        if mask.device not in self._rows:
            self._rows[mask.device] = mask.reshape(-1).nonzero().squeeze(1)
        return self._rows[mask.device]

    def _add(self, site: _Site, e_index: int, stats: Tensor) -> None:
        previous = site.sums[e_index]
        site.sums[e_index] = stats if previous is None else previous + stats

    def _flush(self, end_of_batch: bool) -> None:
        """Compute the buffered per-token estimators; at a batch's end, fold in its tokens' SE sums."""
        for d, rows in self._pending.items():
            n = rows[0][1].shape[0]
            h, g = (buffer[: len(rows) * n * d].view(-1, d) for buffer in self._buffers[d])
            for e_index, estimator in enumerate(self.estimators):
                if not isinstance(estimator, TokenMeanEstimator):
                    continue
                values = estimator.token_values(h, g)
                count = torch.tensor(float(n), dtype=torch.float64, device=values.device)
                for position, (index, _, _) in enumerate(rows):
                    part = values[position * n : (position + 1) * n]
                    self._add(self._sites[index], e_index, torch.stack([part.sum(dtype=torch.float64), count]))
                if e_index == 0 and self._with_se:
                    per_token = values.view(len(rows), n).sum(dim=0, dtype=torch.float64)
                    self._token_sum = per_token if self._token_sum is None else self._token_sum + per_token
        self._pending.clear()
        self._pending_size = 0
        if end_of_batch:
            if self._token_sum is not None:
                m = self._token_sum.cpu() / len(self._sites)
                self._se_sums += torch.stack([m.sum(), (m * m).sum(), torch.tensor(float(m.numel()), dtype=torch.float64)])
            self._token_sum = None
            self._seen.clear()

    def _mask_for(self, h: Tensor) -> Tensor:
        tokens = h.shape[:-1]
        if self._mask is None:
            return torch.ones(tokens, dtype=torch.bool, device=h.device)
        if self._mask.numel() != tokens.numel():
            raise ValueError(f"attention mask {tuple(self._mask.shape)} does not match activations {tuple(h.shape)}")
        return self._mask.to(h.device).reshape(tokens)

    def _warn_if_dropout(self, site: _Site) -> None:
        dropout = site.layer.lora_dropout[self.adapter]
        if not self._warned_dropout and dropout.training and isinstance(dropout, nn.Dropout) and dropout.p > 0:
            self._warned_dropout = True
            warnings.warn("MIUB measured with LoRA dropout active; call model.eval() first", stacklevel=2)

    # --- results ------------------------------------------------------------------------------

    def _empty_stats(self, site: _Site, estimator: Estimator) -> Tensor:
        """Zero statistics of the right length for a module that saw no tokens."""
        d = site.layer.lora_B[self.adapter].out_features
        empty = torch.zeros(0, d)
        return estimator.batch_stats(empty, empty, torch.zeros(0, dtype=torch.bool))

    def _rows_of(self, site: _Site) -> list[Tensor]:
        return [
            (sums if sums is not None else self._empty_stats(site, estimator)).to(torch.float64).reshape(-1)
            for sums, estimator in zip(site.sums, self.estimators)
        ]

    def stats_tensor(self) -> Tensor:
        """[rows, width] float64 sums to all-reduce with SUM: one row per module (sorted by name),
        its estimators' statistics side by side and zero-padded to the widest row; with
        ``standard_error`` a last row holds the token sums for :meth:`standard_error`."""
        self._flush(end_of_batch=True)
        rows = [torch.cat([part.cpu() for part in self._rows_of(site)]) for site in self._sites]
        if self._with_se:
            rows.append(self._se_sums.clone())
        width = max(row.numel() for row in rows)
        device = next((s.device for site in self._sites for s in site.sums if s is not None), torch.device("cpu"))
        table = torch.zeros(len(rows), width, dtype=torch.float64)
        for i, row in enumerate(rows):
            table[i, : row.numel()] = row
        return table.to(device)

    def results(self, stats: Tensor | None = None) -> dict[str, tuple[float, dict[str, float]]]:
        """{estimator: (value, {module: value_l})}: value is the unweighted mean over modules."""
        stats = self.stats_tensor() if stats is None else stats
        expected = len(self._sites) + (1 if self._with_se else 0)
        if stats.shape[0] != expected:
            raise ValueError(f"stats has {stats.shape[0]} rows for {len(self._sites)} LoRA modules")
        stats = stats.detach().cpu()
        out = {}
        lengths = [[part.numel() for part in self._rows_of(site)] for site in self._sites]
        for e_index, estimator in enumerate(self.estimators):
            layers = {}
            for site, row, sizes in zip(self._sites, stats, lengths):
                start = sum(sizes[:e_index])
                layers[site.name] = estimator.finalize(row[start : start + sizes[e_index]])
            out[estimator.name] = (sum(layers.values()) / len(layers), layers)
        return out

    def result(self, stats: Tensor | None = None) -> tuple[float, dict[str, float]]:
        """(miub, {module: miub_l}) of the first estimator, in its units (nats for the built-ins)."""
        return self.results(stats)[self.estimator_name]

    def standard_error(self, stats: Tensor | None = None) -> float | None:
        """Standard error over tokens of the first estimator's figure; None where undefined.

        Every module sees the same tokens, so the figure is the mean over tokens t of
        m_t = (1/modules) sum_l value_{l,t}, and its standard error is sd(m_t) / sqrt(tokens).
        """
        if not self._with_se or not isinstance(self.estimator, TokenMeanEstimator):
            return None
        stats = self.stats_tensor() if stats is None else stats
        total, squares, n = stats[-1, :3].detach().cpu().tolist()
        if n < 2:
            return None
        variance = max(0.0, (squares - total * total / n) / (n - 1))
        return math.sqrt(variance / n)
