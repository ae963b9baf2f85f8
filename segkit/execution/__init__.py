"""Execution: where and how computation runs (the device, mixed precision, the fast path's memory format and
threads)."""
