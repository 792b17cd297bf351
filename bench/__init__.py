"""Benchmark harness for llm_edge_agent (see bench/README.md)."""
