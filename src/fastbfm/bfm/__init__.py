"""BFMs: the inference protocol, FB, HILP and PSM (models and trainers), pure losses, checkpoints and the training loop."""
