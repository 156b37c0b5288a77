"""MIUB: the properties of docs/miub.md on synthetic tensors, then the collector on a tiny PEFT Llama."""

import math

import numpy as np
import peft
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import jensenshannon

from orchestrator.spec.sections import MiubSpec
from trainables import miub
from trainables.data import IGNORE_INDEX
from trainables.evaluation import evaluate
from trainables.miub import (
    Estimator,
    MiubCollector,
    estimator_names,
    get_estimator,
    miub_tokens,
    register_estimator,
    top_k_indices,
)

LN2 = math.log(2.0)


# --- references computed independently in float64 numpy --------------------------------------


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def _ref_p_q(h, g, top_k, temperature=1.0):
    """P and Q for one token, straight from the definition."""
    idx = np.argsort(-np.abs(h))[: min(top_k, len(h))]
    hk, gk = np.abs(h[idx]), np.abs(g[idx])
    u = hk / np.sqrt(np.mean(hk**2))
    rms_g = np.sqrt(np.mean(gk**2))
    v = gk / rms_g if rms_g > 0 else np.zeros_like(gk)
    return _softmax(u / temperature), _softmax(v / temperature)


def _ref_miub(h, g, top_k, temperature=1.0):
    p, q = _ref_p_q(h, g, top_k, temperature)
    return LN2 - jensenshannon(p, q, base=math.e) ** 2


# --- the formula ------------------------------------------------------------------------------


def test_hand_checked_example():
    # h = [1, -2, 2], g = [5, 0, 3], top_k = 2, T = 1.
    # K = {1, 2} (|h| = 2, 2 beat 1).  |h_K| = [2, 2] -> u = [1, 1] -> P = [1/2, 1/2].
    # |g_K| = [0, 3], rms = 3/sqrt(2) -> v = [0, sqrt(2)], e^sqrt(2) = 4.113250
    #   Q = [1/(1 + 4.113250), 4.113250/(1 + 4.113250)] = [0.195570, 0.804430]
    #   M = (P + Q)/2 = [0.347785, 0.652215]
    # KL(P||M) = 0.5 ln(0.5/0.347785) + 0.5 ln(0.5/0.652215)
    #          = 0.5 (0.363023) + 0.5 (-0.265766) = 0.048629
    # KL(Q||M) = 0.195570 ln(0.195570/0.347785) + 0.804430 ln(0.804430/0.652215)
    #          = 0.195570 (-0.575665) + 0.804430 (0.209760) = 0.056154
    # JSD = (0.048629 + 0.056154)/2 = 0.052391;  miub = ln 2 - JSD = 0.693147 - 0.052391 = 0.640756
    value = miub_tokens(torch.tensor([1.0, -2.0, 2.0]), torch.tensor([5.0, 0.0, 3.0]), top_k=2)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(0.640756, abs=1e-6)


def test_g_proportional_to_h_on_K_gives_ln2():
    torch.manual_seed(0)
    h = torch.randn(64, 48)
    g = torch.randn(64, 48)  # arbitrary off K
    _, idx = h.abs().topk(8, dim=-1)
    signs = torch.where(torch.rand(64, 8) < 0.5, -1.0, 1.0)  # only magnitudes matter
    g.scatter_(-1, idx, 3.7 * h.gather(-1, idx) * signs)
    values = miub_tokens(h, g, top_k=8)
    assert torch.equal(values, torch.full_like(values, LN2))  # exactly: float32(ln 2) itself
    assert not torch.allclose(miub_tokens(h, torch.randn(64, 48), top_k=8), values, atol=1e-3)


finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    d=st.integers(1, 40),
    top_k=st.integers(1, 48),
    temperature=st.one_of(st.floats(0.01, 100.0), st.floats(torch.finfo(torch.float32).tiny, 1e30)),
)
def test_range_is_zero_to_ln2(data, d, top_k, temperature):
    h = torch.from_numpy(data.draw(arrays(np.float32, (3, d), elements=finite32)))
    g = torch.from_numpy(data.draw(arrays(np.float32, (3, d), elements=finite32)))
    values = miub_tokens(h, g, top_k=top_k, temperature=temperature)
    assert values.shape == (3,)
    assert torch.isfinite(values).all()
    assert (values >= 0).all() and (values <= LN2).all()


