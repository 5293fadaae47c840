"""Where raw files come from: local folders, DANDI (``dandi``), OpenNeuro (``openneuro``), BIDS."""
