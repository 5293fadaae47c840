"""Data efficiency of adapting POYO to a new session: code lengths and fine-tuning scores."""

from __future__ import annotations

import numpy as np
import pytest

from neurofm.data import Catalog
from neurofm.evaluation.fewshot import (
    _block_edges,
    gaussian_code_bits,
    prequential_code_length,
    session_r2,
)
from neurofm.evaluation.poyo import evaluate_poyo
from neurofm.training.finetune import finetune
from neurofm.training.poyo import load_poyo

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gaussian_code_length_and_prequential_blocks(pretrained_poyo, tmp_path):
    assert _block_edges(10) == [0, 1, 2, 4, 8, 10]
    # a perfect prediction costs only the quantisation + normalisation bits
    assert gaussian_code_bits(np.zeros((10, 2)), eps=0.5) == pytest.approx(
        20 * (1 + 0.5 * np.log2(2 * np.pi))
    )
    assert gaussian_code_bits(np.ones((1, 1))) > gaussian_code_bits(np.zeros((1, 1)))
    root, ckpt = pretrained_poyo
    code = prequential_code_length(ckpt, root / "cat_new", tmp_path, n_trials=2, epochs=1)
    assert [b[:2] for b in code.blocks] == [(0, 1), (1, 2)]
    assert code.bits == pytest.approx(sum(b[2] for b in code.blocks)) and code.samples > 0


def test_finetune_scored_by_session_r2_is_the_stitched_test_r2(pretrained_poyo, tmp_path):
    root, ckpt = pretrained_poyo
    result = finetune(
        ckpt,
        root / "cat_new",
        tmp_path / "ft",
        trials=5,
        epochs=1,
        progress=False,
        score=session_r2,
    )
    new_id = Catalog(root / "cat_new").ids[0]
    model, scaler, cfg = load_poyo(result.checkpoint)
    direct = evaluate_poyo(model, scaler, root / "cat_new", cfg.target, "test", [new_id])
    assert result.r2 == pytest.approx(direct.r2) and result.mean_r2 == pytest.approx(direct.mean_r2)
