"""fastbfm: behavioral foundation models, zero-shot prompting and fast adaptation in latent space."""

import os

# Headless rendering by default; a user's own setting wins.
os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
