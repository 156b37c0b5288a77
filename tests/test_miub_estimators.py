"""MIUB estimators beside the default: top_k forms, jsd_full, club_gauss, several per evaluation."""

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy.spatial.distance import jensenshannon

from miub_reference import miub_tokens as reference_miub_tokens
from orchestrator.spec.sections import MiubSpec
from test_miub import _batch, _labelled, _lora_layers, _tiny_peft_llama
from trainables.evaluation import evaluate
from trainables.miub import MiubCollector, get_estimator, miub_tokens, resolve_k, top_k_indices

LN2 = math.log(2.0)


# --- top_k as a count, a fraction or all -------------------------------------------------------


@pytest.mark.parametrize("top_k, d, k", [(32, 48, 32), (32, 16, 16), (0.25, 48, 12), (0.25, 192, 48), (0.1, 30, 3),
                                         (0.001, 64, 1), (1.0, 64, 64), (1, 64, 1), ("all", 48, 48)])
def test_top_k_resolves_per_module_width(top_k, d, k):
    assert resolve_k(top_k, d) == k


def test_a_fraction_selects_the_same_features_as_the_count_it_resolves_to():
    torch.manual_seed(0)
    h, g = torch.randn(40, 48), torch.randn(40, 48)
    assert torch.equal(miub_tokens(h, g, top_k=0.25), miub_tokens(h, g, top_k=12))
    assert torch.equal(miub_tokens(h, g, top_k="all"), miub_tokens(h, g, top_k=48))


@pytest.mark.parametrize("top_k", [1.5, 0.0, -0.25, 0, "some", True, None])
def test_bad_top_k_is_rejected_by_the_formula_and_the_spec(top_k):
    with pytest.raises(ValueError, match="top_k"):
        miub_tokens(torch.ones(2, 4), torch.ones(2, 4), top_k=top_k)
    with pytest.raises(ValidationError, match="top_k"):
        MiubSpec(top_k=top_k)


def test_spec_estimator_and_estimators_agree():
    assert MiubSpec().estimators == ["jsd_topk"] and MiubSpec().estimator == "jsd_topk"
    assert MiubSpec(estimator="jsd_full").estimators == ["jsd_full"]
    both = MiubSpec(estimators=["club_gauss", "jsd_topk"])
    assert both.estimator == "club_gauss" and MiubSpec(**both.model_dump()) == both
    with pytest.raises(ValidationError, match="first of estimators"):
        MiubSpec(estimator="jsd_topk", estimators=["club_gauss"])
    with pytest.raises(ValidationError, match="twice"):
        MiubSpec(estimators=["jsd_full", "jsd_full"])


# --- the faster selection keeps the numbers ---------------------------------------------------


@pytest.mark.parametrize("d, top_k, temperature", [(128, 32, 1.0), (48, 32, 1.0), (192, 32, 0.5), (64, 8, 0.1),
                                                   (7, 3, 2.0), (128, 128, 1.0), (64, 8, 1e-3), (300, 17, 1.0)])
def test_values_equal_the_previous_implementation(d, top_k, temperature):
    gen = torch.Generator().manual_seed(d + top_k)
    h = torch.randn(3000, d, generator=gen) * torch.rand(3000, 1, generator=gen) * 10
    g = torch.randn(3000, d, generator=gen) * torch.rand(3000, 1, generator=gen)
    got, want = miub_tokens(h, g, top_k, temperature), reference_miub_tokens(h, g, top_k, temperature)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_selection_is_exact_where_entries_nearly_tie_or_tie():
    gen = torch.Generator().manual_seed(7)
    base = torch.randn(500, 128, generator=gen)
    # neighbours differing only in the lowest mantissa bits: the packed keys cannot tell them apart
    near = base.view(torch.int32).bitwise_xor(torch.randint(0, 128, (500, 128), generator=gen, dtype=torch.int32))
    for a in (near.view(torch.float32), base.round(decimals=1)):  # near-ties; many exact ties
        idx = top_k_indices(a, 32, magnitude=True)
        chosen = a.abs().gather(-1, idx)
        rest = a.abs().scatter(-1, idx, -1.0)
        assert all(len(set(row.tolist())) == 32 for row in idx)  # 32 distinct features per row
        assert (chosen.min(dim=-1).values >= rest.max(dim=-1).values).all()


