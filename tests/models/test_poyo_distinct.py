"""POYO's distinct (unit, token type) pairs: the same as torch.unique's, faster on CPU."""

import pytest
import torch

from neurofm.models.poyo import _distinct


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (8, 1000)])
@pytest.mark.parametrize("high", [1, 5, 4000])
def test_distinct_equals_unique(shape: tuple[int, int], high: int) -> None:
    keys = torch.randint(0, high, shape, generator=torch.Generator().manual_seed(high))
    keys[0, 0] = high + 37  # a gap below the largest key
    values, inverse = _distinct(keys)
    expected_values, expected_inverse = torch.unique(keys, return_inverse=True)
    assert torch.equal(values, expected_values)
    assert torch.equal(inverse, expected_inverse)
    assert inverse.shape == keys.shape and inverse.dtype == torch.int64
    assert torch.equal(values[inverse], keys)


def test_distinct_of_nothing_of_negative_keys_and_of_a_vast_range() -> None:
    empty = torch.zeros(2, 0, dtype=torch.int64)
    values, inverse = _distinct(empty)
    assert values.numel() == 0 and inverse.shape == (2, 0)
    keys = torch.tensor([[3, -1, 3], [0, -1, 7]])
    values, inverse = _distinct(keys)
    assert values.tolist() == [-1, 0, 3, 7]
    assert torch.equal(values[inverse], keys)
    sparse = torch.tensor([[10**9, 5, 10**9], [7, 5, 3]])  # counts would span 10^9 keys
    values, inverse = _distinct(sparse)
    assert values.tolist() == [3, 5, 7, 10**9]
    assert torch.equal(values[inverse], sparse)
