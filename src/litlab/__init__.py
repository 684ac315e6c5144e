"""litlab: a research template for PyTorch with Lightning loops, Hydra configs and TensorBoard."""

__version__ = "0.1.0"