# --- jsd_full ---------------------------------------------------------------------------------


def _values(name, h, g, **kwargs):
    return get_estimator(name)(**kwargs).token_values(h, g)


def test_jsd_full_is_ln2_when_g_follows_h_on_every_feature():
    torch.manual_seed(1)
    h = torch.randn(64, 40)
    signs = torch.where(torch.rand(64, 40) < 0.5, -1.0, 1.0)
    values = _values("jsd_full", h, 2.5 * h * signs)
    assert torch.equal(values, torch.full_like(values, LN2))


def test_jsd_full_with_b_zero_compares_p_with_the_uniform_distribution():
    torch.manual_seed(2)
    h = torch.randn(16, 24).double()
    u = (h.abs() / h.abs().pow(2).mean(-1, keepdim=True).sqrt()).numpy()
    p = np.exp(u) / np.exp(u).sum(-1, keepdims=True)
    want = [LN2 - jensenshannon(row, np.full(24, 1 / 24), base=math.e) ** 2 for row in p]
    got = _values("jsd_full", h.float(), torch.zeros(16, 24))
    np.testing.assert_allclose(got.double().numpy(), want, atol=1e-6)


@pytest.mark.parametrize("name", ["jsd_topk", "jsd_full"])
@pytest.mark.parametrize("c", [1e-3, 7.0, 1e4])
def test_jsd_estimators_do_not_change_when_h_and_g_scale_together(name, c):
    torch.manual_seed(3)
    h, g = torch.randn(200, 64), 0.1 * torch.randn(200, 64)
    torch.testing.assert_close(_values(name, c * h, c * g), _values(name, h, g), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["jsd_topk", "jsd_full"])
def test_jsd_estimators_fall_as_g_departs_from_h(name):
    torch.manual_seed(4)
    h, z = torch.randn(2000, 64), torch.randn(2000, 64)
    means = [_values(name, h, (1 - w) * h + w * z).mean().item() for w in (0.0, 0.2, 0.4, 0.7, 1.0)]
    assert means[0] == pytest.approx(LN2, abs=1e-6)
    assert all(a > b for a, b in zip(means, means[1:])), means


# --- club_gauss -------------------------------------------------------------------------------


def _club(h, g, noise=0.1, mask=None):
    estimator = get_estimator("club_gauss")(noise=noise)
    mask = torch.ones(h.shape[:-1], dtype=torch.bool) if mask is None else mask
    return estimator.finalize(estimator.batch_stats(h, g, mask))


def _correlated(n, d, rho, seed):
    """h with independent N(0, 1) features; g's first r features correlate rho with h's."""
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=gen)
    z = torch.randn(n, d, generator=gen)
    g = rho * h + math.sqrt(1 - rho**2) * z
    g[:, 4:] = 0.0  # a rank-4 LoRA branch: only 4 features move
    return h, g


def test_club_is_zero_where_the_lora_branch_is_off():
    h = torch.randn(300, 32)
    assert _club(h, torch.zeros(300, 32)) == 0.0


def test_club_matches_its_closed_form_for_one_gaussian_feature():
    # d = 1, corr(h, g) = rho, noise s: W = rho/(1+s), S = 1+s - rho^2/(1+s), CLUB = W rho / S
    rho, s = 0.8, 0.1
    gen = torch.Generator().manual_seed(5)
    h = torch.randn(200_000, 1, generator=gen, dtype=torch.float64)
    g = rho * h + math.sqrt(1 - rho**2) * torch.randn(200_000, 1, generator=gen, dtype=torch.float64)
    want = rho**2 / ((1 + s) ** 2 - rho**2)
    gaussian_mi = -0.5 * math.log(1 - rho**2 / (1 + s) ** 2)  # the channel's true MI
    got = _club(h, g, noise=s)
    assert got == pytest.approx(want, rel=0.02)
    assert got > gaussian_mi  # an upper bound


@pytest.mark.parametrize("c_h, c_g", [(1e-3, 1e-3), (50.0, 50.0), (1.0, 1e3)])
def test_club_does_not_change_when_h_and_g_scale(c_h, c_g):
    h, g = _correlated(4000, 16, 0.7, seed=6)
    assert _club(c_h * h, c_g * g) == pytest.approx(_club(h, g), rel=1e-6)


