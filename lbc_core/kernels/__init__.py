"""Sparse inference kernels: the CPU N:M kernel (native, with a pure-PyTorch fallback) and its packing."""
