"""The JSD estimators: `jsd_topk` (the default) and `jsd_full` (every feature of the module)."""

from __future__ import annotations

from torch import Tensor

from trainables.miub.registry import TokenMeanEstimator, register_estimator
from trainables.miub.tokens import miub_tokens


@register_estimator("jsd_topk")
class JsdTopK(TokenMeanEstimator):
    """Mean over real tokens of miub_tokens on the top_k features by |h| (docs/miub.md)."""

    def token_values(self, h: Tensor, g: Tensor) -> Tensor:
        return miub_tokens(h, g, self.top_k, self.temperature)


@register_estimator("jsd_full")
class JsdFull(TokenMeanEstimator):
    """The same JSD over all d features of the module: no selection, so no choice of k."""

    def token_values(self, h: Tensor, g: Tensor) -> Tensor:
        return miub_tokens(h, g, "all", self.temperature)
