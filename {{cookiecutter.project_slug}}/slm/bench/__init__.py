"""Measuring: the benchmark, the llama.cpp peer, the memory-bandwidth probe and the server load client."""
