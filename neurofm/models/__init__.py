"""Models: POYO (spikes -> behaviour), baselines; SAMBA later. Import submodules directly."""
