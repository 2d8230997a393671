"""Configuration: plain data, no torch. From a variant name and overrides to one typed :class:`Config`.

- :mod:`.loader` — YAML files, official ``__include__`` chains, dotted overrides, :func:`load_config`;
- :mod:`.sections` — the typed, documented sections (model, criterion, matcher, training, data);
- :mod:`.checks` — checks of what a user changes (unknown keys are errors, image sizes);
- :mod:`.variants` — the one table of the eight variants;
- :mod:`.recipes` — ``auto`` / ``official`` / ``small`` training recipes;
- :mod:`.epoch_rule` and :mod:`.batch_rule` — the official rules for a new epoch count and a new batch size;
- :mod:`.run_config` — the one frozen config of a run (:func:`build_run_config`): recipe, dataset, batch rule.

Explained in notebook ``03_config.ipynb``. Names below are imported lazily.

Example:
    >>> from deimv2.config import load_config
    >>> load_config("atto").train.epochs > 0
    True
"""

from __future__ import annotations

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "loader": [
            "ALIASES",
            "CONFIG_DIR",
            "VARIANTS",
            "Config",
            "config_from_dict",
            "format_milestones",
            "load_config",
            "parse_overrides",
            "read_yaml",
            "resolve_config_path",
            "save_config",
        ],
        "run_config": ["CheckedConfig", "DatasetInfo", "RunConfig", "build_run_config", "check_config"],
        "variants": ["VARIANT_TABLE", "Variant"],
    },
)
