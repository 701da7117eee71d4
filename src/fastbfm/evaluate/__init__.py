"""The experiments behind `eval`, `adapt` and `demo`, and the resumable grids (rollouts: `fastbfm.rollout`)."""
