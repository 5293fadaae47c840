"""The CPU windowed attention computes what scaled_dot_product_attention computes: outputs and
gradients, for cross- and self-attention, padded keys, distinct-token contexts, and POYO whole;
its dropout has the right distribution and a gradient consistent with its forward pass."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import neurofm.models.layers.attention as attention
import neurofm.models.layers.attention_cpu as attention_cpu
from neurofm.models.layers import Dropout, RotaryCrossAttention, RotarySelfAttention
from neurofm.models.layers.attention import geglu
from neurofm.models.layers.rotary import RotaryTimeEmbedding
from neurofm.models.poyo import POYO, POYOConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIM, HEADS, DIM_HEAD = 16, 2, 16  # 4 rotated pairs per head


@pytest.fixture
def reference(monkeypatch):
    """Within the fixture's use, force the whole-batch SDPA path."""

    def use_sdpa() -> None:
        monkeypatch.setattr(attention, "windowed_lengths", lambda *args: None)

    return use_sdpa


def _angles(times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return RotaryTimeEmbedding(DIM_HEAD, DIM_HEAD // 2)(times)


def _run(module, args, kwargs=None):
    """Output and gradients (inputs first, then parameters) of a sum-of-squares loss."""
    for p in module.parameters():
        p.grad = None
    leaves = [a for a in args if torch.is_tensor(a) and a.requires_grad]
    for leaf in leaves:
        leaf.grad = None
    out = module(*args, **(kwargs or {}))
    (out**2).sum().backward()
    grads = [leaf.grad.clone() for leaf in leaves]
    grads += [p.grad.clone() for p in module.parameters()]
    return out.detach(), grads


def _assert_same(a, b, tol=1e-10):
    (out_a, grads_a), (out_b, grads_b) = a, b
    torch.testing.assert_close(out_a, out_b, atol=tol, rtol=tol)
    assert len(grads_a) == len(grads_b)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb, atol=tol, rtol=tol)


@pytest.mark.parametrize("rotate_value", [True, False])
def test_cross_attention_matches_sdpa_with_padded_keys(reference, rotate_value):
    torch.manual_seed(0)
    module = RotaryCrossAttention(DIM, HEADS, DIM_HEAD, rotate_value=rotate_value).double()
    x = torch.randn(3, 5, DIM, dtype=torch.float64, requires_grad=True)
    context = torch.randn(3, 11, DIM, dtype=torch.float64, requires_grad=True)
    q_angles = _angles(torch.rand(3, 5))
    k_angles = _angles(torch.rand(3, 11))
    mask = torch.arange(11)[None, :] < torch.tensor([11, 7, 3])[:, None]
    args = (x, context, q_angles, k_angles, mask)
    assert attention_cpu.windowed_lengths(x, q_angles, DIM_HEAD, mask, 3, 11) == [11, 7, 3]
    windowed = _run(module, args)
    # padding keys get no gradient
    assert windowed[1][1][1, 7:].abs().max() == 0 and windowed[1][1][2, 3:].abs().max() == 0
    reference()
    _assert_same(windowed, _run(module, args))


@pytest.mark.parametrize("group_weights", [1 << 18, 1])
@pytest.mark.parametrize("rotate_value", [True, False])
def test_cross_attention_on_distinct_tokens_matches_dense_context(
    reference, monkeypatch, rotate_value, group_weights
):
    """Windows grouped, or (GROUP_WEIGHTS 1) one at a time on their gathered keys and values
    rotated in place."""
    monkeypatch.setattr(attention_cpu, "GROUP_WEIGHTS", group_weights)
    torch.manual_seed(1)
    module = RotaryCrossAttention(DIM, HEADS, DIM_HEAD, rotate_value=rotate_value).double()
    x = torch.randn(2, 4, DIM, dtype=torch.float64, requires_grad=True)
    table = torch.randn(6, DIM, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 6, (2, 9))
    mask = torch.arange(9)[None, :] < torch.tensor([9, 5])[:, None]
    q_angles, k_angles = _angles(torch.rand(2, 4)), _angles(torch.rand(2, 9))
    args = (x, table, q_angles, k_angles, mask)
    windowed = _run(module, args, {"context_index": index})
    reference()
    _assert_same(windowed, _run(module, args, {"context_index": index}))
    # ... and what the dense context gives, gathered by hand
    dense = table.detach()[index].requires_grad_()
    out, grads = _run(module, (x, dense, q_angles, k_angles, mask))
    torch.testing.assert_close(out, windowed[0], atol=1e-10, rtol=1e-10)
    table_grad = torch.zeros_like(table).index_add_(0, index.flatten(), grads[1].flatten(0, 1))
    torch.testing.assert_close(table_grad, windowed[1][1], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("group_weights", [1 << 18, 1])
def test_cross_attention_with_constant_queries_gives_the_same_key_gradients(
    monkeypatch, group_weights
):
    """Queries of frozen inputs (POYO's latents when only unit embeddings are adapted) get no
    gradient, and the keys' gradients are those of the full backward pass."""
    monkeypatch.setattr(attention_cpu, "GROUP_WEIGHTS", group_weights)
    torch.manual_seed(11)
    module = RotaryCrossAttention(DIM, HEADS, DIM_HEAD, dropout=0.2, rotate_value=True).double()
    x = torch.randn(2, 4, DIM, dtype=torch.float64)
    table = torch.randn(6, DIM, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 6, (2, 9))
    mask = torch.arange(9)[None, :] < torch.tensor([9, 5])[:, None]
    args = (x, table, _angles(torch.rand(2, 4)), _angles(torch.rand(2, 9)), mask)

    def table_grad():
        torch.manual_seed(0)
        out = module(*args, context_index=index)
        return torch.autograd.grad((out**2).sum(), table)[0]

    full = table_grad()
    for p in [module.norm.weight, module.norm.bias, module.to_q.weight]:
        p.requires_grad_(False)
    torch.testing.assert_close(table_grad(), full, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("group_weights", [1 << 18, 1])
@pytest.mark.parametrize("rotate_value", [True, False])
def test_self_attention_matches_sdpa(reference, monkeypatch, rotate_value, group_weights):
    """Windows grouped, or (GROUP_WEIGHTS 1, values rotated) one at a time on their
    projections rotated in place."""
    monkeypatch.setattr(attention_cpu, "GROUP_WEIGHTS", group_weights)
    torch.manual_seed(2)
    module = RotarySelfAttention(DIM, 4, DIM_HEAD, rotate_value=rotate_value).double()
    x = torch.randn(5, 8, DIM, dtype=torch.float64, requires_grad=True)
    angles = _angles(torch.rand(5, 8))
    windowed = _run(module, (x, angles))
    reference()
    _assert_same(windowed, _run(module, (x, angles)))


@pytest.mark.parametrize("group_weights", [1 << 18, 1])
def test_masked_self_attention_matches_sdpa_group_by_group(reference, monkeypatch, group_weights):
    """Self-attention projects each group of windows inside the windowed path: padded keys,
    groups of one window (GROUP_WEIGHTS 1) or of all, outputs and every gradient."""
    monkeypatch.setattr(attention_cpu, "GROUP_WEIGHTS", group_weights)
    torch.manual_seed(7)
    module = RotarySelfAttention(DIM, 4, DIM_HEAD, rotate_value=True).double()
    x = torch.randn(4, 8, DIM, dtype=torch.float64, requires_grad=True)
    angles = _angles(torch.rand(4, 8))
    mask = torch.arange(8)[None, :] < torch.tensor([8, 5, 5, 2])[:, None]
    windowed = _run(module, (x, angles, mask))
    reference()
    _assert_same(windowed, _run(module, (x, angles, mask)))


@pytest.mark.parametrize("rotate_value", [True, False])
def test_inference_matches_sdpa_path(reference, monkeypatch, rotate_value):
    """Without gradients or dropout the windowed path takes the fused kernel per group: same
    outputs for masked self-attention and padded distinct-token cross-attention, with and
    without the outputs' counter-rotation."""
    monkeypatch.setattr(attention_cpu, "GROUP_WEIGHTS", 1)
    torch.manual_seed(10)
    self_attn = RotarySelfAttention(DIM, 4, DIM_HEAD, rotate_value=rotate_value).double().eval()
    cross = RotaryCrossAttention(DIM, HEADS, DIM_HEAD, dropout=0.2, rotate_value=rotate_value)
    cross = cross.double().eval()
    x = torch.randn(3, 8, DIM, dtype=torch.float64)
    angles = _angles(torch.rand(3, 8))
    mask = torch.arange(8)[None, :] < torch.tensor([8, 5, 2])[:, None]
    table = torch.randn(6, DIM, dtype=torch.float64)
    index = torch.randint(0, 6, (3, 8))
    k_angles = _angles(torch.rand(3, 8))

    def both():
        with torch.no_grad():
            return (
                self_attn(x, angles, mask),
                cross(x, table[index], angles, k_angles, mask),
                cross(x, table, angles, k_angles, mask, context_index=index),
            )

    inputs = (x.clone(), table.clone())
    windowed = both()
    # the projections are rotated in place, never the inputs
    assert torch.equal(x, inputs[0]) and torch.equal(table, inputs[1])
    reference()
    for got, expected in zip(windowed, both(), strict=True):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("padded", [True, False])
def test_self_attention_dropout_gradient_matches_finite_differences(monkeypatch, padded):
    """One window a group; unpadded, the projections are rotated in place."""
    monkeypatch.setattr(attention_cpu, "GROUP_WEIGHTS", 1)
    torch.manual_seed(8)
    module = RotarySelfAttention(8, 2, 8, dropout=0.3, rotate_value=True).double().train()
    angles = RotaryTimeEmbedding(8, 4)(torch.rand(3, 4))
    lengths = [4, 3, 0] if padded else [4, 4, 4]
    mask = torch.arange(4)[None, :] < torch.tensor(lengths)[:, None]
    geo = attention_cpu.HeadGeometry(2, 8, 0, 16, angles, angles, True, torch.float64)
    layout = geo.in_place_layout(module.to_qkv.weight, None, None, 4, lengths)
    assert layout == (None if padded else "qkv")

    def f(x):
        torch.manual_seed(0)
        return module(x, angles, mask)

    def g(weight):  # the projection's weight gradient, taken group by group
        torch.manual_seed(0)
        return torch.func.functional_call(module, {"to_qkv.weight": weight}, (x, angles, mask))

    x = torch.randn(3, 4, 8, dtype=torch.float64, requires_grad=True)
    assert not torch.equal(f(x), module.eval()(x, angles, mask))
    module.train()
    assert torch.autograd.gradcheck(f, (x,))
    x = x.detach()
    assert torch.autograd.gradcheck(g, (module.to_qkv.weight.detach().clone().requires_grad_(),))


def test_a_window_without_keys_attends_to_nothing():
    torch.manual_seed(3)
    module = RotaryCrossAttention(DIM, HEADS, DIM_HEAD, dropout=0.2, rotate_value=True)
    x = torch.randn(2, 4, DIM, requires_grad=True)
    context = torch.randn(2, 6, DIM, requires_grad=True)
    mask = torch.tensor([[True] * 6, [False] * 6])
    out = module(x, context, _angles(torch.rand(2, 4)), _angles(torch.rand(2, 6)), mask)
    out.sum().backward()
    torch.testing.assert_close(out[1], module.to_out.bias.expand(4, -1).detach())
    assert torch.isfinite(context.grad).all() and context.grad[1].abs().max() == 0


@pytest.mark.parametrize("distinct_tokens", [False, True])
def test_attention_dropout_gradient_matches_finite_differences(monkeypatch, distinct_tokens):
    """Same random stream on every call (seeded), so the function is deterministic. A context
    of distinct tokens is taken one window at a time, keys and values rotated in place."""
    monkeypatch.setattr(attention_cpu, "GROUP_WEIGHTS", 1 if distinct_tokens else 1 << 18)
    torch.manual_seed(4)
    module = RotaryCrossAttention(8, 2, 8, dropout=0.3, rotate_value=True).double().train()
    q_angles = RotaryTimeEmbedding(8, 4)(torch.rand(2, 3))
    k_angles = RotaryTimeEmbedding(8, 4)(torch.rand(2, 5))
    mask = torch.arange(5)[None, :] < torch.tensor([5, 4])[:, None]
    index = torch.randint(0, 4, (2, 5)) if distinct_tokens else None

    def f(x, context):
        torch.manual_seed(0)
        return module(x, context, q_angles, k_angles, mask, context_index=index)

    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    context = torch.randn(4 if distinct_tokens else 2, *(() if distinct_tokens else (5,)), 8)
    context = context.double().requires_grad_()
    eval_out = module.eval()(x, context, q_angles, k_angles, mask, context_index=index)
    module.train()
    assert not torch.equal(f(x, context), eval_out)
    assert torch.autograd.gradcheck(f, (x, context))


def test_geglu_is_a_times_gelu_of_gate_with_its_gradient():
    torch.manual_seed(9)
    h = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    a, gate = h.detach().chunk(2, dim=-1)
    torch.testing.assert_close(geglu(h), a * torch.nn.functional.gelu(gate), atol=0, rtol=0)
    assert torch.autograd.gradcheck(geglu, (h,))


def test_dropout_keeps_one_minus_p_and_rescales():
    torch.manual_seed(5)
    drop = Dropout(0.2)
    x = torch.ones(200_000)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.8) < 0.005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.8))
    assert drop.eval()(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)


