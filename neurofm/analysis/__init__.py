"""Analyses that run on synthetic tasks and on recordings of the data layer.

Modules
-------
learning_regime
    Rank of the initial recurrent weights and rich vs lazy learning (Liu et al., ICLR 2024):
    initialisers, metrics, the two-layer linear theory check and the sweep runner.
bias_only
    Networks with frozen random weights that learn only their biases (Williams et al.,
    ICLR 2025): feed-forward width sweeps, multi-task bias banks, bias-only RNNs.
rank
    Effective-rank measures of a weight matrix.
initializers
    Low-rank, spectrally shaped, task-aligned and data-driven initial weights.
metrics
    Weight change, representation and tangent-kernel alignment (empirical NTK), sign similarity.
tasks
    Native NeuroGym-style cognitive tasks, sequential digits and dynamical-system targets.
windows
    Tasks built from windows of a :class:`~neurofm.data.Recording` (binned spikes -> behaviour),
    connectivity estimates from a recording, and the recording section of the configs.
results
    Config loading with one-line errors, summaries, and the atomic results folder.
plots
    The figures of both studies.

The heavy modules import torch; importing this package itself is cheap.
"""
