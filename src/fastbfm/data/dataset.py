"""Reward-free datasets in the ExORL layout: one ``.npz`` per episode with observation, action, reward,
discount and physics arrays of T+1 rows (row 0 is the reset, its action a dummy zero)."""

from __future__ import annotations

import hashlib
import io
import math
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastbfm.data.manifest import check_episode, check_manifest, files_digest, read_manifest, verify_requested
from fastbfm.errors import FastBFMError
from fastbfm.io import sha256_bytes, write_failed

EPISODE_KEYS = ("observation", "action", "reward", "discount", "physics")
MAX_ARRAY_BYTES = 2**31
"""One stored array (a 1000-step episode of a 100-dimensional state is 0.8 MB)."""
TMP_PREFIX = ".episode-"  # a killed write leaves only such files, which resuming removes


def write_episode(folder: str | Path, index: int, episode: dict[str, np.ndarray]) -> Path:
    """Write one episode atomically (temporary file, then rename): a crash leaves no half file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    length = len(episode["observation"])
    path = folder / f"episode_{index:06d}_{length}.npz"
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=".tmp")
    except OSError as e:
        raise write_failed(path, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **{k: episode[k] for k in EPISODE_KEYS})
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise write_failed(path, e) from e
        raise
    return path


def episode_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FastBFMError(f"dataset folder not found: {folder}")
    # ExORL keeps its episodes under <domain>/<algo>/buffer/.
    if not any(folder.glob("*.npz")) and (folder / "buffer").is_dir():
        folder = folder / "buffer"
    return sorted(folder.glob("*.npz"))


def read_episode(path: Path, sha256: str | None = None) -> dict[str, np.ndarray]:
    """One episode, without pickle; ``sha256`` (from the manifest) is checked on the bytes read."""
    try:
        raw = Path(path).read_bytes()
        if sha256 is not None and sha256_bytes(raw) != sha256:
            raise FastBFMError(f"corrupt episode {path}: does not match the checksum in the dataset manifest")
        # numpy would read anything else as a pickle, and say so: name the real problem
        if not raw.startswith(b"PK"):
            raise FastBFMError(f"corrupt episode {path}: not an .npz archive")
        _check_sizes(path, raw)
        data = np.load(io.BytesIO(raw), allow_pickle=False)
        with data:
            missing = [k for k in ("observation", "action", "physics") if k not in data]
            if missing:
                raise FastBFMError(f"corrupt episode {path}: missing arrays {missing}")
            return {k: data[k] for k in EPISODE_KEYS if k in data}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as e:
        raise FastBFMError(f"corrupt episode {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e


def _check_sizes(path: Path, raw: bytes) -> None:
    """Refuse an array whose header promises more bytes than its archive member holds: numpy would
    allocate the promised size before reading (a 1 kB file could ask for terabytes)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy") or info.filename[:-4] not in EPISODE_KEYS:
                continue
            if info.file_size > MAX_ARRAY_BYTES:
                raise FastBFMError(f"corrupt episode {path}: '{info.filename[:-4]}' holds {info.file_size} bytes, more than {MAX_ARRAY_BYTES}")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(member)
            if dtype.hasobject:
                continue  # np.load refuses it (allow_pickle=False) with its own message
            if math.prod(shape) * dtype.itemsize > info.file_size:
                raise FastBFMError(f"corrupt episode {path}: '{info.filename[:-4]}' claims shape {shape} of {dtype}, more than its {info.file_size} bytes")


@dataclass
class TransitionDataset:
    """Transitions (s, a, s') with the physics of s' kept for relabelling any task."""

    obs: np.ndarray
    action: np.ndarray
    next_obs: np.ndarray
    next_physics: np.ndarray
    discount: np.ndarray
    num_episodes: int
    episode_end: np.ndarray | None = None
    """Per transition, one past the index of its episode's last transition (for future-state goals)."""
    digest: str | None = None
    """What the dataset holds, in one SHA-256 (its manifest's digest of episode files and checksums; for a
    folder without a manifest, of the loaded arrays): a run records it, and resumes only on the same data."""

    def __len__(self) -> int:
        return len(self.obs)

    @property
    def obs_dim(self) -> int:
        return self.obs.shape[1]

    @property
    def action_dim(self) -> int:
        return self.action.shape[1]

    def to_torch(self, device: torch.device | str = "cpu") -> "TorchTransitions":
        """The transitions as tensors on ``device``, where batches are then sampled (a GPU holds a
        10M-transition dataset whole: 10M x (2 x 24 + 6 + 2) x 4 bytes is 2.2 GB at walker's sizes)."""

        def tensor(array):
            return torch.from_numpy(array).to(device)

        return TorchTransitions(
            obs=tensor(self.obs),
            action=tensor(self.action),
            next_obs=tensor(self.next_obs),
            discount=tensor(self.discount),
            episode_end=None if self.episode_end is None else tensor(self.episode_end),
        )


