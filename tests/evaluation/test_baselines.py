"""Baselines scored on the same points as the models."""

from __future__ import annotations

import numpy as np
import pytest

from neurofm.baselines.hrf_ridge import HRFRidge
from neurofm.data.catalog import Catalog
from neurofm.errors import NeuroFMError
from neurofm.evaluation.baselines import evaluate_baselines, evaluate_ridge


def test_ridge_is_fitted_on_every_train_domain_and_scored_on_the_split(tiny_samba_catalog):
    scores = evaluate_ridge(tiny_samba_catalog, "test")
    assert set(scores) == {"sub-01_run-1", "sub-02_run-1"}
    cat = Catalog(tiny_samba_catalog)
    recs = [cat.open(rid) for rid in cat.ids]
    try:
        direct = HRFRidge().fit(recs).evaluate(recs, "test")
    finally:
        for rec in recs:
            rec.close()
    for rid, s in scores.items():
        assert s["r2"] == pytest.approx(direct[rid]["r2"])
        np.testing.assert_allclose(s["r_per_parcel"], direct[rid]["r_per_parcel"])


def test_unknown_spike_baselines_are_refused(tiny_samba_catalog):
    with pytest.raises(NeuroFMError, match=r"\['ridge'\] are not spike baselines"):
        evaluate_baselines(tiny_samba_catalog, "hand_vel", "test", ["ridge"])
