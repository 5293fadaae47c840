"""Training: Lightning modules, their datasets and samplers, the trainer, fine-tuning, checkpoints.

Runs are crash-safe: ``last.ckpt`` is written atomically every epoch (and every N steps) and a
resumed run continues exactly (:mod:`neurofm.training.resume`); checkpoints are sealed with a
digest of their weights and checked before use (:mod:`neurofm.training.checkpoints`).

Scoring a trained model lives in :mod:`neurofm.evaluation`. Import submodules directly
(``neurofm.training.poyo``): Lightning costs ~5 s to import.
"""
