"""The seeds' recipes as code: checkpoints with optimizer state, transfer learning, whole models."""
