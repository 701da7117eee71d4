"""Rewards written by users, run as untrusted code under a contract (docs/tasks.md, "The reward contract").

Per call, a user's reward must return one finite real number within the time limit. Whatever else
happens inside it (a non-number, NaN or infinity, an array, an exception, ``sys.exit``, a call that
hangs) becomes a :class:`UserRewardError`: one line naming the reward, where it was called and what it
did. ``os._exit`` and crashes inside C code end the process and cannot be caught in it.
"""

from __future__ import annotations

import numbers
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from fastbfm.errors import FastBFMError

DEFAULT_TIMEOUT_S = 10.0


def _timeout_from_environment() -> float | None:
    """FASTBFM_REWARD_TIMEOUT if it is a usable number of seconds (the CLI validates it as an option)."""
    try:
        seconds = float(os.environ.get("FASTBFM_REWARD_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        seconds = DEFAULT_TIMEOUT_S
    return seconds if 0 < seconds <= 1e6 else (None if seconds == 0 else DEFAULT_TIMEOUT_S)


_timeout_s: float | None = _timeout_from_environment()


class UserRewardError(FastBFMError):
    """A user's reward broke its contract."""


class _Timeout(BaseException):
    """Raised into a reward that ran out of time (a BaseException, so ``except Exception`` in it cannot swallow it)."""


def set_reward_timeout(seconds: float | None) -> None:
    """The time limit of one call of a user reward, in seconds (None or 0: no limit). It is enforced by
    SIGALRM, so only in the main thread on POSIX, and only between Python bytecodes: a reward stuck inside
    one long C call is stopped when that call returns."""
    global _timeout_s
    if seconds is not None and not 0 <= seconds <= 1e6:
        raise FastBFMError(f"the reward time limit must be a number of seconds from 0 to 1e6, got {seconds}")
    _timeout_s = seconds or None


def reward_timeout() -> float | None:
    return _timeout_s


_in_call = False
_previous_handler: Any = None


def _on_alarm(signum, frame):
    if _in_call:
        raise _Timeout
    if callable(_previous_handler):  # not ours: whoever handled SIGALRM before
        _previous_handler(signum, frame)


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """SIGALRM after ``seconds``. The handler stays installed between calls (swapping it costs more than
    the timer) and passes alarms it did not ask for to the handler it replaced."""
    global _in_call, _previous_handler
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGALRM) is not _on_alarm:
        _previous_handler = signal.signal(signal.SIGALRM, _on_alarm)
    _in_call = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _in_call = False


def _short(value: Any) -> str:
    text = repr(value).replace("\n", " ")
    return f"{text[:60]}..." if len(text) > 60 else text


def _where(where: str) -> str:
    return f" {where}" if where else ""


def call_user_code(name: str, fn: Callable, args: tuple, where: str = "") -> Any:
    """``fn(*args)`` under the time limit, its failures as one-line :class:`UserRewardError`."""
    try:
        with _time_limit(_timeout_s):
            return fn(*args)
    except _Timeout:
        raise UserRewardError(
            f"the reward {name} took longer than {_timeout_s:g} s{_where(where)} (the time limit per call: --reward-timeout)"
        ) from None
    except SystemExit as e:
        raise UserRewardError(f"the reward {name} called exit({e.code!r}){_where(where)}; a reward must return a number") from None
    except Exception as e:
        detail = str(e).splitlines()[0] if str(e) else ""
        raise UserRewardError(f"the reward {name} failed{_where(where)}: {type(e).__name__}: {detail}") from e


def finite_real(value: Any, name: str, where: str = "") -> float:
    """``value`` as a float if it is one finite real number (a Python or NumPy real, or a 0-d array of one)."""
    scalar = value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value
    if isinstance(scalar, numbers.Real) and not isinstance(scalar, np.ndarray):
        number = float(scalar)
        if np.isfinite(number):
            return number
        kind = "a non-finite number"
    else:
        kind = f"a {type(value).__name__}" + (f" of shape {value.shape}" if isinstance(value, np.ndarray) else "")
    raise UserRewardError(f"the reward {name} returned {_short(value)}{_where(where)}: {kind}; a reward must be one finite real number per step")


@dataclass(frozen=True)
class UserReward:
    """A user's ``reward(physics)`` under the contract (equal and hashable by the function, so tasks built
    twice from one function stay equal)."""

    fn: Callable[[Any], Any]
    name: str

    def __call__(self, physics, where: str = "") -> float:
        if not where:  # dm_control's own loop: the episode's clock says where
            where = f"at t = {float(physics.data.time):.3f} s"
        return finite_real(call_user_code(self.name, self.fn, (physics,), where), self.name, where)


@dataclass(frozen=True)
class UserVectorReward:
    """A user's vectorised ``reward(fields)`` (a :class:`~fastbfm.envs.Task` in their module) under the
    contract: real numbers, one per simulation; the caller checks that those it uses are finite
    (:func:`check_finite_rewards`: simulations a batch does not use may hold no state)."""

    fn: Callable[[Any], Any]
    name: str

    def __call__(self, fields) -> np.ndarray:
        value = call_user_code(self.name, self.fn, (fields,))
        try:
            return np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise UserRewardError(f"the reward {self.name} returned {_short(value)}; a vectorised reward returns one finite real number per simulation") from None


def check_finite_rewards(rewards: np.ndarray, name: str, where: str) -> None:
    """Rewards of the simulations used (1-D), finite; else one line naming the first bad one."""
    bad = np.flatnonzero(~np.isfinite(rewards))
    if bad.size:
        raise UserRewardError(f"the reward {name} returned {rewards[bad[0]]} {where} (simulation {bad[0]}): a reward must be one finite real number per step")
