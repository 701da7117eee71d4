"""Domains, tasks and simulation: ``get_task("point_mass_maze:reach_top_left")``, ``make_env``, ``BatchedEnv``."""

from fastbfm.envs.batch import BatchedEnv
from fastbfm.envs.dmc import make_env
from fastbfm.envs.registry import Domain, Task, get_domain, get_task, list_domains, list_tasks

__all__ = ["BatchedEnv", "Domain", "Task", "get_domain", "get_task", "list_domains", "list_tasks", "make_env"]
