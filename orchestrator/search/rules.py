"""What a spec's ``search`` and ``scheduler`` sections mean, and the rules that tie them to
the rest of the spec.

Pure Python (no Ray, no Optuna), so ``validate`` and ``--dry-run`` can use it. The spec's
cross-field validator calls :func:`search_problems`; ``orchestrator.search`` builds Tune
objects from the same helpers, so what is validated is what runs.
"""
from __future__ import annotations

import math
from orchestrator.spec.forms import Grid, LogUniform, PowersOfTwo, RandInt, Uniform, _Range, form_of

# Numbers the trainable reports at every evaluation that a search or a scheduler can rank.
REPORTED_METRICS = ("eval_ce", "eval_ppl", "eval_acc", "miub", "train_loss")
SEED_PATH = "train.seed"
RANGE_FORMS = (Uniform, LogUniform, RandInt)  # RandInt covers lograndint
SCHEDULERS = ("fifo", "asha", "hyperband", "median", "curve")
GRACE_SCHEDULERS = ("asha", "median", "curve")  # the ones that take a grace period


def form_name(form) -> str:
    """The form's YAML key: ``grid``, ``choice``, ``uniform``, ``lograndint``, ``pow2``, ..."""
    return form_of(form)


def form_values(form) -> list:
    """The list written after the form's key (a pow2 choice gives its two ends)."""
    if isinstance(form, PowersOfTwo):
        return [form.choice[0], form.choice[-1]]
    if isinstance(form, _Range):
        return list(form.bounds)
    return list(form.grid if isinstance(form, Grid) else form.choice)


def form_text(form) -> str:
    """A value form as written in YAML, e.g. ``{uniform: [1.0, 64.0]}``."""
    return f"{{{form_name(form)}: {form_values(form)}}}"


def search_axes(spec) -> list[tuple[str, object]]:
    """(dotted path, value form) of every field that is not a plain value."""
    from orchestrator.spec.trials import axes, trial_template

    return list(axes(trial_template(spec)))


def replicate_seeds(spec) -> list[int] | None:
    """The seeds each sampled configuration runs with, or None when seeds are not replicas.

    Under random and Optuna search a ``train.seed`` grid replicates every configuration;
    under Optuna a plain seed is one replica. Grid search enumerates seeds like any axis.
    """
    seed = spec.train.seed
    if spec.search.algorithm == "grid":
        return None
    if isinstance(seed, Grid):
        return list(dict.fromkeys(seed.grid))
    if spec.search.algorithm == "optuna" and isinstance(seed, int):
        return [seed]
    return None


def objectives(spec) -> tuple[list[str], list[str]]:
    """Search metrics and modes as equal-length lists (one mode applies to every metric)."""
    metrics = spec.search.metric if isinstance(spec.search.metric, list) else [spec.search.metric]
    mode = spec.search.mode
    modes = list(mode) if isinstance(mode, list) else [mode] * len(metrics)
    return list(metrics), modes



def asha_rungs(spec) -> list[float]:
    """Steps at which ASHA compares trials: grace_period * reduction_factor**k below
    train.steps (Ray's single-bracket rule)."""
    s, max_t = spec.scheduler, spec.train.steps
    count = int(math.log(max_t / s.grace_period) / math.log(s.reduction_factor) + 1)
    return [s.grace_period * s.reduction_factor**k for k in range(max(count, 0))]


def search_problems(spec) -> list[str]:
    """Every cross-field problem of ``search`` and ``scheduler``, one line each."""
    return _axis_problems(spec) + _objective_problems(spec) + _scheduler_problems(spec)


def _axis_problems(spec) -> list[str]:
    algorithm = spec.search.algorithm
    found = search_axes(spec)
    problems = []
    for path, form in found:
        value = form_text(form)
        if algorithm == "grid" and isinstance(form, RANGE_FORMS):
            problems.append(
                f"{path}: {value} cannot be enumerated by search.algorithm grid; allowed: a value, "
                f"grid or choice (or search.algorithm random|optuna to sample the range)"
            )
        elif algorithm != "grid" and isinstance(form, Grid) and path != SEED_PATH:
            problems.append(
                f"{path}: {value} is a grid, but search.algorithm {algorithm} samples instead of "
                f"enumerating; allowed: choice (one value per trial), a range, or search.algorithm grid "
                f"(only {SEED_PATH} may be a grid here: its seeds replicate each configuration)"
            )
        elif algorithm == "optuna" and path == SEED_PATH and not isinstance(form, Grid):
            problems.append(
                f"{path}: {value} would make Optuna tune the seed; allowed: a value or a grid "
                f"(each configuration runs once per seed and Optuna sees the mean)"
            )
    if algorithm == "optuna" and not [p for p, _ in found if p != SEED_PATH]:
        problems.append(
            "search.algorithm: 'optuna' has nothing to search (no choice or range outside train.seed); "
            "allowed: add a choice/uniform/loguniform/randint field, or search.algorithm grid"
        )
    return problems


