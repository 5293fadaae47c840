"""Tokenizers: windows of recordings -> model inputs (``spikes`` for POYO)."""
