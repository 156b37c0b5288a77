"""``search: {algorithm: law}``: propose the trials that most narrow a scaling law's exponents.

A sweep run to measure a law wants the exponents pinned down, not the lowest loss found.
:class:`LawSearcher` fits a joint law (see ``orchestrator/analysis/joint_laws.py``) to the
configurations finished so far and proposes next the candidate that most shrinks the
bootstrap intervals of the exponents:

1. candidates come from the spec's search space (every combination of the law axes when
   they are all choices and few enough, else ``law_candidates`` draws); fields that are not
   law axes are drawn at random, as random search would;
2. a linearised pre-screen ranks them by how much adding the point would cut the
   exponents' variances (Sherman-Morrison on the Fisher information of the log residuals);
3. the best few are scored by refitting the configuration bootstrap with the candidate added
   at its predicted value, and the one with the narrowest mean relative interval wins.

Configurations still running count as added at their predicted value, so concurrent
suggestions spread out. Until the law can be fitted (``law_initial`` configurations, at
least one more than its parameters) the searcher picks space-filling candidates: the one
farthest, in log coordinates, from every configuration chosen so far. It sees one result
per configuration: :class:`~orchestrator.search.seeds.SeedReplicator` wraps it and reports
the mean over seeds, so the law is fitted to seed-averaged points.
"""
from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
from ray.tune.search import Searcher
from ray.tune.search.sample import Categorical
from ray.tune.search.variant_generator import parse_spec_vars

from orchestrator.analysis import joint_fit as jf
from orchestrator.analysis.joint_laws import make

ENUMERATE_UP_TO = 4096
TOP_K = 6


def _set(config: dict, path: tuple, value) -> None:
    for part in path[:-1]:
        config = config.setdefault(part, {})
    config[path[-1]] = value


def _get(config: dict, path: tuple):
    for part in path:
        config = config[part]
    return config


