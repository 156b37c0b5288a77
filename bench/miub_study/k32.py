"""`jsd_k32`: jsd_topk with k fixed at 32 features, whatever `metrics.miub.top_k` says.

Registered through `metrics.miub.imports` so that one sweep measures k as a count (this
estimator, first, so it fills `miub`) beside k as a fraction (`jsd_topk` with `top_k: 0.25`,
in `miub_jsd_topk`), `jsd_full` and `club_gauss`.
"""

from trainables.miub import TokenMeanEstimator, miub_tokens, register_estimator


@register_estimator("jsd_k32")
class JsdK32(TokenMeanEstimator):
    def token_values(self, h, g):
        return miub_tokens(h, g, 32, self.temperature)
