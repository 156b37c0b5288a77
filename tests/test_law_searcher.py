"""``search: {algorithm: law}``: the LawSearcher as a unit, and once through Tune."""
from __future__ import annotations

import numpy as np
import pytest
from ray import tune

from orchestrator.search.builders import build_search_alg
from orchestrator.search.law_searcher import LawSearcher
from orchestrator.search.random_searcher import RandomSearcher
from orchestrator.search.seeds import SeedReplicator
from orchestrator.spec import parse_spec

AXES = ["model.params", "data.train_size", "lora.rank"]
SPACE = {"model": {"params": tune.choice([1e6, 4e6, 16e6, 64e6])},
         "data": {"train_size": tune.choice([500, 1000, 2000, 4000, 8000])},
         "lora": {"rank": tune.choice([1, 2, 4, 8, 16, 32, 64]),
                  "alpha": tune.uniform(8.0, 32.0)},
         "train": {"seed": 0}}


def truth(cfg):
    n, d, r = cfg["model"]["params"], cfg["data"]["train_size"], cfg["lora"]["rank"]
    return 2.0 * (n / 1e6) ** -0.3 * (d / 500) ** -0.2 * r ** -0.1 + 0.5


def drive(searcher, n_trials, seed=0, noise=0.05 / np.sqrt(3)):
    """Run the searcher against the known law (seed-mean noise of 3 seeds at 5%)."""
    rng = np.random.default_rng(seed)
    searcher.set_search_properties("eval_ce", "min", SPACE)
    configs = []
    for i in range(n_trials):
        cfg = searcher.suggest(f"t{i}")
        configs.append(cfg)
        searcher.on_trial_complete(f"t{i}", {"eval_ce": truth(cfg) * (1 + noise *
                                                                      rng.standard_normal())})
    return configs


def fitted_widths(configs, seed=0, noise=0.05 / np.sqrt(3)):
    """Exponent interval widths of a law fitted to these configurations (one fixed scorer)."""
    scorer = LawSearcher(AXES, metric="eval_ce", seed=seed)
    scorer.set_search_properties("eval_ce", "min", SPACE)
    rng = np.random.default_rng(seed + 1)
    for i, cfg in enumerate(configs):
        scorer.pending[f"s{i}"] = [cfg["model"]["params"], cfg["data"]["train_size"],
                                   cfg["lora"]["rank"]]
        scorer.on_trial_complete(f"s{i}", {"eval_ce": truth(cfg) * (1 + noise *
                                                                    rng.standard_normal())})
    return scorer.exponent_intervals()


def test_suggestions_stay_in_the_space_and_recover_the_law():
    s = LawSearcher(AXES, metric="eval_ce", seed=0)
    configs = drive(s, 24)
    for cfg in configs:
        assert cfg["model"]["params"] in (1e6, 4e6, 16e6, 64e6)
        assert cfg["data"]["train_size"] in (500, 1000, 2000, 4000, 8000)
        assert cfg["lora"]["rank"] in (1, 2, 4, 8, 16, 32, 64)
        assert 8.0 <= cfg["lora"]["alpha"] <= 32.0   # not a law axis: drawn at random
    assert len(s.y) == 24 and s.last_scores is not None   # the law guided the later choices
    est = s.exponent_intervals()
    for name, value in (("alpha", 0.3), ("beta", 0.2), ("gamma", 0.1)):
        assert est[name][0] == pytest.approx(value, rel=0.2)


def test_law_search_narrows_the_exponents_more_than_random_search():
    n = 24
    law = drive(LawSearcher(AXES, metric="eval_ce", seed=0), n)
    rand = RandomSearcher()
    rand.set_search_properties(None, None, SPACE)
    random_configs = [rand.suggest(str(i)) for i in range(n)]
    w_law, w_rand = fitted_widths(law), fitted_widths(random_configs)
    mean_law = np.mean([w for _, w in w_law.values()])
    mean_rand = np.mean([w for _, w in w_rand.values()])
    assert mean_law < mean_rand


def test_failed_and_stopped_configurations_add_no_point():
    s = LawSearcher(AXES, metric="eval_ce")
    s.set_search_properties("eval_ce", "min", SPACE)
    for i, (result, error) in enumerate([(None, True), (None, False),
                                         ({"eval_ce": float("nan")}, False)]):
        s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", result, error=error)
    assert s.y == [] and s.pending == {}


