"""Generators of realistic data with known ground truth."""

from neurofm.synthetic.eeg_fmri import (
    generate_eeg_fmri_dataset,
    load_ground_truth,
    make_parcellation,
    simulate_run,
)
from neurofm.synthetic.reaching import (
    ReachingSession,
    SessionInfo,
    generate_reaching_dataset,
    session_ground_truth,
    simulate_session,
    write_session_nwb,
)

__all__ = [
    "ReachingSession",
    "SessionInfo",
    "generate_eeg_fmri_dataset",
    "generate_reaching_dataset",
    "load_ground_truth",
    "make_parcellation",
    "session_ground_truth",
    "simulate_run",
    "simulate_session",
    "write_session_nwb",
]
