"""serbench: benchmark and regression test bed for saving and loading tensors and parameters."""

__version__ = "0.1.0"
