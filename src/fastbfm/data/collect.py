"""Reward-free exploration data, from one of two explorers.

``rnd`` (:mod:`fastbfm.data.rnd`) learns to explore: DDPG rewarded by random network distillation.
``archive``, the default, is Go-Explore-like and domain-agnostic: an archive counts visits to cells of a coarse grid
over a few state features; most episodes restart from a stored state of a rarely visited cell
(simulator state restore), the rest from the domain's own reset. Within an episode, actions are
uniform random and held for a geometric number of steps, which travels much further than per-step
noise. Episodes are written atomically as they finish and a manifest with their checksums last, so an
interrupted collection resumes where it stopped (the RND explorer also saves its networks after each round).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fastbfm.data.dataset import TMP_PREFIX, read_episode, write_episode
from fastbfm.data.manifest import array_specs, check_episode, read_manifest, write_manifest
from fastbfm.data.rnd import STATE_PREFIX, RNDConfig, RNDExplorer
from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.registry import Domain, get_domain
from fastbfm.errors import FastBFMError
from fastbfm.io import sha256_file
from fastbfm.locks import folder_lock
from fastbfm.schemas import MAX_COLLECT_EPISODES, MAX_NUM_ENVS, MAX_ROUND_STEPS, MAX_SEGMENT, check_seed


EXPLORERS = ("archive", "rnd")


@dataclass(frozen=True)
class CollectConfig:
    domain: str = "point_mass_maze"
    episodes: int = 500
    num_envs: int = 50
    seed: int = 0
    restart_prob: float = 0.8
    """Fraction of episodes that start from an archived state of a rare cell instead of a reset."""
    action_hold: float = 10.0
    """Mean number of steps an action is held."""
    novelty_power: float = 0.5
    """Restart cells are drawn with weight count^-novelty_power: larger favours rarer cells more."""
    posture_prob: float = 0.0
    """Fraction of simulations per round that, instead of random torques, hold random target postures of
    the actuated joints with a PD law (motor babbling): coherent limb motion that stands, kicks and
    strides more often than torque noise. Needs joint-driven actuators (not the maze's tendons)."""
    posture_gain: float = 5.0
    """PD gain, in action units per radian; the damping gain is a tenth of it."""
    draw_all_resets: bool = False
    """Draw a reset state for every simulation, restarting or not (the recipe of the shipped maze data,
    kept to reproduce it exactly); otherwise only for those that reset, which saves the quadruped's
    costly resets (about 12 ms each)."""
    segment_length: int | None = None
    """Steps per stored episode (default: the domain's episode length). Shorter segments return to rare
    cells more often: a walker that has just reached a rare standing state falls within ~100 steps."""
    explorer: str = "archive"
    """``archive`` (the fields above) or ``rnd`` (a learning explorer, settings in ``rnd``)."""
    rnd: RNDConfig | None = None
    """The RND explorer's settings (default ``RNDConfig()`` when ``explorer`` is ``rnd``)."""

    def __post_init__(self):
        if self.explorer not in EXPLORERS:
            raise FastBFMError(f"unknown explorer '{self.explorer}'; explorers: {', '.join(EXPLORERS)}")
        if isinstance(self.rnd, dict):  # read back from a manifest
            object.__setattr__(self, "rnd", RNDConfig(**self.rnd))
        if self.explorer == "rnd" and self.rnd is None:
            object.__setattr__(self, "rnd", RNDConfig())
        if self.explorer != "rnd" and self.rnd is not None:
            raise FastBFMError("rnd settings apply only to the rnd explorer")
        check_seed(self.seed)
        for name, value, top in (("episodes", self.episodes, MAX_COLLECT_EPISODES), ("num_envs", self.num_envs, MAX_NUM_ENVS),
                                 ("segment_length", self.segment_length or 1, MAX_SEGMENT)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise FastBFMError(f"{name} must be an integer from 1 to {top}, got {value!r}")
        if self.num_envs * (self.segment_length or 1000) > MAX_ROUND_STEPS:
            raise FastBFMError(f"a round of num_envs x segment_length = {self.num_envs} x {self.segment_length or 1000} steps "
                               f"exceeds {MAX_ROUND_STEPS} (held in memory at once): lower --num-envs")


def exploration_features(domain: Domain, obs: np.ndarray) -> np.ndarray:
    return domain.exploration_features(obs)


class CellArchive:
    """Visit counts per grid cell, with a reservoir of physics states to restart from."""

    def __init__(self, cell_size: tuple[float, ...], per_cell: int = 32):
        self.cell_size = np.asarray(cell_size)
        self.per_cell = per_cell
        self.counts: dict[tuple, int] = {}
        self.states: dict[tuple, list[np.ndarray]] = {}

    def add(self, features: np.ndarray, states: np.ndarray, rng: np.random.Generator) -> None:
        cells = np.floor(features / self.cell_size).astype(np.int64)
        for cell, state in zip(map(tuple, cells), states):
            n = self.counts.get(cell, 0) + 1
            self.counts[cell] = n
            bucket = self.states.setdefault(cell, [])
            if len(bucket) < self.per_cell:
                bucket.append(state)
            elif rng.random() < self.per_cell / n:
                bucket[rng.integers(self.per_cell)] = state

    def sample_starts(self, n: int, rng: np.random.Generator, novelty_power: float = 0.5) -> np.ndarray:
        cells = list(self.states)
        counts = np.array([self.counts[c] for c in cells], dtype=np.float64)
        # 1/sqrt kept as written for 0.5: the shipped maze data was drawn with it, bit for bit.
        weights = 1.0 / np.sqrt(counts) if novelty_power == 0.5 else counts**-novelty_power
        picks = rng.choice(len(cells), size=n, p=weights / weights.sum())
        return np.stack([self.states[cells[i]][rng.integers(len(self.states[cells[i]]))] for i in picks])


def collect(config: CollectConfig, out_dir: str | Path, progress: bool = True) -> Path:
    """Collect ``config.episodes`` episodes into ``out_dir`` (ExORL layout) with a ``manifest.json``.

    Resumable, also after ``kill -9``: a rerun keeps the complete rounds already written, redraws a round
    cut short, and ends with the same dataset as an uninterrupted run. A folder collected with another
    recipe is refused rather than mixed.
    """
    domain = get_domain(config.domain)
    with folder_lock(out_dir, "collection"):
        return _collect(domain, config, Path(out_dir), progress)


def _collect(domain: Domain, config: CollectConfig, out_dir: Path, progress: bool) -> Path:
    recipe = asdict(config)
    manifest = read_manifest(out_dir)
    done = _resume_point(out_dir, config, manifest)
    if manifest is not None and manifest.get("complete") and len(done) >= config.episodes:
        return out_dir
    write_manifest(out_dir, recipe)
    archive = CellArchive(domain.exploration_cell)
    archive_rng = np.random.default_rng([config.seed, 1])
    entries: dict[str, dict] = {}
    specs = None
    for path in done:
        ep = read_episode(path)
        specs = check_episode(path, ep, specs)
        entries[path.name] = {"rows": len(ep["observation"]), "sha256": sha256_file(path)}
        archive.add(exploration_features(domain, ep["observation"][::10]), ep["physics"][::10], archive_rng)
    env = BatchedEnv(domain, num_envs=config.num_envs)
    next_index = len(done)
    explorer = None
    if config.explorer == "rnd":
        explorer = RNDExplorer(domain, config.rnd, config.seed)
        if done:
            explorer.load(out_dir, len(done) // config.num_envs)
            for i in range(0, len(done), config.num_envs):
                explorer.add_episodes([read_episode(p) for p in done[i : i + config.num_envs]])
    bar = tqdm(total=config.episodes, initial=next_index, desc=f"collect ({config.explorer})", unit="ep", disable=not progress)
    while next_index < config.episodes:
        # One generator per round keeps a resumed collection identical to an uninterrupted one.
        rng = np.random.default_rng([config.seed, next_index])
        n = min(config.num_envs, config.episodes - next_index)
        if explorer is None:
            episodes = _explore_round(domain, env, archive, rng, config)
        else:
            episodes = _rnd_round(domain, env, explorer, rng, config, next_index // config.num_envs)
            # saved before the round's episodes: a kill while they are written resumes from the state before
            explorer.save(out_dir, next_index // config.num_envs + 1)
        for episode in episodes[:n]:
            path = write_episode(out_dir, next_index, episode)
            specs = specs or array_specs(episode)
            entries[path.name] = {"rows": len(episode["observation"]), "sha256": sha256_file(path)}
            archive.add(exploration_features(domain, episode["observation"][::10]), episode["physics"][::10], archive_rng)
            next_index += 1
            bar.update(1)
    bar.close()
    write_manifest(out_dir, recipe, entries, specs)
    return out_dir


def _resume_point(out_dir: Path, config: CollectConfig, manifest: dict | None) -> list[Path]:
    """The episodes a rerun keeps: whole rounds of this recipe (later files are redrawn identically)."""
    for tmp in [*out_dir.glob(TMP_PREFIX + "*.tmp"), *out_dir.glob(STATE_PREFIX + "*.tmp")]:
        tmp.unlink()  # left by a write that was killed
    recipe = asdict(config)
    if manifest is not None:
        before = manifest.get("config") or {}
        defaults = {f.name: f.default for f in fields(CollectConfig)}  # fields added since the manifest was written
        changed = [f"{k} {before.get(k, defaults[k])!r} -> {v!r}" for k, v in recipe.items() if k != "episodes" and before.get(k, defaults[k]) != v]
        if changed:
            raise FastBFMError(f"{out_dir} was collected with another recipe ({', '.join(changed)}); rerun with its options or use a new folder")
    files = sorted(out_dir.glob("*.npz"))
    for i, path in enumerate(files):
        if not path.name.startswith(f"episode_{i:06d}_"):
            raise FastBFMError(f"{out_dir} holds {path.name} where episode {i} should be: not this collector's folder; use a new one")
    if len(files) > config.episodes:
        # keeping them would mark complete a dataset larger than its recipe; deleting them would lose data
        before = (manifest or {}).get("config", {}).get("episodes")
        asked = f" (episodes {before!r} -> {config.episodes!r})" if before not in (None, config.episodes) else ""
        raise FastBFMError(
            f"{out_dir} already holds {len(files)} episodes, more than the {config.episodes} asked{asked}; "
            f"rerun with --episodes {max(len(files), before or 0)} or use a new folder"
        )
    if len(files) == config.episodes:
        return files
    keep = len(files) // config.num_envs * config.num_envs
    for path in files[keep:]:
        path.unlink()
    return files[:keep]


def _episodes(obs: np.ndarray, actions: np.ndarray, physics: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Time-major arrays of a round, (T + 1, n, ...), as n episodes in the ExORL layout."""
    T1, n = obs.shape[:2]
    return [
        {
            "observation": obs[:, i],
            "action": actions[:, i],
            "reward": np.zeros((T1, 1), np.float32),
            "discount": np.ones((T1, 1), np.float32),
            "physics": physics[:, i],
        }
        for i in range(n)
    ]


def _rnd_round(domain: Domain, env: BatchedEnv, explorer: RNDExplorer, rng: np.random.Generator, config: CollectConfig,
               round_index: int) -> list[dict[str, np.ndarray]]:  # fmt: skip
    starts = domain.sample_initial_state(rng, env.num_envs)
    return _episodes(*explorer.explore_round(env, starts, config.segment_length or domain.episode_length, round_index))


def _explore_round(
    domain: Domain, env: BatchedEnv, archive: CellArchive, rng: np.random.Generator, config: CollectConfig
) -> list[dict[str, np.ndarray]]:
    n, T, A = env.num_envs, config.segment_length or domain.episode_length, domain.action_dim
    if config.draw_all_resets:
        starts = domain.sample_initial_state(rng, n)
        if archive.states:
            restart = rng.random(n) < config.restart_prob
            if restart.any():
                starts[restart] = archive.sample_starts(int(restart.sum()), rng, config.novelty_power)
    else:
        restart = rng.random(n) < (config.restart_prob if archive.states else 0.0)
        starts = np.empty((n, env.state_dim))
        if restart.any():
            starts[restart] = archive.sample_starts(int(restart.sum()), rng, config.novelty_power)
        if not restart.all():
            starts[~restart] = domain.sample_initial_state(rng, int((~restart).sum()))
    obs = np.empty((T + 1, n, domain.observation_dim), np.float32)
    actions = np.zeros((T + 1, n, A), np.float32)
    physics = np.empty((T + 1, n, env.state_dim))
    obs[0] = env.set_state(starts)
    physics[0] = env.get_state()
    action = rng.uniform(-1, 1, (n, A))
    posture = _Posture(env, rng, n) if config.posture_prob > 0 else None
    babbling = rng.random(n) < config.posture_prob if posture is not None else None
    for t in range(1, T + 1):
        switch = rng.random(n) < 1.0 / config.action_hold
        action[switch] = rng.uniform(-1, 1, (int(switch.sum()), A))
        if posture is not None:
            posture.resample(switch, rng)
            action[babbling] = posture.action(config.posture_gain)[babbling]
        actions[t] = action
        obs[t], _ = env.step(action)
        physics[t] = env.get_state()
    return _episodes(obs, actions, physics)


class _Posture:
    """Random target postures of the joints that the actuators drive, tracked with a PD law."""

    def __init__(self, env: BatchedEnv, rng: np.random.Generator, n: int):
        model = env.model
        joints = model.actuator_trnid[:, 0]
        if not np.all(model.actuator_trntype == 0):
            raise FastBFMError(f"posture babbling needs joint actuators; {env.domain.name} has others")
        self.qpos, self.qvel = model.jnt_qposadr[joints], model.jnt_dofadr[joints]
        self.low, self.high = model.jnt_range[joints].T
        self.fields = env.fields
        self.target = np.empty((n, len(joints)))
        self.resample(np.ones(n, bool), rng)

    def resample(self, rows: np.ndarray, rng: np.random.Generator) -> None:
        k = int(rows.sum())
        # Half the targets near the nominal pose (zero angles: standing for the walker and quadruped).
        near = rng.random((k, 1)) < 0.5
        full = rng.uniform(self.low, self.high, (k, len(self.low)))
        self.target[rows] = np.where(near, np.clip(0.2 * full, self.low, self.high), full)

    def action(self, gain: float) -> np.ndarray:
        error = self.target - self.fields.qpos[:, self.qpos]
        return np.clip(gain * error - 0.1 * gain * self.fields.qvel[:, self.qvel], -1, 1)

