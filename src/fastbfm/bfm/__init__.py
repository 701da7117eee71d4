"""BFMs: the inference protocol, FB (model and trainer), pure losses, checkpoints and the training loop."""
