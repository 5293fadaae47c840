"""Where raw files come from: local folders (``local``), later the DANDI archive and BIDS."""
