"""Loading a model by name or format: a shipped model's name (``fastbfm models``), a fastbfm checkpoint
folder, or a Meta Motivo checkpoint folder. Everything that takes a ``--model`` goes through here.

    from fastbfm.models import load_model
    model = load_model("maze-fb")                                     # the zoo
    model = load_model("runs/my-walker-fb")                           # fastbfm's pretrain --out
    model = load_model("path/to/metamotivo-walker-fb", discount=0.98) # Meta Motivo: give its discount
"""

from __future__ import annotations

from pathlib import Path

from fastbfm.bfm.checkpoint import MODEL_CONFIG, read_json, weights_digest
from fastbfm.bfm.checkpoint import load_model as load_checkpoint
from fastbfm.bfm.protocol import BFM
from fastbfm.envs.registry import domain_for_dims
from fastbfm.errors import FastBFMError
from fastbfm.interop.metamotivo import load_metamotivo, looks_like_metamotivo
from fastbfm.interop.metamotivo.loader import find_checkpoint
from fastbfm.io import sha256_file
from fastbfm.schemas import ModelConfigFile
from fastbfm.zoo import resolve_model


def model_format(folder: Path) -> str:
    """``"metamotivo"`` or ``"fastbfm"``, from the folder's files."""
    return "metamotivo" if looks_like_metamotivo(folder) else "fastbfm"


def load_model(source: str | Path, discount: float | None = None) -> BFM:
    """The model at ``source`` (a zoo name or a folder). ``discount``: the one the model was trained with,
    which adapting a Meta Motivo model needs (their configs do not record it; without it ``model.discount``
    is None and methods that bootstrap refuse the model); a fastbfm checkpoint records its own, and a
    different ``discount`` is refused."""
    folder = resolve_model(source)
    if model_format(folder) == "metamotivo":
        return load_metamotivo(folder, discount=discount)
    model = load_checkpoint(folder)
    if discount is not None and model.discount is not None and abs(discount - model.discount) > 1e-12:
        raise FastBFMError(
            f"{source} was trained with discount {model.discount}, not {discount}: give a discount only for checkpoints that record none (Meta Motivo's)"
        )
    if model.discount is None:
        model.discount = discount
    return model


def model_digest(source: str | Path) -> str:
    """What the model at ``source`` is, in one SHA-256: of its weights (a fastbfm checkpoint's recorded
    checksum; a Meta Motivo folder's weights file hashed). Folders that record results of a model keep it,
    so that another model at the same path is not mixed with the first."""
    folder = resolve_model(source)
    if model_format(folder) == "metamotivo":
        weights, _, _ = find_checkpoint(folder)
        return sha256_file(weights)
    return weights_digest(folder, read_json(folder / MODEL_CONFIG, ModelConfigFile))


def model_domain(source: str | Path) -> str | None:
    """The domain a model acts in, read from its config (None when no single domain fits its sizes)."""
    folder = resolve_model(source)
    if model_format(folder) == "metamotivo":
        _, config, _ = find_checkpoint(folder)
        return domain_for_dims(config["obs_dim"], config["action_dim"])
    config = read_json(folder / MODEL_CONFIG, ModelConfigFile)
    return config.get("meta", {}).get("domain") or domain_for_dims(config["model"]["obs_dim"], config["model"]["action_dim"])
