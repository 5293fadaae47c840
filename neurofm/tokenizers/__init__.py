"""Tokenizers: recording windows -> model inputs (``spikes``: POYO, ``multimodal``: SAMBA)."""
