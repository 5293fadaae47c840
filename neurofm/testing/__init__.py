"""Test infrastructure: the local DANDI server. The library proper never imports this package."""
