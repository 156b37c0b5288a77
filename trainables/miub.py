"""MIUB: how much a LoRA module's output relies on the frozen module's top features.

The definition is lorasweep's own (docs/miub.md): Zhang et al. (arXiv 2501.03152) describe the
metric but publish no code. Estimators are pluggable so that another definition can be
registered under its own name and compared in the same sweep.

Usage in an evaluation pass (the model in eval mode, so LoRA dropout is off):

    with MiubCollector(model) as collector:
        for batch in loader:
            collector.set_mask(batch["attention_mask"])
            model(**batch)
    stats = collector.stats_tensor()   # all-reduce (SUM) this across data-parallel workers
    miub, miub_layers = collector.result(stats)
"""

from __future__ import annotations

import abc
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

LN2 = math.log(2.0)
_F32 = torch.finfo(torch.float32)


def _check_params(top_k: int, temperature: float) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    if not (isinstance(temperature, (int, float)) and _F32.tiny <= temperature < math.inf):
        raise ValueError(f"temperature must be a finite number >= {_F32.tiny:.3g} (float32), got {temperature!r}")


def miub_tokens(h: Tensor, g: Tensor, top_k: int = 32, temperature: float = 1.0) -> Tensor:
    """Per-token MIUB between the frozen output h and the LoRA output g, in nats.

    h, g: [..., d]; g is the LoRA branch output with its scaling included (s * B A x).
    With K the indices of the k = min(top_k, d) largest |h_i|:

        u = |h_K| / rms(h_K),   v = |g_K| / rms(g_K)      (v = 0, i.e. Q uniform, if rms(g_K) = 0)
        P = softmax(u / T),     Q = softmax(v / T),        M = (P + Q) / 2
        JSD(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M)        (natural log, 0 log 0 = 0)
        miub = ln 2 - JSD(P, Q)                            in [0, ln 2]

    JSD(P, Q) is the mutual information I(Z; F) between a fair coin Z (frozen or LoRA) and a
    feature index F drawn from P or Q, so it is at most H(Z) = ln 2, and miub = H(Z | F).
    JSD is summed per feature from t_i = (P_i - Q_i) / (P_i + Q_i) = tanh((ln P_i - ln Q_i) / 2):

        JSD = sum_i M_i * 1/2 [ (1 + t_i) ln(1 + t_i) + (1 - t_i) ln(1 - t_i) ]

    Each bracket is >= 0, is exactly 0 where P_i = Q_i, and is ~t_i^2 without cancellation
    for small t_i, so P = Q gives ln 2 to the last bit; at t_i = +-1 (disjoint) 0 ln 0 = 0.
    The result is clamped into [0, ln 2] only to remove float round-off. Computed in float32
    whatever the input dtype; returns shape [...], float32.
    """
    _check_params(top_k, temperature)
    if h.shape != g.shape:
        raise ValueError(f"h and g must have the same shape, got {tuple(h.shape)} and {tuple(g.shape)}")
    k = min(top_k, h.shape[-1])
    magnitudes = h.detach().float().abs()
    idx = top_k_indices(magnitudes, k)
    x = torch.stack([magnitudes.gather(-1, idx), g.detach().float().gather(-1, idx).abs()])  # [2, ..., k]: P, Q magnitudes
    # x / rms(x) = sqrt(k) * x / ||x||; dividing by the max first keeps ||x|| from overflowing or
    # underflowing (so the result is scale-free), and then ||x|| >= 1 unless x = 0 (-> uniform).
    top = x.amax(dim=-1, keepdim=True)
    x = x / torch.where(top > 0, top, 1.0)
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1.0)
    scale = math.sqrt(k) / temperature
    if scale <= _F32.max:
        logits = x * (scale / norm)
    else:  # a T this small overflows float32: divide last, then keep the logits finite
        logits = (x * (math.sqrt(k) / norm) / temperature).clamp_max(_F32.max)
    log_pq = torch.log_softmax(logits, dim=-1)  # finite: t below is never 0/0
    t = torch.tanh(0.5 * (log_pq[0] - log_pq[1]))
    # 2 x the bracket; ln(1 -+ t) is kept finite so that 0 ln 0 = 0 at t = +-1
    per_feature = (1.0 + t) * torch.log1p(t).clamp_min(-_F32.max) + (1.0 - t) * torch.log1p(-t).clamp_min(-_F32.max)
    m = 0.5 * log_pq.exp().sum(dim=0)
    jsd = 0.5 * (m * per_feature).sum(dim=-1)
    return (LN2 - jsd).clamp(0.0, LN2)


