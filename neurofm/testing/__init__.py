"""Test infrastructure: local DANDI and OpenNeuro servers, dataset replicas. Never imported by
the library proper (only by tests, the demo and ``neurofm serve``)."""
