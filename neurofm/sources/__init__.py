"""Where raw files come from: local folders, the DANDI archive (``dandi``), BIDS (``bids``)."""