def test_an_axis_outside_the_space_is_named():
    s = LawSearcher(["lora.rank", "data.missing"], metric="eval_ce")
    with pytest.raises(ValueError, match="data.missing is not a field of the trial"):
        s.set_search_properties("eval_ce", "min", SPACE)


def test_state_survives_save_and_restore(tmp_path):
    s = LawSearcher(AXES, metric="eval_ce", seed=0)
    drive(s, 10)
    s.save(str(tmp_path / "law.pkl"))
    t = LawSearcher(AXES, metric="eval_ce", seed=5)
    t.restore(str(tmp_path / "law.pkl"))
    assert t.X == s.X and t.y == s.y
    t.set_search_properties("eval_ce", "min", SPACE)
    assert t.suggest("next") is not None


def test_seed_replicas_give_the_searcher_one_mean_per_configuration():
    inner = LawSearcher(AXES, metric="eval_ce", seed=0)
    rep = SeedReplicator(inner, [0, 1, 2], steps=10)
    rep.set_search_properties("eval_ce", "min", SPACE)
    configs = [rep.suggest(f"t{i}") for i in range(3)]
    assert [c["train"]["seed"] for c in configs] == [0, 1, 2]
    for i, value in enumerate((1.0, 2.0, 3.0)):
        rep.on_trial_complete(f"t{i}", {"eval_ce": value, "step": 10})
    assert inner.y == [2.0] and len(inner.X) == 1


def test_spec_builds_the_law_search_and_checks_its_axes():
    doc = {"name": "x", "lora": {"rank": {"choice": [1, 4, 16]}},
           "data": {"train_size": {"choice": [100, 200, 400]}},
           "search": {"algorithm": "law", "num_samples": 6, "law_form": "additive",
                      "law_axes": ["data.train_size", "lora.rank"]},
           "train": {"steps": 10, "eval_every": 5, "seed": {"grid": [0, 1]}}}
    alg = build_search_alg(parse_spec(doc))
    replicator = alg.searcher.searcher
    assert isinstance(replicator, SeedReplicator) and replicator.seeds == [0, 1]
    law = replicator.searcher
    assert isinstance(law, LawSearcher) and law.law.name == "additive"
    doc["train"]["seed"] = 3   # a plain seed: still one result per configuration
    assert build_search_alg(parse_spec(doc)).searcher.searcher.seeds == [3]
    doc["search"]["law_axes"] = ["lora.rank", "lora.alpha", "data.train_size", "train.lr"]
    with pytest.raises(Exception) as exc:
        parse_spec(doc)
    assert "must name 2 or 3 distinct fields" in str(exc.value)
    assert "'lora.alpha' is not a searched field" in str(exc.value)


@pytest.mark.slow
def test_law_search_through_tune_with_a_known_law(ray_local, tmp_path):
    from ray.tune.search import ConcurrencyLimiter

    from orchestrator.search.seeds import PerConfigurationSearch

    def trainable(config):  # self-contained: Ray workers cannot import this test module
        from ray import tune as worker_tune

        n, d = config["model"]["params"], config["data"]["train_size"]
        ce = 2.0 * (n / 1e6) ** -0.3 * (d / 500) ** -0.2 * config["lora"]["rank"] ** -0.1 + 0.5
        noise = 1 + 0.02 * (config["train"]["seed"] - 1)   # the seeds' mean is the law
        worker_tune.report({"eval_ce": ce * noise, "step": 5})

    inner = LawSearcher(AXES, metric="eval_ce", n_initial=7, seed=0)
    alg = PerConfigurationSearch(ConcurrencyLimiter(SeedReplicator(inner, [0, 1, 2], steps=5),
                                                    max_concurrent=2), trials_per_sample=3)
    tuner = tune.Tuner(trainable, param_space=SPACE,
                       tune_config=tune.TuneConfig(search_alg=alg, num_samples=12,
                                                   metric="eval_ce", mode="min"),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    results = tuner.fit()
    assert len(results) == 36 and not results.errors
    assert len(inner.y) == 12                       # one seed-mean per configuration
    est = inner.exponent_intervals()
    assert est["alpha"][0] == pytest.approx(0.3, rel=0.1)