def top_k_indices(a: Tensor, k: int) -> Tensor:
    """Indices of the k largest entries along the last dim, in no particular order.

    On CPU, numpy's introselect (``argpartition``) is ~3x faster than ``torch.topk`` for the
    short rows MIUB selects from (k = 32 of d = 128: 0.42 vs 1.24 ms for 896 tokens); the
    top-k is most of MIUB's cost. Elsewhere (CUDA) ``torch.topk`` is the fast one. Which of
    several equal entries is picked differs between the two, as it does between torch versions.
    """
    d = a.shape[-1]
    if a.device.type != "cpu" or k >= d or a.numel() == 0:
        return a.topk(k, dim=-1, sorted=False).indices
    rows = np.ascontiguousarray(a.reshape(-1, d).numpy())
    idx = np.argpartition(rows, d - k, axis=-1)[:, d - k :]
    return torch.from_numpy(idx).reshape(*a.shape[:-1], k)


# --- estimators -------------------------------------------------------------------------------


class Estimator(abc.ABC):
    """Turns one module's per-batch (h, g, mask) into additive statistics, then into a value.

    Statistics must be additive (sums, counts) so that summing them over batches and over
    data-parallel workers gives the same value as one pass over the whole evaluation set.
    """

    name: str = ""  # set by register_estimator

    def __init__(self, top_k: int = 32, temperature: float = 1.0):
        _check_params(top_k, temperature)
        self.top_k = top_k
        self.temperature = temperature

    @abc.abstractmethod
    def batch_stats(self, h: Tensor, g: Tensor, mask: Tensor) -> Tensor:
        """h, g: [B, T, d]; mask: [B, T] (1 = real token). Returns 1-D float64 additive stats."""

    @abc.abstractmethod
    def finalize(self, stats: Tensor) -> float:
        """Summed statistics (over batches and workers) -> the module's value."""


_REGISTRY: dict[str, type[Estimator]] = {}


def register_estimator(name: str):
    """Class decorator registering an Estimator under the name used in `metrics.miub.estimator`."""

    def decorate(cls: type[Estimator]) -> type[Estimator]:
        if not (isinstance(cls, type) and issubclass(cls, Estimator)):
            raise TypeError(f"MIUB estimator {name!r} must subclass Estimator, got {cls!r}")
        if name in _REGISTRY:
            raise ValueError(f"MIUB estimator {name!r} is already registered (by {_REGISTRY[name].__qualname__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def get_estimator(name: str) -> type[Estimator]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown MIUB estimator {name!r}; registered: {', '.join(estimator_names())}")
    return _REGISTRY[name]


def estimator_names() -> list[str]:
    return sorted(_REGISTRY)


@register_estimator("jsd_topk")
class JsdTopK(Estimator):
    """The default: mean over real tokens of miub_tokens. Stats: [sum of miub, token count]."""

    def batch_stats(self, h: Tensor, g: Tensor, mask: Tensor) -> Tensor:
        # Padding is dropped before the top-k, the costly step: short prompts padded to
        # seq_len would otherwise pay for tokens that never count.
        keep = mask.to(device=h.device, dtype=torch.bool).reshape(-1)
        d = h.shape[-1]
        per_token = miub_tokens(h.reshape(-1, d)[keep], g.reshape(-1, d)[keep], self.top_k, self.temperature)
        return torch.stack([per_token.sum(dtype=torch.float64), keep.sum(dtype=torch.float64)])

    def finalize(self, stats: Tensor) -> float:
        total, count = stats.tolist()
        return total / count if count > 0 else math.nan


