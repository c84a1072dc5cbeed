"""Benchmarks: the proxy against direct HAPI, interleaved in the same run."""