def _objective_problems(spec) -> list[str]:
    search = spec.search
    problems = []
    metrics = search.metric if isinstance(search.metric, list) else [search.metric]
    if isinstance(search.mode, list):
        if not isinstance(search.metric, list) or len(search.mode) != len(metrics):
            problems.append(
                f"search.mode: {search.mode} has {len(search.mode)} entries but search.metric "
                f"{search.metric!r} has {len(metrics)}; allowed: one mode per metric, or a single mode for all"
            )
    if not metrics:
        problems.append("search.metric: [] is empty; allowed: one or more of " + ", ".join(REPORTED_METRICS))
    if len(set(metrics)) != len(metrics):
        problems.append(f"search.metric: {metrics} names a metric twice; allowed: distinct metrics")
    problems += _metric_name_problems("search.metric", metrics, spec, used=search.algorithm == "optuna")
    if search.algorithm == "optuna" and search.sampler == "cmaes" and len(metrics) > 1:
        problems.append(
            f"search.sampler: 'cmaes' optimises one metric, got search.metric {metrics}; "
            f"allowed: tpe or nsga2 for several metrics"
        )
    return problems


def _scheduler_problems(spec) -> list[str]:
    s, steps = spec.scheduler, spec.train.steps
    problems = _metric_name_problems("scheduler.metric", [s.metric], spec, used=s.type != "fifo")
    name = {"asha": "ASHA", "median": "the median stopping rule", "curve": "the curve scheduler"}.get(s.type)
    if s.type in GRACE_SCHEDULERS and s.grace_period >= steps:
        problems.append(
            f"scheduler.grace_period: {s.grace_period} is not less than train.steps ({steps}), "
            f"so {name} could never stop a trial; allowed: 1..{steps - 1} (in optimizer steps)"
        )
    if s.type == "hyperband" and s.reduction_factor >= steps:
        problems.append(
            f"scheduler.reduction_factor: {s.reduction_factor:g} is not less than train.steps ({steps}), "
            f"so HyperBand would have one bracket that runs every trial to the end; allowed: "
            f"more than 1, less than {steps}"
        )
    if s.type == "curve":
        usable = len(curve_decision_steps(spec))
        before = [e for e in evaluation_steps(spec) if e < steps]
        if not usable:
            problems.append(
                f"scheduler.min_points: {s.min_points} evaluations are needed before a curve is fitted, but "
                f"only {len(before)} come before train.steps ({steps}) with train.eval_every {spec.train.eval_every}, "
                f"so the curve scheduler could never stop a trial; allowed: "
                + (f"4..{len(before)}, a smaller scheduler.grace_period or " if len(before) >= 4 else "")
                + f"a smaller train.eval_every"
            )
    return problems


def evaluation_steps(spec) -> list[int]:
    """Steps at which a trial evaluates (and reports): multiples of eval_every, and the last."""
    every, steps = spec.train.eval_every, spec.train.steps
    return sorted(set(range(every, steps + 1, every)) | {steps})


def curve_decision_steps(spec) -> list[int]:
    """Evaluations at which the curve scheduler can stop a trial: at or past the grace period,
    with ``min_points`` evaluations so far, before the last step."""
    s, steps = spec.scheduler, spec.train.steps
    evals = evaluation_steps(spec)
    return [e for n, e in enumerate(evals, 1) if e < steps and e >= s.grace_period and n >= s.min_points]


def hyperband_brackets(spec) -> list[tuple[int, list[int]]]:
    """Ray's HyperBand brackets in the order it fills them: (trials, steps at which they are
    halved). Bracket s holds ceil(B / (s+1) * eta**s) trials, B = round(log(max_t)/log(eta)) + 1,
    starts with int(max_t / eta**s) steps and halves s times, multiplying by eta each time."""
    eta, max_t = spec.scheduler.reduction_factor, spec.train.steps
    count = int(round(math.log(max_t) / math.log(eta))) + 1
    brackets = []
    for s in range(count):
        r = int(max_t * eta**-s)
        if r == 0:
            continue
        halvings = []
        for _ in range(s):
            halvings.append(r)
            r = int(min(r * eta, max_t))
        brackets.append((int(math.ceil(count / (s + 1) * eta**s)), halvings))
    return brackets


def _metric_name_problems(field: str, metrics: list[str], spec, *, used: bool) -> list[str]:
    problems = []
    for name in metrics:
        if name not in REPORTED_METRICS:
            problems.append(f"{field}: {name!r} is not a reported metric; allowed: {', '.join(REPORTED_METRICS)}")
        elif name == "miub" and used and not spec.metrics.miub.enabled:
            problems.append(f"{field}: 'miub' is not reported because metrics.miub.enabled is false; "
                            f"allowed: another metric, or enable MIUB")
    return problems
