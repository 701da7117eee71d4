"""Batched rollouts and the experiments behind `eval`, `adapt` and `demo`."""
