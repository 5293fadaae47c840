"""Training and evaluation: Lightning modules and data modules, stitching, metrics, fine-tuning.

Import submodules directly (``neurofm.training.poyo``): Lightning costs ~5 s to import.
"""