@dataclass
class TorchTransitions:
    obs: torch.Tensor
    action: torch.Tensor
    next_obs: torch.Tensor
    discount: torch.Tensor
    episode_end: torch.Tensor | None = None

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A batch drawn uniformly with replacement, on the dataset's device (``generator`` lives there too)."""
        idx = torch.randint(len(self.obs), (batch_size,), generator=generator, device=self.obs.device)
        return self._transitions(idx)

    def _transitions(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "obs": self.obs[idx],
            "action": self.action[idx],
            "next_obs": self.next_obs[idx],
            "discount": self.discount[idx],
        }

    def sample_with_goals(
        self, batch_size: int, generator: torch.Generator, future_discount: float, random_goal_prob: float
    ) -> dict[str, torch.Tensor]:
        """Transitions plus a goal each: a later state of the same episode, s'_{t+k-1} with
        k ~ Geometric(1 - future_discount) cut at the episode's end, or with ``random_goal_prob`` any
        dataset state (HILP's goal sampling)."""
        if self.episode_end is None:
            raise FastBFMError("goal sampling needs episode boundaries; load the dataset with load_dataset")
        device = self.obs.device
        idx = torch.randint(len(self.obs), (batch_size,), generator=generator, device=device)
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64, device=device).clamp_min(1e-12)
        offset = torch.floor(torch.log(u) / math.log(future_discount)).long()
        goal_idx = torch.minimum(idx + offset, self.episode_end[idx] - 1)
        random_idx = torch.randint(len(self.obs), (batch_size,), generator=generator, device=device)
        use_random = torch.rand(batch_size, generator=generator, device=device) < random_goal_prob
        batch = self._transitions(idx)
        batch["goal"] = self.next_obs[torch.where(use_random, random_idx, goal_idx)]
        return batch


def load_dataset(
    folder: str | Path, max_episodes: int | None = None, resimulate: bool = False, domain: str | None = None, verify: bool | None = None
) -> TransitionDataset:
    """Load an ExORL-layout folder (ours or a real ExORL ``<domain>/<algo>`` folder) into transitions.

    ``resimulate`` replays every stored (physics, action) pair on the installed MuJoCo and replaces s, s'
    and the physics of s' by the simulated ones: ExORL was recorded with an older MuJoCo whose dynamics
    differ slightly. ``domain`` names the domain (default: a domain named in the path, else the one
    whose observation and action sizes match). A folder with a ``manifest.json`` is checked against it
    (complete, files, shapes, dtypes); ``verify`` (default: env ``FASTBFM_VERIFY_DATA``) also checks
    every file's SHA-256. Every episode's shapes and dtypes are checked either way.
    """
    files = episode_files(folder)[:max_episodes]
    if not files:
        raise FastBFMError(f"empty dataset: no episode .npz files in {folder}")
    manifest = read_manifest(files[0].parent)
    if manifest is not None:
        check_manifest(files[0].parent, files, manifest)
    entries = manifest["files"] if manifest is not None else {}
    specs = manifest.get("arrays") if manifest is not None else None
    verify = verify_requested(verify) and manifest is not None
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "action", "next_obs", "physics", "next_physics", "discount")}
    lengths: list[int] = []
    for path in files:
        entry = entries.get(path.name, {})
        ep = read_episode(path, entry.get("sha256") if verify else None)
        specs = check_episode(path, ep, specs, entry.get("rows"))
        obs, action, physics = ep["observation"], ep["action"], ep["physics"]
        discount = ep.get("discount", np.ones((len(obs), 1)))
        lengths.append(len(obs) - 1)
        parts["obs"].append(obs[:-1])
        parts["action"].append(action[1:])
        parts["next_obs"].append(obs[1:])
        if resimulate:
            parts["physics"].append(physics[:-1])
        parts["next_physics"].append(physics[1:])
        parts["discount"].append(np.asarray(discount, dtype=np.float32).reshape(len(obs), -1)[1:, 0])
    cat = {k: np.concatenate(v) for k, v in parts.items() if v}
    if resimulate:
        domain = domain or _domain_of(Path(folder), cat["obs"].shape[1], cat["action"].shape[1])
        cat["obs"], cat["next_obs"], cat["next_physics"] = _resimulate(domain, cat["physics"], cat["action"])
    if manifest is not None and max_episodes is None:
        digest = files_digest(manifest["files"])
    else:
        digest = _arrays_digest(cat["obs"], cat["action"], cat["next_obs"], cat["next_physics"], cat["discount"])
    return TransitionDataset(
        obs=cat["obs"].astype(np.float32),
        action=cat["action"].astype(np.float32),
        next_obs=cat["next_obs"].astype(np.float32),
        next_physics=cat["next_physics"].astype(np.float64),
        discount=cat["discount"],
        num_episodes=len(files),
        episode_end=np.repeat(np.cumsum(lengths), lengths),
        digest=digest,
    )


def _arrays_digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in arrays:
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()


def _domain_of(folder: Path, obs_dim: int, action_dim: int) -> str:
    from fastbfm.envs.registry import domain_for_dims, list_domains

    named = [part for part in folder.resolve().parts if part in list_domains()]
    domain = named[-1] if named else domain_for_dims(obs_dim, action_dim)
    if domain is None:
        raise FastBFMError(f"cannot tell the domain of {folder}; name it (e.g. --domain walker) to re-simulate")
    return domain


def _resimulate(domain_name: str, physics: np.ndarray, action: np.ndarray, chunk: int = 1024):
    """One simulated step from each stored state with its action, in batches of simulations."""
    from fastbfm.envs.batch import BatchedEnv
    from fastbfm.envs.registry import get_domain

    domain = get_domain(domain_name)
    env = BatchedEnv(domain, num_envs=min(chunk, len(physics)))
    if physics.shape[1] != env.state_dim:
        raise FastBFMError(f"cannot re-simulate: stored physics has {physics.shape[1]} values per state, {domain_name} has {env.state_dim}")
    obs = np.empty((len(physics), domain.observation_dim), np.float32)
    next_obs, next_physics = np.empty_like(obs), np.empty(physics.shape)
    for start in range(0, len(physics), env.num_envs):
        rows = slice(start, min(start + env.num_envs, len(physics)))
        n = rows.stop - rows.start
        pad = env.num_envs - n
        obs[rows] = env.set_state(np.pad(physics[rows], ((0, pad), (0, 0)), mode="edge"))[:n]
        next_obs[rows] = env.step(np.pad(action[rows], ((0, pad), (0, 0)), mode="edge"))[0][:n]
        next_physics[rows] = env.get_state()[:n]
    return obs, next_obs, next_physics
