"""Generators of realistic data with known ground truth."""

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
    "generate_reaching_dataset",
    "session_ground_truth",
    "simulate_session",
    "write_session_nwb",
]