# --- collection from a PEFT model -------------------------------------------------------------


@dataclass
class _Site:
    """One LoRA-adapted module: its hooks' state for the current batch and its running sums."""

    name: str
    layer: nn.Module
    h: Tensor | None = None
    sums: Tensor | None = None


def _short_name(name: str, wrapped: bool) -> str:
    if wrapped and name.startswith("module."):  # DeepSpeed engine / DDP wrapper
        name = name[len("module.") :]
    return name.removeprefix("base_model.model.")


class MiubCollector:
    """Context manager measuring MIUB for every LoRA layer during evaluation forwards.

    On enter, hooks go on each PEFT LoRA layer's `base_layer` (keeps h for the current forward)
    and `lora_B[adapter]` (output times scaling is g; reduces (h, g, mask) to the module's
    running sums and drops h). On exit every hook is removed, so training steps pay nothing.
    Sums restart at each enter: one `with` block is one evaluation pass.

    Meant for eval mode (`model.eval()`): in train mode LoRA dropout changes g (a warning says so).
    Plain LoRA on linear layers only; DoRA and other variants, merged or inactive adapters are
    refused. Works through a DeepSpeed engine or DDP wrapper (hooks go on the inner modules).
    """

    def __init__(
        self,
        model: nn.Module,
        estimator: str = "jsd_topk",
        top_k: int = 32,
        temperature: float = 1.0,
        adapter: str = "default",
    ):
        from peft.tuners.lora.layer import LoraLayer

        self.estimator = get_estimator(estimator)(top_k=top_k, temperature=temperature)
        self.estimator_name = self.estimator.name
        self.adapter = adapter
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
        self._handles: list = []
        self._warned_dropout = False

    @property
    def module_names(self) -> list[str]:
        return [site.name for site in self._sites]

    def __enter__(self) -> MiubCollector:
        if self._handles:
            raise RuntimeError("MiubCollector is already active")
        for site in self._sites:
            self._check_layer(site)
        for site in self._sites:
            site.h, site.sums = None, None
            self._handles.append(site.layer.base_layer.register_forward_hook(self._keep_h(site)))
            self._handles.append(site.layer.lora_B[self.adapter].register_forward_hook(self._reduce(site)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for site in self._sites:
            site.h = None
        self._mask = None

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
        self._mask = attention_mask.detach().to(torch.bool)

    def _keep_h(self, site: _Site):
        def hook(module, inputs, output):
            site.h = output.detach()

        return hook

    def _reduce(self, site: _Site):
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
            with torch.no_grad():
                g = output.detach().float() * site.layer.scaling[self.adapter]
                stats = self.estimator.batch_stats(h.float(), g, self._mask_for(h))
            site.sums = stats if site.sums is None else site.sums + stats

        return hook

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

    def _empty_stats(self, site: _Site) -> Tensor:
        """Zero statistics of the right length for a module that saw no tokens."""
        d = site.layer.lora_B[self.adapter].out_features
        empty = torch.zeros(0, d)
        return self.estimator.batch_stats(empty, empty, torch.zeros(0, dtype=torch.bool))

    def stats_tensor(self) -> Tensor:
        """[num_modules, k] float64 sums, rows in sorted module-name order (all-reduce with SUM)."""
        rows = [site.sums if site.sums is not None else self._empty_stats(site) for site in self._sites]
        device = next((site.sums.device for site in self._sites if site.sums is not None), torch.device("cpu"))
        return torch.stack([row.to(device, torch.float64) for row in rows])

    def result(self, stats: Tensor | None = None) -> tuple[float, dict[str, float]]:
        """(miub, {module: miub_l}): miub is the unweighted mean over modules, in nats."""
        stats = self.stats_tensor() if stats is None else stats
        if stats.shape[0] != len(self._sites):
            raise ValueError(f"stats has {stats.shape[0]} rows for {len(self._sites)} LoRA modules")
        stats = stats.detach().cpu()
        layers = {site.name: self.estimator.finalize(row) for site, row in zip(self._sites, stats)}
        return sum(layers.values()) / len(layers), layers
