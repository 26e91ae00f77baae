"""Turning a study file's choices into the objects a study runs with: the space and the sampler."""

from __future__ import annotations

from typing import TYPE_CHECKING

from search_spaces import (
    SPACE_TYPES,
    ComposedSearchSpace,
    LowerTypeSpace,
    OpTypeSpace,
    SearchSpace,
    SensitiveNodesSpace,
    SensitivityRanking,
    Tf32Space,
)
from tuner._config_fields import StudyConfigError
from tuner._errors import MissingDependencyError
from tuner._study_config import SamplerConfig, SearchConfig

if TYPE_CHECKING:
    import optuna


def build_search_space(
    search: SearchConfig, ranking: SensitivityRanking | None = None
) -> ComposedSearchSpace:
    """The composed space a study file asks for (not yet prepared)."""
    spaces: list[SearchSpace] = []
    for name in search.spaces:
        if name == "op_types":
            spaces.append(OpTypeSpace(search.always_fp32, search.always_lower))
        elif name == "lower_type":
            spaces.append(LowerTypeSpace(search.lower_types))
        elif name == "tf32":
            spaces.append(Tf32Space())
        elif name == "sensitive_nodes":
            spaces.append(SensitiveNodesSpace(
                ranking, mode=search.sensitive_mode,  # type: ignore[arg-type]
                order=search.sensitive_order,  # type: ignore[arg-type]
                max_k=search.sensitive_max_k,
            ))
        else:
            raise StudyConfigError(
                f"[search] spaces: {name!r} is not built here; valid: {', '.join(sorted(SPACE_TYPES))}"
            )
    return ComposedSearchSpace(
        spaces, default_lower=search.lower_types[0], keep_io_types=search.keep_io_types
    )


def create_sampler(config: SamplerConfig, seed: int) -> optuna.samplers.BaseSampler:
    """TPE by default: studies have tens of trials over mostly categorical dimensions, where TPE
    learns after ``n_startup_trials``; NSGA-II would spend the whole budget on its first
    generations, and the GP sampler needs torch. Both read Optuna 5 constraints from the trials."""
    import optuna

    if config.name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=config.n_startup_trials, multivariate=True
        )
    if config.name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=config.population_size, seed=seed)
    if config.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    try:
        import torch  # noqa: F401  - the GP sampler's dependency
    except ImportError:
        raise MissingDependencyError("[sampler] name = 'gp' needs torch: pip install torch") from None
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=config.n_startup_trials)