class LawSearcher(Searcher):
    """Chooses configurations that most shrink the bootstrap intervals of a law's exponents.

    ``axes``: dotted config paths of the law's axes (2 or 3), in the law's axis order.
    ``form``: ``multiplicative`` or ``additive``. ``metric`` is the fitted quantity (it must
    be positive, e.g. ``eval_ce``); ``mode`` is kept for Tune and not used.
    """

    def __init__(self, axes, form: str = "multiplicative", metric: str | None = None,
                 mode: str | None = None, n_candidates: int = 64, n_initial: int | None = None,
                 n_boot: int = 200, seed: int = 0, top_k: int = TOP_K):
        super().__init__(metric=metric, mode=mode)
        self.axes = [tuple(a.split(".")) for a in axes]
        self.law = make(form, tuple(axes))
        self.n_candidates, self.n_boot, self.top_k = n_candidates, n_boot, top_k
        self.n_initial = max(n_initial or 0, self.law.n_theta + 2)
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self._domains: list[tuple[tuple, object]] = []
        self._fixed: dict[tuple, float] = {}
        self.X: list[list[float]] = []      # finished configurations' axis values
        self.y: list[float] = []            # their (seed-mean) metric
        self.pending: dict[str, list[float]] = {}
        self.last_scores: dict | None = None

    @classmethod
    def from_spec(cls, spec) -> "LawSearcher":
        """The searcher a spec's ``search`` section describes (``algorithm: law``)."""
        s = spec.search
        return cls(s.law_axes, form=s.law_form, metric=s.metric, mode=s.mode,
                   n_candidates=s.law_candidates, n_initial=s.law_initial,
                   n_boot=s.law_bootstrap)

    # -- Tune's interface -----------------------------------------------------------------

    def set_search_properties(self, metric, mode, config: dict, **spec) -> bool:
        if self._metric is None and metric:
            self._metric = metric
        if self._mode is None and mode:
            self._mode = mode
        _, self._domains, _ = parse_spec_vars(config)
        paths = {p for p, _ in self._domains}
        problems = []
        for path in self.axes:
            if path in paths:
                continue
            try:
                value = _get(config, path)
            except (KeyError, TypeError):
                problems.append(f"search.law_axes: {'.'.join(path)} is not a field of the trial")
                continue
            if not isinstance(value, (int, float)) or value <= 0:
                problems.append(f"search.law_axes: {'.'.join(path)} = {value!r} is not a "
                                f"positive number or a searched range/choice")
            self._fixed[path] = float(value)
        if problems:
            raise ValueError("\n".join(problems))
        return True

    def suggest(self, trial_id: str):
        pool = self._pool()
        if not len(pool):
            return None
        X_pool = np.array([[float(_get(c, a)) for a in self.axes] for c in pool])
        i = self._choose(X_pool)
        config = pool[i]
        self.pending[trial_id] = X_pool[i].tolist()
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        x = self.pending.pop(trial_id, None)
        if x is None or error or not result:
            return
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
            self.X.append(list(x))
            self.y.append(float(value))

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))

    # -- candidates -------------------------------------------------------------------------

    def _draw(self) -> dict:
        config: dict = {}
        for path, domain in self._domains:
            _set(config, path, domain.sample())
        for path, value in self._fixed.items():
            _set(config, path, value)
        return config

    def _pool(self) -> list[dict]:
        """Candidate configurations: every law-axis combination of small choice domains,
        else ``n_candidates`` random draws (duplicates removed)."""
        domains = dict(self._domains)
        axis_domains = [domains.get(a) for a in self.axes]
        if all(isinstance(d, Categorical) for d in axis_domains if d is not None):
            values = [list(d.categories) if d is not None else [self._fixed[a]]
                      for a, d in zip(self.axes, axis_domains)]
            if math.prod(len(v) for v in values) <= ENUMERATE_UP_TO:
                out = []
                for combo in itertools.product(*values):
                    config = self._draw()
                    for a, v in zip(self.axes, combo):
                        _set(config, a, v)
                    out.append(config)
                return out
        seen, out = set(), []
        for _ in range(self.n_candidates):
            config = self._draw()
            key = tuple(float(_get(config, a)) for a in self.axes)
            if key not in seen:
                seen.add(key)
                out.append(config)
        return out

    # -- choosing ---------------------------------------------------------------------------

    def _design(self):
        """Finished points and pending ones (pending at their predicted value once fitted)."""
        X = np.array(self.X, dtype=float).reshape(-1, self.law.k)
        ly = np.log(np.array(self.y, dtype=float))
        pend = np.array(list(self.pending.values()), dtype=float).reshape(-1, self.law.k)
        return X, ly, pend

    def _choose(self, X_pool: np.ndarray) -> int:
        X, ly, pend = self._design()
        if len(ly) >= self.n_initial:
            try:
                return self._most_informative(X, ly, pend, X_pool)
            except jf.JointInsufficient:
                pass
        return self._space_filling(np.vstack([X, pend]), X_pool)

    def _space_filling(self, chosen: np.ndarray, X_pool: np.ndarray) -> int:
        L = np.log(X_pool)
        span = np.ptp(L, axis=0)
        span[span == 0] = 1.0
        if not len(chosen):
            return int(self.rng.integers(len(X_pool)))
        d = np.linalg.norm((L[:, None, :] - np.log(chosen)[None, :, :]) / span, axis=2)
        nearest = d.min(axis=1)
        best = np.flatnonzero(nearest >= nearest.max() - 1e-12)
        return int(self.rng.choice(best))

    def _fit(self, X, ly):
        p = jf.points(X, ly)
        jf.check(self.law, p, tuple(".".join(a) for a in self.axes))
        return p, jf.fit_point(self.law, p)

    def _widths(self, p: jf.Points, theta: np.ndarray) -> np.ndarray:
        """Bootstrap 95% interval width of each exponent (same resample draws every call)."""
        rng = np.random.default_rng(self.seed)
        counts = jf.cluster_counts(len(p.ly), self.n_boot, rng)
        boot = jf.bootstrap(self.law, p, theta, self.n_boot, None, counts=counts, iters=15)
        if len(boot) < 10:
            return np.full(self.law.k, np.inf)
        alphas = boot[:, -self.law.k:]
        lo, hi = np.percentile(alphas, [2.5, 97.5], axis=0)
        return hi - lo

    def _theta_for(self, theta: np.ndarray, old: jf.Points, new: jf.Points) -> np.ndarray:
        """theta re-expressed for another normalisation (the smallest axis values moved)."""
        return self.law.from_params(self.law.to_params(theta, old.x_ref), new.x_ref)

    def _most_informative(self, X, ly, pend, X_pool) -> int:
        p, theta = self._fit(X, ly)
        law, k = self.law, self.law.k
        if len(pend):   # running configurations count at their predicted value
            lp = law.log_predict(theta, np.log(pend / p.x_ref))
            X, ly = np.vstack([X, pend]), np.r_[ly, lp]
            q = jf.points(X, ly)
            theta, p = self._theta_for(theta, p, q), q
        _, J = law.log_predict_jac(theta, p.LX)
        Jp = J[p.cell]
        F = Jp.T @ Jp + 1e-9 * np.eye(law.n_theta)
        Fi = np.linalg.pinv(F)
        lpool, Jc = law.log_predict_jac(theta, np.log(X_pool / p.x_ref))
        u = Jc @ Fi
        denom = 1.0 + np.einsum("mp,mp->m", u, Jc)
        e = np.arange(law.n_theta - k, law.n_theta)
        cut = ((u[:, e] ** 2) / denom[:, None] / np.diag(Fi)[e]).sum(axis=1)
        top = np.argsort(-cut)[:self.top_k]
        base = self._widths(p, theta)
        scores = {}
        for i in top:
            q = jf.points(np.vstack([X, X_pool[i]]), np.r_[ly, lpool[i]])
            widths = self._widths(q, self._theta_for(theta, p, q))
            scores[int(i)] = float(np.mean(widths / base))
        self.last_scores = {"prescreen": {int(i): float(cut[i]) for i in top},
                            "relative_width": scores, "current_width": base.tolist()}
        return min(scores, key=scores.get)

    def exponent_intervals(self) -> dict | None:
        """The current fit's exponents and bootstrap widths (None before it can be fitted)."""
        X, ly, _ = self._design()
        try:
            p, theta = self._fit(X, ly)
        except jf.JointInsufficient:
            return None
        params = self.law.to_params(theta, p.x_ref)
        widths = self._widths(p, theta)
        return {name: (float(params[name]), float(w))
                for name, w in zip(self.law.exponents, widths)}
