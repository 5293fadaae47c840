"""The CPU feed-forward a block of tokens at a time computes what the op-by-op GEGLU block
computes: same outputs, same dropout mask, same gradients (inputs and every parameter), frozen
weights included."""

from __future__ import annotations

import pytest
import torch

import neurofm.models.layers.feedforward_cpu as feedforward_cpu
from neurofm.models.layers.attention import FeedForward, geglu

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _op_by_op(ff: FeedForward, x: torch.Tensor) -> torch.Tensor:
    return ff.down(ff.dropout(geglu(ff.up(ff.norm(x)))))


def _outputs_and_grads(f, ff: FeedForward, x: torch.Tensor, seed: int = 1):
    torch.manual_seed(seed)  # the same dropout mask for both paths
    out = f(x)
    leaves = [x] + [p for p in ff.parameters() if p.requires_grad]
    return out.detach(), torch.autograd.grad((out**2).sum(), leaves)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("block_floats", [1 << 17, 64 * 7])  # one block; blocks of 7 tokens
def test_blocks_of_tokens_equal_the_op_by_op_block(monkeypatch, training, block_floats):
    monkeypatch.setattr(feedforward_cpu, "BLOCK_FLOATS", block_floats)
    torch.manual_seed(0)
    ff = FeedForward(8, mult=4, dropout=0.3).double().train(training)
    x = torch.randn(3, 17, 8, dtype=torch.float64, requires_grad=True)
    fused = _outputs_and_grads(ff, ff, x)
    reference = _outputs_and_grads(lambda t: _op_by_op(ff, t), ff, x)
    torch.testing.assert_close(fused[0], reference[0], atol=1e-12, rtol=0)
    assert len(fused[1]) == 1 + 6
    for got, expected in zip(fused[1], reference[1], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-12)
    if training:  # the dropout mask is really applied: other seed, other output
        assert not torch.allclose(_outputs_and_grads(ff, ff, x, seed=2)[0], fused[0])


def test_gradient_with_dropout_matches_finite_differences(monkeypatch):
    monkeypatch.setattr(feedforward_cpu, "BLOCK_FLOATS", 32 * 5)
    torch.manual_seed(3)
    ff = FeedForward(4, mult=4, dropout=0.2).double().train()
    x = torch.randn(2, 6, 4, dtype=torch.float64, requires_grad=True)

    def f(x, w_up, w_down):
        torch.manual_seed(0)
        return feedforward_cpu.geglu_feedforward(x, w_up, ff.up.bias, w_down, ff.down.bias, 0.2)

    weights = (ff.up.weight.detach().clone(), ff.down.weight.detach().clone())
    assert torch.autograd.gradcheck(f, (x, *(w.requires_grad_() for w in weights)))


def test_frozen_weights_get_no_gradient_and_the_input_gradient_is_unchanged():
    torch.manual_seed(4)
    ff = FeedForward(8, dropout=0.1).double().train()
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    _, (full_dx, *_) = _outputs_and_grads(ff, ff, x)
    for p in ff.parameters():
        p.requires_grad_(False)
    _, (frozen_dx,) = _outputs_and_grads(ff, ff, x)
    torch.testing.assert_close(frozen_dx, full_dx, atol=1e-12, rtol=0)
    assert all(p.grad is None for p in ff.parameters())


def test_inference_reuses_one_block_and_equals_the_op_by_op_block(monkeypatch):
    """Without gradients each block works in the same scratch rows: same outputs."""
    monkeypatch.setattr(feedforward_cpu, "BLOCK_FLOATS", 64 * 5)  # blocks of 5 tokens, 23 left
    torch.manual_seed(5)
    ff = FeedForward(8, mult=4, dropout=0.3).double().eval()
    x = torch.randn(2, 14, 8, dtype=torch.float64)

    def no_autograd(*args):
        raise AssertionError("inference went through the autograd Function")

    with torch.no_grad():
        expected = _op_by_op(ff, x)
        monkeypatch.setattr(feedforward_cpu._GEGLUFeedForward, "apply", no_autograd)
        torch.testing.assert_close(ff(x), expected, atol=1e-12, rtol=0)
