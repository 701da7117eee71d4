"""Meta Motivo (facebookresearch/metamotivo) FB and FB-CPR checkpoints behind fastbfm's BFM protocol.

    from fastbfm.interop.metamotivo import load_metamotivo
    model = load_metamotivo("path/to/metamotivo-S-1", discount=0.98)   # config.json + model.safetensors

A checkpoint folder is either the published layout (``config.json`` and ``model.safetensors`` side by
side, as on the Hugging Face hub) or the layout Meta Motivo's agents save (an agent ``config.json`` at
the root and ``model/config.json`` + ``model/model.safetensors``). Weights are read with safetensors only,
never with pickle (``optimizers.pth`` is not opened).

:class:`MetaMotivoFB` rebuilds the networks from Meta Motivo's model config (``archi.f``, ``archi.b``,
``archi.actor``: "simple" or "residual" forward map and actor, "batch" or "seq" ensembles) under their
parameter names, so their state dict loads with ``strict=True``. Observations go through their
observation normaliser (BatchNorm statistics, evaluation mode) when ``norm_obs`` is set.

Supported: the FB model and the FB parts (forward map, backward map, actor, normaliser) of an FB-CPR
model. FB-CPR's critic and discriminator, and the target networks an agent's save includes, are not
used by the protocol: their weights are skipped (listed in ``model.meta["ignored"]``).
"""

from fastbfm.interop.metamotivo.config import normalize_config
from fastbfm.interop.metamotivo.loader import load_metamotivo, looks_like_metamotivo
from fastbfm.interop.metamotivo.model import MetaMotivoFB

__all__ = ["MetaMotivoFB", "load_metamotivo", "looks_like_metamotivo", "normalize_config"]
