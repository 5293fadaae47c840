"""Mutation fuzzing in the test suite (issue 14.7): a fixed seed, a few dozen mutants per format.

Every mutant of an NWB, EDF, BDF, FIF, BrainVision, NIfTI or YAML input either reads correctly
or raises a neurofm error naming the file: see ``fuzzing.py`` for what is checked, and
``make fuzz`` for a long run with random seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
from fuzzing import FORMATS, Fuzzer

#: Mutants per format: sized so the whole module stays near a minute on a 2-core machine.
PER_FORMAT = {
    "nwb": 30,
    "edf": 40,
    "bdf": 25,
    "fif": 40,
    "brainvision": 45,
    "nifti": 25,
    "nifti-gz": 20,
    "yaml": 150,
}


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory):
    f = Fuzzer(tmp_path_factory.mktemp("fuzz"), limit=30.0)
    yield f
    f.stop()


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_mutant_reads_or_fails_cleanly(fmt, fuzzer):
    seed = 20240614 + FORMATS.index(fmt)
    result = fuzzer.campaign(np.random.default_rng(seed), [fmt], n=PER_FORMAT[fmt])
    assert result.tried == PER_FORMAT[fmt]
    print(f"{fmt}: {result.outcomes[fmt]}, slowest {result.slowest[0]:.2f} s ({result.slowest[1]})")
    assert not result.findings, "\n".join(f"{m}: {what}" for m, what in result.findings)
    # The mutants did exercise both paths (a fuzzer whose every input fails tests nothing).
    outcomes = result.outcomes[fmt]
    assert outcomes.get("error", 0) > 0
