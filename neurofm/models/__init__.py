"""Models, torch modules only: ``poyo`` (spikes -> behaviour), ``samba`` (EEG -> fMRI)."""
