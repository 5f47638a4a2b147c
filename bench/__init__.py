"""Benchmarks of the HyperMask training step: fast library step against a plain reference."""
