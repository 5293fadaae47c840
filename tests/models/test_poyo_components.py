"""POYO building blocks: parameter counts, rotary time, vocabularies, tokenizer, collate,
samplers, checkpoints loading safely (stitching: tests/evaluation/test_stitching.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.data import Intervals, Recording, RegularSeries, Spikes, Units
from neurofm.data.sampling import RandomWindowSampler, SequentialWindowSampler
from neurofm.errors import InvalidDataError, NeuroFMError, SpecError
from neurofm.models.layers.rotary import RotaryTimeEmbedding, rotate
from neurofm.models.layers.vocab import VocabEmbedding
from neurofm.models.poyo import POYO, POYOConfig, count_parameters
from neurofm.tokenizers.spikes import (
    TOKEN_END,
    TOKEN_SPIKE,
    TOKEN_START,
    SpikeTokenizer,
    TargetScaler,
    collate,
)
from neurofm.training.poyo import load_poyo

MODELS = Path(__file__).resolve().parents[2] / "models"
UNITS = [f"s{s}/u{u}" for s in range(2) for u in range(100)]


@pytest.mark.parametrize(
    ("name", "reference"), [("poyo_1.3m.yaml", 1_267_074), ("poyo_11.8m.yaml", 11_743_490)]
)
def test_parameter_counts_match_the_reference_configs(name, reference):
    model = POYO(POYOConfig.from_yaml(MODELS / name), UNITS, ["s0", "s1"])
    assert abs(count_parameters(model) - reference) / reference < 0.02


def test_model_config_typo_is_a_clear_error(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("dim: 64\ndepht: 2\n")
    with pytest.raises(SpecError, match=r"m\.yaml: depht: unknown key \(expected one of: .*depth"):
        POYOConfig.from_yaml(bad)


def test_rotary_attention_scores_depend_only_on_time_differences():
    rot = RotaryTimeEmbedding(head_dim=16, rotate_dim=8)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(tq: float, tk: float) -> float:
        cq = rot(torch.tensor([[tq]], dtype=torch.float64))
        ck = rot(torch.tensor([[tk]], dtype=torch.float64))
        return float((rotate(q, cq) * rotate(k, ck)).sum())

    assert score(0.3, 0.1) == pytest.approx(score(0.9, 0.7), abs=1e-5)
    assert score(0.3, 0.1) != pytest.approx(score(0.3, 0.2), abs=1e-3)
    # counter-rotation undoes the rotation
    x = torch.randn(2, 3, 5, 16)
    angles = rot(torch.rand(2, 5))
    torch.testing.assert_close(rotate(rotate(x, angles), angles, inverse=True), x)


def test_rotary_angles_match_float64_over_hours_of_recording():
    # POYO's shortest period (1e-4 s) turns a float32 time into a useless phase after a
    # second; the angles are float64, reduced to [0, 2 pi) before float32 cos/sin: within 4e-7
    # of float64's (half a float32 ulp at 2 pi, plus cos's own rounding), at a window's small
    # times and at any time of a four-hour recording.
    rot = RotaryTimeEmbedding(head_dim=64, rotate_dim=32)
    t = torch.cat([torch.rand(500) * 1.0, torch.rand(500) * 3600 * 4]).to(torch.float64)[None]
    cos, sin = rot(t)
    assert cos.dtype == sin.dtype == torch.float32 and cos.shape == (1, 1, 1000, 16)
    angles = t[..., None] * rot.omega.to(torch.float64)
    torch.testing.assert_close(cos[:, 0].double(), torch.cos(angles), rtol=0, atol=4e-7)
    torch.testing.assert_close(sin[:, 0].double(), torch.sin(angles), rtol=0, atol=4e-7)


def test_vocab_extend_subset_and_checkpoint_round_trip():
    emb = VocabEmbedding(4, ["a", "b"], name="unit")
    before = emb.weight.detach().clone()
    assert emb.extend(["b", "c"]) == ["c"]
    torch.testing.assert_close(emb.weight[:3].detach(), before)  # old rows untouched
    assert list(emb.index(["c", "a"])) == [3, 1]
    with pytest.raises(InvalidDataError, match=r"1 unit id\(s\) not in the model's vocabulary"):
        emb.index(["a", "zz"])
    emb.subset(["c", "a"])
    assert emb.vocab == ["c", "a"] and emb.weight.shape == (3, 4)
    torch.testing.assert_close(emb.weight[2].detach(), before[1])
    other = VocabEmbedding(4, ["x"], name="unit")  # different size: adopts the checkpoint's
    other.load_state_dict(emb.state_dict())
    assert other.vocab == ["c", "a"]
    torch.testing.assert_close(other.weight, emb.weight)
    assert float(emb(torch.tensor([0])).detach().abs().sum()) == 0.0  # padding row is zero


def window_recording(n_units: int = 5, seed: int = 0) -> Recording:
    rng = np.random.default_rng(seed)
    n = 40
    times = np.sort(rng.uniform(0, 1, n))
    return Recording(
        "rec",
        {
            "spikes": Spikes(
                times, rng.integers(0, n_units, n), Units([f"u{i}" for i in range(n_units)])
            ),
            "hand_vel": RegularSeries(rng.normal(size=(100, 2)), 100.0),
        },
        duration=1.0,
        absolute_start=12.5,
    )


def make_tokenizer(model: POYO, **kwargs) -> SpikeTokenizer:
    c = model.config
    return SpikeTokenizer(
        model.unit_emb.index,
        model.session_emb.index,
        c.window_length,
        c.latent_step,
        c.num_latents_per_step,
        **kwargs,
    )


def test_tokenizer_emits_spike_start_end_tokens_latents_and_outputs():
    model = POYO(POYOConfig(), [f"rec/u{i}" for i in range(5)], ["rec"])
    window = window_recording()
    scaler = TargetScaler(np.array([1.0, -1.0]), np.array([2.0, 4.0]))
    item = make_tokenizer(model, scaler=scaler)(window)
    types = item["input_token_type"]
    assert (types == TOKEN_SPIKE).sum() == 40
    assert (types == TOKEN_START).sum() == (types == TOKEN_END).sum() == 5
    expected_rows = model.unit_emb.index([f"rec/u{i}" for i in window.spikes.unit_index])
    np.testing.assert_array_equal(item["input_unit_index"][:40], expected_rows)
    np.testing.assert_allclose(item["input_timestamps"][types == TOKEN_END], 1.0)
    assert len(item["latent_index"]) == 8 * 16
    np.testing.assert_allclose(item["latent_timestamps"][:16], 0.0625)
    np.testing.assert_allclose(
        item["output_values"], (window.hand_vel.data - [1.0, -1.0]) / [2.0, 4.0], rtol=1e-6
    )
    assert item["absolute_start"] == 12.5
    dropped = make_tokenizer(model, unit_dropout=(2, 3, 4), seed=1)(window)
    kept = (dropped["input_token_type"] == TOKEN_START).sum()
    assert 2 <= kept <= 4
    spikes_kept = set(dropped["input_unit_index"][dropped["input_token_type"] == TOKEN_SPIKE])
    assert spikes_kept <= set(dropped["input_unit_index"][dropped["input_token_type"] == 1])


def test_tokenizer_names_a_missing_target():
    model = POYO(POYOConfig(), [f"rec/u{i}" for i in range(5)], ["rec"])
    with pytest.raises(InvalidDataError, match="no target signal 'cursor_vel'"):
        make_tokenizer(model, target="cursor_vel")(window_recording())


def test_collate_pads_to_multiples_of_8_with_masks():
    model = POYO(POYOConfig(), [f"rec/u{i}" for i in range(5)], ["rec"])
    tok = make_tokenizer(model)
    a = tok(window_recording(seed=0))
    b = tok(window_recording(seed=1).window(0.0, 0.5))
    batch = collate([a, b])
    n = len(a["input_unit_index"])
    assert batch["input_unit_index"].shape[1] % 8 == 0
    assert batch["input_unit_index"].shape[1] >= max(n, len(b["input_unit_index"]))
    assert batch["input_mask"][0].sum() == n
    assert batch["output_mask"].sum(1).tolist() == [100, 50]
    out = model.eval()(**batch)
    assert out.shape == (2, batch["output_timestamps"].shape[1], 2)
    # padding tokens do not change the prediction
    alone = model(**collate([b]))
    torch.testing.assert_close(out[1, :50], alone[0, :50], atol=1e-5, rtol=1e-4)


def test_samplers_cover_domains_deterministically():
    domains = {"r": Intervals([0.0, 10.0], [5.5, 10.8])}
    random = RandomWindowSampler(domains, 1.0, seed=3)
    first, again = list(random.windows()), list(RandomWindowSampler(domains, 1.0, 3).windows())
    assert first == again and len(random) == len(first)
    for w in first:
        assert 0.0 <= w.start and w.end <= 5.5 and w.end - w.start == pytest.approx(1.0)
    starts = sorted(w.start for w in first)
    assert all(b - a >= 1.0 - 1e-9 for a, b in zip(starts, starts[1:], strict=False))
    random.set_epoch(1)
    assert random.windows() != first
    seq = SequentialWindowSampler(domains, 1.0, step=0.5).windows()
    assert seq[0].start == 0.0 and max(w.end for w in seq if w.start < 6) == pytest.approx(5.5)
    assert [w.start for w in seq if w.start >= 10] == [10.0]  # short interval: one window


def test_loading_a_foreign_checkpoint_is_refused(tmp_path):
    foreign = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(NeuroFMError, match="not a neurofm POYO checkpoint"):
        load_poyo(foreign)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.ckpt"
    torch.save({"neurofm": Evil()}, evil)
    with pytest.raises(NeuroFMError, match="not a loadable checkpoint"):
        load_poyo(evil)  # weights_only=True refuses to unpickle arbitrary objects
    with pytest.raises(NeuroFMError, match="no such checkpoint"):
        load_poyo(tmp_path / "missing.ckpt")
