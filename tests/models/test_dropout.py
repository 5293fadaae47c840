"""Dropout masks drawn 16 bits an element (``keep_mask``): the right keep rate, an exact unbiasing
scale, every element independent (no pattern across the four elements one 64-bit draw covers),
reproducible from ``torch.manual_seed``; the mask comes in the activations' dtype."""

from __future__ import annotations

import pytest
import torch

from neurofm.models.layers.attention import Dropout
from neurofm.models.layers.attention_cpu import keep_mask


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_keep_mask_rate_scale_and_independence(p):
    torch.manual_seed(0)
    like = torch.empty(1001, 999)  # not a multiple of 4 elements
    kept, scale = keep_mask(like, p)
    assert kept.shape == like.shape and kept.dtype == like.dtype
    assert set(kept.unique().tolist()) <= {0, 1}
    q = round((1 - p) * 65536) / 65536  # the exact keep probability
    assert scale == 1 / q and abs(q - (1 - p)) <= 0.5 / 65536
    n = kept.numel()
    rate = kept.double().mean().item()
    assert abs(rate - q) < 5 * (q * (1 - q) / n) ** 0.5  # binomial: 5 sigma
    # each of the four 16-bit lanes of a 64-bit draw keeps at the same rate
    lanes = kept.flatten()[: n // 4 * 4].view(-1, 4).double().mean(0)
    assert (lanes - q).abs().max().item() < 5 * (q * (1 - q) / (n / 4)) ** 0.5
    torch.manual_seed(0)
    assert torch.equal(keep_mask(like, p)[0], kept)  # seeded like any draw


def test_dropout_is_unbiased_and_its_gradient_masked():
    torch.manual_seed(1)
    drop = Dropout(0.2).train()
    x = torch.ones(400, 1000, requires_grad=True)
    y = drop(x)
    values = set(y.unique().tolist())
    assert values == {0.0, torch.tensor(65536 / round(0.8 * 65536)).item()}  # float32
    assert abs(y.mean().item() - 1.0) < 5 * (0.25 / y.numel()) ** 0.5
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * mask * scale)/dx = mask * scale
    assert drop.eval()(x) is x
