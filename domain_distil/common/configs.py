"""Where the Hydra configs are: ``domain_distil/conf`` in an installed wheel (``pyproject.toml`` maps
``conf/`` there), else ``conf/`` beside the package in a checkout; and a one-line check of group choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from domain_distil.common.errors import ConfigError
from domain_distil.common.resolvers import register_resolvers

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The configs interpolate the project's resolvers (`${distill_precision:...}`): whoever finds the
# configs here (the CLI, tests, benchmarks composing them) can resolve them.
register_resolvers()


@cache
def config_dir() -> Path:
    """The folder holding ``config.yaml``: the packaged copy first, else the checkout's ``conf/``."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"No Hydra configs found: neither {_PACKAGE_DIR / 'conf'} (installed package) nor "
        f"{_PACKAGE_DIR.parent / 'conf'} (checkout) holds config.yaml; reinstall domain-distil."
    )


def group_options(group: str) -> tuple[str, ...]:
    """The options the project ships for a config group (``lang`` -> eng, esp, ...): its ``*.yaml``
    names, those in sub-folders as ``<folder>/<name>`` (Hydra accepts ``corpus=budgets/cc`` too)."""
    folder = config_dir() / group
    return tuple(sorted(path.relative_to(folder).with_suffix("").as_posix() for path in folder.rglob("*.yaml")))


# Command-line flags after which the pre-check below cannot know the options: another config
# folder or name may bring its own (Hydra itself then reports a missing option).
_CHECKED_FLAGS = ("-m", "--multirun")


def check_group_choices(arguments: Sequence[str]) -> None:
    """Refuse ``lang=deu`` (no ``conf/<group>/`` file provides it) in one line, not Hydra's dozen, before
    Hydra starts. Skipped when the command line may add a config folder (``--config-dir``,
    ``hydra.searchpath``); anything this does not understand is left to Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    if any(arg.startswith("-") and arg not in _CHECKED_FLAGS for arg in arguments):
        return
    overrides = [arg for arg in arguments if arg not in _CHECKED_FLAGS]
    if any(arg.lstrip("+~").startswith("hydra.searchpath") for arg in overrides):
        return
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException:
        return
    for override in parsed:
        group = override.key_or_group
        if override.is_delete() or group.startswith("hydra") or not (config_dir() / group).is_dir():
            continue
        options = group_options(group)
        unknown = [choice for choice in _choices(override) if choice not in options]
        if unknown:
            raise ConfigError(f"{group}={unknown[0]}: there is no {group} option {unknown[0]!r}; the {group} "
                              f"options are {', '.join(options)} (the *.yaml files in {config_dir() / group})")


def _choices(override: Override) -> list[str]:
    """The option names an override picks (``lang=eng,esp`` -> eng, esp); none for globs, ranges, null."""
    from hydra.core.override_parser.types import ChoiceSweep, ValueType

    value = override.value()
    if override.value_type == ValueType.ELEMENT:
        return [] if value is None else [str(value)]
    if override.value_type in (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP) and isinstance(value, ChoiceSweep):
        return [str(choice) for choice in value.list if choice is not None]
    return []