def test_club_rises_with_the_dependence_and_is_near_zero_without_it():
    values = [_club(*_correlated(4000, 16, rho, seed=7)) for rho in (0.0, 0.3, 0.6, 0.9)]
    assert abs(values[0]) < 0.02
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_club_statistics_add_over_batches():
    h, g = _correlated(600, 8, 0.5, seed=8)
    estimator = get_estimator("club_gauss")()
    ones = torch.ones(300, dtype=torch.bool)
    summed = estimator.batch_stats(h[:300], g[:300], ones) + estimator.batch_stats(h[300:], g[300:], ones)
    whole = estimator.batch_stats(h, g, torch.ones(600, dtype=torch.bool))
    assert estimator.finalize(summed) == pytest.approx(estimator.finalize(whole), rel=1e-9)


# --- several estimators in one evaluation -----------------------------------------------------


def test_every_estimator_reports_its_own_column():
    model = _tiny_peft_llama()
    ids, mask = _batch()
    spec = MiubSpec(estimators=["jsd_topk", "jsd_full", "club_gauss"], top_k=0.25)
    reported = evaluate(model, [_labelled(ids, mask)], miub=spec)
    assert reported["miub_estimator"] == "jsd_topk" and reported["miub"] == reported["miub_jsd_topk"]
    for name, top_k in [("jsd_topk", 8), ("jsd_full", 32), ("club_gauss", 32)]:  # width 32: 0.25 -> 8
        with torch.no_grad(), MiubCollector(model, estimator=name, top_k=top_k) as alone:
            alone.set_mask(mask)
            model(input_ids=ids, attention_mask=mask)
        assert reported[f"miub_{name}"] == pytest.approx(alone.result()[0], abs=1e-9)
    assert reported["miub_club_gauss"] > 0 and reported["miub_jsd_full"] != reported["miub_jsd_topk"]


def test_standard_error_is_that_of_the_per_token_module_mean():
    model = _tiny_peft_llama()
    ids, mask = _batch()
    hs, gs = {}, {}
    layers = _lora_layers(model)
    handles = [layer.base_layer.register_forward_hook(lambda m, i, o, n=n: hs.__setitem__(n, o)) for n, layer in layers.items()]
    handles += [layer.lora_B["default"].register_forward_hook(
        lambda m, i, o, n=n, s=layer.scaling["default"]: gs.__setitem__(n, o * s)) for n, layer in layers.items()]
    reported = evaluate(model, [_labelled(ids, mask)], miub=MiubSpec())
    for handle in handles:
        handle.remove()
    keep = mask.bool()
    per_token = torch.stack([miub_tokens(hs[n][keep], gs[n][keep]) for n in layers]).double().mean(0)
    want = per_token.std().item() / math.sqrt(per_token.numel())
    assert reported["miub"] == pytest.approx(per_token.mean().item(), abs=1e-6)
    assert reported["miub_se"] == pytest.approx(want, rel=1e-4)


def test_max_tokens_measures_a_subset_and_reports_its_error():
    model = _tiny_peft_llama()
    ids, mask = _batch(batch=8, lengths=(12,) * 8, seed=9)
    batches = [_labelled(ids[:4], mask[:4]), _labelled(ids[4:], mask[4:])]
    full = evaluate(model, batches, miub=MiubSpec())
    assert evaluate(model, batches, miub=MiubSpec(max_tokens=96)) == full  # all 96 real tokens
    sub = evaluate(model, batches, miub=MiubSpec(max_tokens=30))
    assert sub["miub"] != full["miub"] and sub["miub_se"] > full["miub_se"]
    assert abs(sub["miub"] - full["miub"]) < 5 * sub["miub_se"]
    assert evaluate(model, batches, miub=MiubSpec(max_tokens=30)) == sub  # the same subset each time


def test_club_is_zero_in_every_module_with_b_zero():
    model = _tiny_peft_llama(nonzero_b=False)
    ids, mask = _batch()
    with torch.no_grad(), MiubCollector(model, estimator=["club_gauss", "jsd_topk"]) as collector:
        collector.set_mask(mask)
        model(input_ids=ids, attention_mask=mask)
    results = collector.results()
    assert set(results) == {"club_gauss", "jsd_topk"}
    assert all(value == 0.0 for value in results["club_gauss"][1].values())
    assert collector.standard_error() is None  # not asked for
