"""ran-edge: PyTorch CNNs to int8, NPU-mapped Ethos-U artifacts with honest per-target profiles."""

__version__ = "0.1.0"
