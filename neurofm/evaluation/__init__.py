"""Evaluation: one home for scoring every model on the same points.

- :mod:`~neurofm.evaluation.stitching`: overlapping windows -> whole-recording predictions.
- :mod:`~neurofm.evaluation.poyo`: POYO's stitched predictions and R^2 per session.
- :mod:`~neurofm.evaluation.samba`: SAMBA's stitched predictions, per-parcel scores, the
  time-shuffled control and stimulus decoding.
- :mod:`~neurofm.evaluation.baselines`: Wiener, GRU and HRF-ridge fitted on the train split and
  scored on the same points as the models.
- :mod:`~neurofm.evaluation.reports`: tables, JSON and plots for POYO and SAMBA alike.
- :mod:`~neurofm.evaluation.checkpoint`: score a saved checkpoint (the pipeline's evaluate step
  and ``neurofm evaluate``).
- :mod:`~neurofm.evaluation.fewshot`: fine-tuning scores, few-shot curves, prequential code
  length.

Import submodules directly (``neurofm.evaluation.poyo``): torch and Lightning are slow to import.
"""