def test_poyo_windowed_equals_sdpa_path(reference):
    """The whole model: distinct-token encoder, windowed attention everywhere."""
    torch.manual_seed(6)
    config = dataclasses.replace(
        POYOConfig(dim=16, depth=2, dim_head=16, cross_heads=2, self_heads=2),
        ffn_dropout=0.0,
        lin_dropout=0.0,
        atn_dropout=0.0,
        num_latents_per_step=2,
    )
    units = [f"s/u{u}" for u in range(7)]
    model = POYO(config, units, ["s", "t"]).double().train()
    n = torch.tensor([12, 9, 16])
    b, width = len(n), 16
    mask = torch.arange(width)[None, :] < n[:, None]
    inputs = {
        "input_unit_index": torch.randint(1, 8, (b, width)) * mask,
        "input_timestamps": torch.rand(b, width).sort(1).values,
        "input_token_type": torch.randint(0, 3, (b, width)) * mask,
        "input_mask": mask,
        "latent_index": torch.arange(2).repeat(8).expand(b, -1),
        "latent_timestamps": (torch.arange(16) // 2 * 0.125 + 0.0625).expand(b, -1),
        "session_index": torch.tensor([1, 2, 1]),
        "output_timestamps": torch.rand(b, 10),
    }

    def run():
        model.zero_grad()
        out = model(**inputs)
        (out**2).sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    windowed = run()
    reference()
    _assert_same(windowed, run())
