"""Spec parsing as a table of cases, plus a property: any YAML-like document is either a valid
spec or a UsageError, never another exception."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import UsageError
from orchestrator.spec.overrides import apply_overrides
from orchestrator.spec import Choice, Grid, LogUniform, RandInt, SweepSpec, Uniform, parse_spec
from orchestrator.spec.trials import axes, config_columns, config_hash, expand_grid, scale_factor, trial_template

BASE = {"name": "t", "train": {"steps": 10, "eval_every": 5}}


def spec_with(section: str, field: str, value, **extra) -> SweepSpec:
    doc = {**BASE, section: {**BASE.get(section, {}), field: value}, **extra}
    return parse_spec(doc)


# -- each value form: what it parses to, and which algorithms accept it ---------------------

FORM_CASES = [
    # (field, value, form type, grid ok, random ok, optuna ok)
    (("lora", "rank"), 4, int, True, True, False),  # a plain value is no axis: optuna has nothing to search
    (("lora", "rank"), {"grid": [2, 4]}, Grid, True, False, False),
    (("lora", "rank"), {"choice": [2, 4]}, Choice, True, True, True),
    (("lora", "alpha"), {"uniform": [1, 32]}, Uniform, False, True, True),
    (("train", "lr"), {"loguniform": [1e-4, 1e-2]}, LogUniform, False, True, True),
    (("lora", "rank"), {"randint": [1, 64]}, RandInt, False, True, True),
]


@pytest.mark.parametrize("path,value,kind,grid_ok,random_ok,optuna_ok", FORM_CASES)
def test_value_form_per_algorithm(path, value, kind, grid_ok, random_ok, optuna_ok):
    section, field = path
    for algorithm, ok in (("grid", grid_ok), ("random", random_ok), ("optuna", optuna_ok)):
        doc = {**BASE, section: {**BASE.get(section, {}), field: value}, "search": {"algorithm": algorithm}}
        if ok:
            assert isinstance(getattr(getattr(parse_spec(doc), section), field), kind)
        else:
            with pytest.raises(UsageError) as info:
                parse_spec(doc)
            assert any(f"{section}.{field}" in p or "search.algorithm" in p for p in info.value.problems)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("alpha", {"uniform": [5, 1]}, "lo < hi"),
        ("alpha", {"loguniform": [0, 1]}, "must be > 0"),
        ("rank", {"randint": [1.5, 3]}, "must be an integer"),
        ("rank", {"grid": []}, "lora.rank.grid"),
        ("rank", {"grid": [1], "choice": [2]}, "not a plain value or one of the forms value, grid, choice, randint"),
        # An integer field offers no real-valued range, and a range's ends obey the field's bounds.
        ("rank", {"loguniform": [1, 64]}, "lora.rank: {'loguniform': [1, 64]} is not a plain value or one of the forms value, grid, choice, randint"),
        ("rank", {"randint": [0, 4]}, "lora.rank.randint: end 0 is not an allowed value (must be >= 1)"),
        ("alpha", {"uniform": [-5, 5]}, "lora.alpha.uniform: end -5.0 is not an allowed value (must be > 0)"),
        ("alpha", {"randint": [1, 5]}, "one of the forms value, grid, choice, uniform, loguniform"),
        ("alpha", "16", "lora.alpha: '16' is not allowed (must be a number)"),
        ("rank", "4", "lora.rank: '4' is not allowed (must be an integer)"),
        ("rank", True, "lora.rank: True is not allowed (must be an integer)"),
        ("rank", 4.0, "lora.rank: 4.0 is not allowed (must be an integer)"),
        ("alpha", float("inf"), "lora.alpha: inf is not allowed (must be a finite number)"),
    ],
)
def test_bad_value_forms_are_named(field, value, message):
    with pytest.raises(UsageError) as info:
        spec_with("lora", field, value, search={"algorithm": "random"})
    assert message in str(info.value) and f"lora.{field}" in str(info.value)


def test_grid_expansion_is_the_product_of_grid_and_choice_axes():
    spec = parse_spec({**BASE, "lora": {"rank": {"grid": [1, 2, 4]}, "scaling": {"choice": ["standard", "rslora"]}},
                       "train": {**BASE["train"], "seed": {"grid": [0, 1]}}})
    configs = expand_grid(spec)
    assert len(configs) == 3 * 2 * 2
    assert {(c["lora"]["rank"], c["lora"]["scaling"], c["train"]["seed"]) for c in configs} == {
        (r, s, seed) for r in (1, 2, 4) for s in ("standard", "rslora") for seed in (0, 1)
    }
    assert [p for p, _ in axes(trial_template(spec))] == ["lora.rank", "lora.scaling", "train.seed"]


# -- overrides ----------------------------------------------------------------------------

OVERRIDE_CASES = [
    ("train.steps=40", ("train", "steps"), 40),
    ("train.lr=3e-4", ("train", "lr"), 3e-4),
    ("lora.scaling=rslora", ("lora", "scaling"), "rslora"),
    ("lora.rank={grid: [2, 4]}", ("lora", "rank"), Grid[int](grid=[2, 4])),
    ("lora.alpha={loguniform: [1, 64]}", ("lora", "alpha"), LogUniform(loguniform=(1, 64))),
    ("search.metric=[eval_ce, miub]", ("search", "metric"), ["eval_ce", "miub"]),
    ("model.local_files_only=false", ("model", "local_files_only"), False),
]


@pytest.mark.parametrize("override,path,expected", OVERRIDE_CASES)
def test_override_sets_the_field(override, path, expected):
    extra = ["search.algorithm=random"] if "loguniform" in override else []
    doc = apply_overrides(BASE, [override, *extra])
    spec = parse_spec(doc)
    value = getattr(getattr(spec, path[0]), path[1])
    assert value == (pytest.approx(expected) if isinstance(expected, float) else expected)


def test_override_does_not_touch_the_original_document():
    doc = {"name": "t", "train": {"steps": 10}}
    apply_overrides(doc, ["train.steps=20", "lora.rank=4"])
    assert doc == {"name": "t", "train": {"steps": 10}}


@pytest.mark.parametrize("override", ["train.steps", "=3", "train..steps=3", "name.x=1"])
def test_bad_override_is_a_usage_error(override):
    with pytest.raises(UsageError):
        apply_overrides({"name": "t"}, [override])


# -- derived values ------------------------------------------------------------------------

SCALE_CASES = [
    (16, 1, "standard", 16.0),
    (16, 4, "standard", 4.0),
    (16, 64, "standard", 0.25),
    (16, 1, "rslora", 16.0),
    (16, 4, "rslora", 8.0),
    (16, 64, "rslora", 2.0),
    (8, 2, "rslora", 8 / math.sqrt(2)),
]


@pytest.mark.parametrize("alpha,rank,rule,expected", SCALE_CASES)
def test_scale_factor(alpha, rank, rule, expected):
    assert scale_factor(alpha, rank, rule) == pytest.approx(expected)
    spec = parse_spec({**BASE, "lora": {"rank": rank, "alpha": alpha, "scaling": rule}})
    (config,) = expand_grid(spec)
    columns = config_columns(config)
    assert columns["scale_factor"] == pytest.approx(expected)
    assert (columns["rank"], columns["alpha"], columns["scaling"]) == (rank, float(alpha), rule)


def test_config_hash_ignores_key_order_and_seed_but_not_values():
    spec = parse_spec({**BASE, "train": {**BASE["train"], "seed": {"grid": [0, 1]}}})
    a, b = expand_grid(spec)
    assert config_hash(a) == config_hash(b)  # seeds of one configuration share a hash

    def reversed_keys(node):
        return {k: reversed_keys(node[k]) for k in reversed(list(node))} if isinstance(node, dict) else node

    assert list(reversed_keys(a)) != list(a)
    assert config_hash(reversed_keys(a)) == config_hash(a)
    changed = {**a, "lora": {**a["lora"], "rank": a["lora"]["rank"] * 2}}
    assert config_hash(changed) != config_hash(a)
    assert len(config_hash(a)) == 12 and config_hash(a) == config_hash(dict(a))
    rescheduled = {**a, "resources": {**a["resources"], "max_concurrent_trials": 7, "placement_strategy": "SPREAD"}}
    assert config_hash(rescheduled) == config_hash(a)  # where and how many at once is not what trains


def test_results_path_must_be_a_pyarrow_filesystem_and_eval_shards_equal():
    with pytest.raises(UsageError) as info:
        parse_spec({**BASE, "results": {"path": "http://host/results"}, "data": {"eval_size": 63},
                    "resources": {"num_workers": 2}, "train": {**BASE["train"], "batch_size": 16}})
    text = str(info.value)
    assert "results.path: 'http://host/results' is not allowed (http:// is not a filesystem pyarrow opens" in text
    assert "s3://" in text
    parse_spec({**BASE, "results": {"path": "s3://bucket/results", "storage_path": "gs://bucket/ray"}})
    with pytest.raises(UsageError, match="data.eval_size: 63 is not divisible by resources.num_workers"):
        parse_spec({**BASE, "data": {"eval_size": 63}, "resources": {"num_workers": 2}, "train": {**BASE["train"], "batch_size": 16}})


# -- property: parse_spec accepts or raises UsageError, nothing else ------------------------

SECTIONS = {name: list(field.annotation.model_fields) for name, field in SweepSpec.model_fields.items() if name != "name"}
FORMS = ["grid", "choice", "uniform", "loguniform", "randint"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["eval_ce", "miub", "min", "max", "grid", "optuna", "asha", "nsga2",
                                           "cmaes", "standard", "rslora", "zoo/llama-xs", "1e-3", "train.seed"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(FORMS), st.lists(inner, max_size=4), min_size=1, max_size=2),
        st.dictionaries(st.text(max_size=6), inner, max_size=3),
    ),
    max_leaves=8,
)


@st.composite
def documents(draw):
    if draw(st.integers(0, 9)) == 0:
        return draw(values)  # not even a mapping
    doc = {}
    if draw(st.booleans()) or draw(st.booleans()):
        doc["name"] = draw(st.one_of(st.sampled_from(["ok", "a-b_c.1"]), scalars))
    for section in draw(st.lists(st.sampled_from(list(SECTIONS) + ["bogus"]), max_size=5, unique=True)):
        fields = SECTIONS.get(section, ["x"])
        chosen = draw(st.lists(st.sampled_from(fields + ["unknown"]), max_size=4, unique=True))
        doc[section] = {f: draw(values) for f in chosen} if draw(st.integers(0, 5)) else draw(values)
    if draw(st.integers(0, 5)) == 0:
        doc[draw(st.one_of(st.integers(), st.text(max_size=4)))] = draw(values)
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_any_document_is_a_spec_or_a_usage_error(document):
    try:
        spec = parse_spec(document)
    except UsageError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
    else:
        assert isinstance(spec, SweepSpec)


@settings(max_examples=200, deadline=None)
@given(
    algorithm=st.sampled_from(["grid", "random", "optuna"]),
    sampler=st.sampled_from(["tpe", "cmaes", "nsga2"]),
    metric=st.one_of(st.sampled_from(["eval_ce", "miub", "eval_acc", "nope"]),
                     st.lists(st.sampled_from(["eval_ce", "miub", "eval_acc", "train_loss"]), max_size=3)),
    mode=st.one_of(st.sampled_from(["min", "max"]), st.lists(st.sampled_from(["min", "max"]), max_size=3)),
    scheduler=st.sampled_from(["fifo", "asha"]),
    grace=st.integers(1, 30),
    rank=st.sampled_from([4, {"grid": [1, 2]}, {"choice": [1, 2]}, {"randint": [1, 8]}]),
    seed=st.sampled_from([0, {"grid": [0, 1]}, {"choice": [0, 1]}]),
)
def test_search_sections_are_a_spec_or_a_usage_error(algorithm, sampler, metric, mode, scheduler, grace, rank, seed):
    """Cross-field search rules never crash, whatever combination they meet."""
    doc = {
        "name": "s", "lora": {"rank": rank}, "train": {"steps": 20, "eval_every": 5, "seed": seed},
        "search": {"algorithm": algorithm, "sampler": sampler, "metric": metric, "mode": mode},
        "scheduler": {"type": scheduler, "grace_period": grace},
    }
    try:
        spec = parse_spec(doc)
    except UsageError as exc:
        assert all(p.startswith("<spec>: ") for p in exc.problems)
        return
    metrics = metric if isinstance(metric, list) else [metric]
    assert metrics and "nope" not in metrics
    if isinstance(mode, list):
        assert isinstance(metric, list) and len(mode) == len(metric)
    if scheduler == "asha":
        assert grace < 20
    assert spec.search.algorithm == algorithm
