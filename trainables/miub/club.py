"""`club_gauss`: a CLUB upper bound on the mutual information between frozen and LoRA outputs.

h = W0 x and g = s B A x are deterministic linear maps of the same input, so their continuous
mutual information is unbounded wherever g is a function of h. A finite figure needs a noise
channel; this estimator observes both through additive isotropic Gaussian noise whose variance
is a fixed fraction ``noise`` of each signal's own mean per-feature variance:

    h~ = h + e_h,  e_h ~ N(0, noise * tr(C_hh)/d_h * I),    g~ = g + e_g (likewise)

and bounds I(h~; g~) with CLUB (Cheng et al., ICML 2020), using a linear-Gaussian q(g~ | h~):

    CLUB = E_p(h~,g~)[log q(g~|h~)] - E_p(h~) E_p(g~)[log q(g~|h~)] = tr(S^-1 W C_hg)

with W = C_gh (C_hh + t_h I)^-1 and S = C_gg + t_g I - W C_hg fitted on one half of the real
tokens, and C_hg, the cross-covariance, taken on the other half (the noise averages out of
the formula in closed form, so nothing is sampled). The halves are the even and odd real
tokens of each batch; both ways round are averaged. Additive statistics per half: token
count, sums of h and g, and the sums of h h^T, h g^T and g g^T, in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from trainables.miub.registry import Estimator, register_estimator


def _layout(d: int) -> list[int]:
    """Lengths of [n, sum h, sum g, sum hh^T, sum hg^T, sum gg^T] for one half."""
    return [1, d, d, d * d, d * d, d * d]


def stats_length(d: int) -> int:
    return 2 * sum(_layout(d))


@register_estimator("club_gauss")
class ClubGauss(Estimator):
    """CLUB bound with a linear-Gaussian q, fitted on one half of the tokens, scored on the other."""

    def batch_stats(self, h: Tensor, g: Tensor, mask: Tensor) -> Tensor:
        d = h.shape[-1]
        keep = mask.to(device=h.device, dtype=torch.bool).reshape(-1)
        h = h.reshape(-1, d)[keep].double()
        g = g.reshape(-1, d)[keep].double()
        return torch.cat([self._half_stats(h[half::2], g[half::2]) for half in (0, 1)])

    @staticmethod
    def _half_stats(h: Tensor, g: Tensor) -> Tensor:
        n = torch.tensor([float(h.shape[0])], dtype=torch.float64, device=h.device)
        return torch.cat([n, h.sum(0), g.sum(0), (h.T @ h).flatten(), (h.T @ g).flatten(), (g.T @ g).flatten()])

    def finalize(self, stats: Tensor) -> float:
        stats = stats.double().cpu()
        d = _width(stats.numel())
        halves = [_moments(part, d) for part in stats.split(stats.numel() // 2)]
        if any(n < 2 for n, *_ in halves):
            return math.nan
        if any(torch.trace(c_gg) <= 0 or torch.trace(c_hh) <= 0 for _, c_hh, _, c_gg in halves):
            return 0.0  # g (or h) constant: it carries no information (e.g. B = 0, LoRA off)
        a, b = halves
        return 0.5 * (self._club(fit=a, score=b) + self._club(fit=b, score=a))

    def _club(self, fit, score) -> float:
        _, c_hh, c_hg, c_gg = fit
        d_h, d_g = c_hh.shape[0], c_gg.shape[0]
        noisy_hh = c_hh + (self.noise * torch.trace(c_hh) / d_h) * torch.eye(d_h, dtype=c_hh.dtype)
        noisy_gg = c_gg + (self.noise * torch.trace(c_gg) / d_g) * torch.eye(d_g, dtype=c_gg.dtype)
        residual = noisy_gg - c_hg.T @ torch.linalg.solve(noisy_hh, c_hg)  # S, positive definite
        cross = c_hg.T @ torch.linalg.solve(noisy_hh, score[2])  # W C_hg(score half)
        return torch.trace(torch.linalg.solve(residual, cross)).item()


def _width(length: int) -> int:
    d = int((-2 + math.sqrt(4 + 12 * (length // 2 - 1))) / 6 + 0.5)
    if stats_length(d) != length:
        raise ValueError(f"club_gauss statistics of length {length} do not match any width")
    return d


def _moments(part: Tensor, d: int):
    """(n, C_hh, C_hg, C_gg) of one half from its sums (covariances divide by n)."""
    n, sum_h, sum_g, hh, hg, gg = part.split(_layout(d))
    n = n.item()
    if n < 2:
        return (n, None, None, None)
    mean_h, mean_g = sum_h / n, sum_g / n
    c_hh = hh.view(d, d) / n - torch.outer(mean_h, mean_h)
    c_hg = hg.view(d, d) / n - torch.outer(mean_h, mean_g)
    c_gg = gg.view(d, d) / n - torch.outer(mean_g, mean_g)
    return (n, c_hh, c_hg, c_gg)