@pytest.mark.parametrize("c1, c2", [(1e-3, 1.0), (1.0, 250.0), (17.0, 1e-4), (1e4, 1e4)])
def test_scale_invariance(c1, c2):
    torch.manual_seed(1)
    h, g = torch.randn(128, 64), torch.randn(128, 64)
    base = miub_tokens(h, g)
    assert torch.allclose(miub_tokens(c1 * h, c2 * g), base, atol=1e-6)


def test_low_temperature_with_different_argmax_tends_to_zero():
    torch.manual_seed(2)
    h = torch.randn(32, 16)
    g = torch.randn(32, 16)
    _, idx = h.abs().topk(4, dim=-1)  # idx[:, 0] is the argmax of |h| on K
    g.scatter_(-1, idx, torch.rand(32, 4))
    g.scatter_(-1, idx[:, 1:2], torch.full((32, 1), 5.0))  # |g| peaks elsewhere on K
    means = [miub_tokens(h, g, top_k=4, temperature=t).mean().item() for t in (1.0, 0.1, 0.01, 0.001)]
    assert means == sorted(means, reverse=True)
    assert means[0] > 0.3 and means[-1] < 1e-6


def test_agrees_with_scipy_jensenshannon():
    rng = np.random.default_rng(3)
    for d, top_k, temperature in [(64, 32, 1.0), (20, 32, 0.5), (128, 8, 2.0), (7, 3, 0.2)]:
        h = rng.standard_normal((50, d)) * rng.uniform(0.1, 10.0, (50, 1))
        g = rng.standard_normal((50, d)) * rng.uniform(0.01, 1.0, (50, 1))
        got = miub_tokens(torch.from_numpy(h), torch.from_numpy(g), top_k, temperature).double().numpy()
        want = np.array([_ref_miub(h[i], g[i], top_k, temperature) for i in range(50)])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape, k", [((3, 5, 128), 32), ((40, 7), 3), ((9, 16), 16), ((4, 8), 20), ((0, 64), 32)])
def test_cpu_selection_picks_the_same_set_as_torch_topk(shape, k):
    a = torch.randn(*shape, generator=torch.Generator().manual_seed(5)).abs()  # no ties
    got = top_k_indices(a, min(k, shape[-1]))
    want = a.topk(min(k, shape[-1]), dim=-1).indices
    assert got.shape == want.shape and got.dtype == torch.int64
    assert torch.equal(got.sort(dim=-1).values, want.sort(dim=-1).values)


def test_bfloat16_inputs_are_computed_in_float32():
    torch.manual_seed(4)
    h, g = torch.randn(16, 64).bfloat16(), torch.randn(16, 64).bfloat16()
    got = miub_tokens(h, g)
    assert got.dtype == torch.float32
    assert torch.allclose(got, miub_tokens(h.float(), g.float()), atol=0)


@pytest.mark.parametrize("top_k, temperature", [(0, 1.0), (2.5, 1.0), (8, 0.0), (8, -1.0), (8, 1e-40), (8, float("inf"))])
def test_bad_parameters_are_rejected(top_k, temperature):
    with pytest.raises(ValueError):
        miub_tokens(torch.ones(2, 4), torch.ones(2, 4), top_k=top_k, temperature=temperature)


