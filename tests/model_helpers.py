"""Untrained models that behave like trained ones where a test needs it."""

import torch


def with_random_biases(model, std: float = 0.2):
    """``model`` with its biases drawn from N(0, std): FB's initialisation zeroes them (Meta Motivo's), so an
    untrained policy barely moves and B maps the all-zero observation to 0, which a trained model does not."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, std)
    return model
