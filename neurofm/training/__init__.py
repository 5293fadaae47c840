"""Training: Lightning modules, their datasets and samplers, the trainer, fine-tuning, checkpoints.

Scoring a trained model lives in :mod:`neurofm.evaluation`. Import submodules directly
(``neurofm.training.poyo``): Lightning costs ~5 s to import.
"""