# --- the registry -----------------------------------------------------------------------------


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the estimator registry, so registrations here do not leak."""
    monkeypatch.setattr(miub.registry, "_REGISTRY", dict(miub.registry._REGISTRY))


def test_default_estimator_is_registered():
    assert "jsd_topk" in estimator_names()
    assert get_estimator("jsd_topk").name == "jsd_topk"


def test_unknown_estimator_lists_registered_names():
    with pytest.raises(ValueError, match="nope.*jsd_topk"):
        get_estimator("nope")


def test_duplicate_registration_names_the_duplicate(registry):
    with pytest.raises(ValueError, match="'jsd_topk'"):

        @register_estimator("jsd_topk")
        class Again(Estimator):
            def batch_stats(self, h, g, mask):
                return torch.zeros(2, dtype=torch.float64)

            def finalize(self, stats):
                return 0.0


# --- the collector on a tiny PEFT Llama -------------------------------------------------------


def _tiny_peft_llama(nonzero_b: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    model = peft.get_peft_model(
        transformers.LlamaForCausalLM(config),
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    if nonzero_b:
        for name, param in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.5)
    return model.eval()


def _lora_layers(model):
    from peft.tuners.lora.layer import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def _batch(batch: int = 3, seq: int = 12, lengths=(12, 7, 4), seed: int = 5):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (batch, seq), generator=gen)
    mask = torch.zeros(batch, seq, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    return ids, mask


def _evaluate(model, batches, **kwargs):
    with torch.no_grad(), MiubCollector(model, **kwargs) as collector:
        for ids, mask in batches:
            collector.set_mask(mask)
            model(input_ids=ids, attention_mask=mask)
    return collector


def test_module_names_are_sorted_and_shortened():
    collector = MiubCollector(_tiny_peft_llama())
    assert collector.module_names == [
        "model.layers.0.self_attn.q_proj",
        "model.layers.0.self_attn.v_proj",
        "model.layers.1.self_attn.q_proj",
        "model.layers.1.self_attn.v_proj",
    ]


def test_names_are_the_same_through_a_wrapper():
    class Engine(torch.nn.Module):  # stands in for a DeepSpeed engine or DDP: the model is `.module`
        def __init__(self, module):
            super().__init__()
            self.module = module

    model = _tiny_peft_llama()
    assert MiubCollector(Engine(model)).module_names == MiubCollector(model).module_names


def test_captured_h_plus_g_equals_module_output(registry):
    captured = []

    @register_estimator("capture")
    class Capture(Estimator):
        def batch_stats(self, h, g, mask):
            captured.append((h.clone(), g.clone()))
            return torch.zeros(1, dtype=torch.float64)

        def finalize(self, stats):
            return 0.0

    model = _tiny_peft_llama()
    outputs = []
    handles = [m.register_forward_hook(lambda m, i, o: outputs.append(o)) for m in _lora_layers(model).values()]
    _evaluate(model, [_batch()], estimator="capture")
    for handle in handles:
        handle.remove()
    assert len(captured) == len(outputs) == 4
    for (h, g), out in zip(captured, outputs):
        assert g.abs().max() > 1e-2  # the LoRA branch is really there
        torch.testing.assert_close(h + g, out, rtol=1e-5, atol=1e-6)


def test_no_forward_hooks_remain_after_the_block():
    model = _tiny_peft_llama()
    with MiubCollector(model) as collector:
        assert sum(len(m._forward_hooks) for m in model.modules()) == 8  # base_layer + lora_B, 4 modules
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    with pytest.raises(RuntimeError, match="boom"), collector:
        raise RuntimeError("boom")
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def _labelled(ids, mask):
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.where(mask.bool(), ids, IGNORE_INDEX)}


MODULES = [f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "v_proj")]


def test_an_evaluation_pass_reports_miub_and_leaves_no_hooks():
    model = _tiny_peft_llama()
    ids, mask = _batch()
    reported = evaluate(model, [_labelled(ids, mask)], miub=MiubSpec(top_k=32, temperature=1.0))
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    assert reported["miub_estimator"] == "jsd_topk" and sorted(reported["miub_layers"]) == MODULES
    assert 0 < reported["miub"] < LN2
    assert reported["miub"] == pytest.approx(_evaluate(model, [(ids, mask)]).result()[0], abs=1e-9)
    assert "miub" not in evaluate(model, [_labelled(ids, mask)], miub=MiubSpec(enabled=False))


def test_padding_tokens_do_not_change_the_result():
    model = _tiny_peft_llama()
    ids, mask = _batch()
    other_pad = torch.where(mask.bool(), ids, (ids + 17) % 64)
    padded = _evaluate(model, [(ids, mask)]).result()
    repadded = _evaluate(model, [(other_pad, mask)]).result()
    unpadded = _evaluate(model, [(ids[i : i + 1, :n], mask[i : i + 1, :n]) for i, n in enumerate((12, 7, 4))])
    assert padded[0] == pytest.approx(repadded[0], abs=1e-6)
    assert padded[0] == pytest.approx(unpadded.result()[0], abs=1e-6)
    assert padded[1] == pytest.approx(unpadded.result()[1], abs=1e-6)
    unmasked = _evaluate(model, [(other_pad, torch.ones_like(mask))]).result()[0]
    assert abs(unmasked - padded[0]) > 1e-4  # the padding would matter without the mask


def test_zero_B_gives_uniform_Q(registry):
    model = _tiny_peft_llama(nonzero_b=False)
    layers = _lora_layers(model)
    hs = {}
    handles = [
        layer.base_layer.register_forward_hook(lambda m, i, o, name=name: hs.setdefault(name, o.detach().clone()))
        for name, layer in layers.items()
    ]
    ids, mask = _batch()
    miub_value, per_layer = _evaluate(model, [(ids, mask)]).result()
    for handle in handles:
        handle.remove()
    keep = mask.bool().numpy()
    expected = {}
    for name, h in hs.items():
        tokens = h.numpy()[keep].astype(np.float64)
        per_token = []
        for token in tokens:
            p, q = _ref_p_q(token, np.zeros_like(token), 32)
            np.testing.assert_allclose(q, np.full(len(q), 1 / len(q)))
            per_token.append(LN2 - jensenshannon(p, q, base=math.e) ** 2)
        expected[name.removeprefix("base_model.model.")] = float(np.mean(per_token))
    assert per_layer.keys() == expected.keys()
    for name, value in expected.items():
        assert per_layer[name] == pytest.approx(value, abs=1e-6)
        assert value < LN2 - 1e-3  # P is not uniform, so this differs from the g-proportional case
    assert miub_value == pytest.approx(np.mean(list(expected.values())), abs=1e-6)


@pytest.mark.slow
def test_two_workers_give_the_single_pass_figure():
    model = _tiny_peft_llama()
    ids, mask = _batch(batch=5, lengths=(12, 3, 9, 5, 11), seed=6)
    single = _evaluate(model, [(ids[:2], mask[:2]), (ids[2:], mask[2:])])
    shard_a = _evaluate(model, [(ids[:1], mask[:1])])  # 12 tokens
    shard_b = _evaluate(model, [(ids[1:3], mask[1:3]), (ids[3:], mask[3:])])  # 28 tokens
    summed = shard_a.stats_tensor() + shard_b.stats_tensor()  # what an all-reduce SUM does
    assert summed.dtype == torch.float64 and summed.shape == (4, 2)
    miub_1, layers_1 = single.result()
    miub_2, layers_2 = single.result(summed)
    assert miub_2 == pytest.approx(miub_1, abs=1e-6)
    assert layers_2 == pytest.approx(layers_1, abs=1e-6)
    naive = (shard_a.result()[0] + shard_b.result()[0]) / 2  # averaging per-worker means is wrong
    assert abs(naive - miub_1) > 1e-5


def test_a_second_estimator_runs_and_is_named(registry):
    @register_estimator("cosine")
    class Cosine(Estimator):
        """Mean |cos(h, g)| over real tokens (a toy alternative)."""

        def batch_stats(self, h, g, mask):
            cos = torch.nn.functional.cosine_similarity(h, g, dim=-1).abs()
            mask = mask.bool()
            return torch.stack([cos[mask].sum().double(), mask.sum().double()])

        def finalize(self, stats):
            return (stats[0] / stats[1]).item()

    model = _tiny_peft_llama()
    ids, mask = _batch()
    # Through the trainable's evaluation pass: its name and values reach the reported metrics.
    reported = evaluate(model, [_labelled(ids, mask)], miub=MiubSpec(estimator="cosine"))
    assert reported["miub_estimator"] == "cosine" and sorted(reported["miub_layers"]) == MODULES
    collector = _evaluate(model, [(ids, mask)], estimator="cosine")
    assert collector.estimator_name == "cosine"
    assert reported["miub"] == pytest.approx(collector.result()[0], abs=1e-9)
    value, per_layer = collector.result()
    default_value, _ = _evaluate(model, [(ids, mask)]).result()
    assert 0 < value < 1 and value != pytest.approx(default_value, abs=1e-3)
    assert value == pytest.approx(np.mean(list(per_layer.values())))


def test_dora_is_refused():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
    )  # fmt: skip
    model = peft.get_peft_model(
        transformers.LlamaForCausalLM(config),
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], use_dora=True),
    )
    with pytest.raises(ValueError, match="plain LoRA"):
        with MiubCollector(model):
            pass
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_dropout_in_train_mode_warns():
    model = _tiny_peft_llama()
    for layer in _lora_layers(model).values():
        layer.lora_dropout["default"] = torch.nn.Dropout(0.1)
    model.train()
    with pytest.warns(UserWarning, match="eval"):
        _evaluate(model, [_batch()])
