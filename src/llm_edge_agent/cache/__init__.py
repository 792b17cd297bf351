"""The response cache: keys, the per-process L1, the shared Redis L2, stream replay."""
