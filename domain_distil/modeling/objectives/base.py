"""What every loss term is: a weight, its settings, what it needs from the two models, and its value
(docs/architecture.md, "Add a loss term"). A term says what it needs so that the module asks the
teacher and the student for nothing more."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, NamedTuple, TypeVar

import torch

from domain_distil.common.errors import ConfigError


class LogitUse(enum.Enum):
    """Which MLM-head logits a term reads (the head runs only on the rows some term needs)."""

    NONE = "none"
    STUDENT_TARGETS = "student logits at the MLM targets"
    BOTH = "student and teacher logits over the logit rows"


@dataclass(frozen=True)
class ModelNeeds:
    """What one model's forward must expose beyond its last hidden state."""

    hidden_states: bool = False  # the embedding output and every layer's output
    qkv_layers: frozenset[int] = frozenset()  # layers whose query/key/value projections are captured

    def __or__(self, other: ModelNeeds) -> ModelNeeds:
        return ModelNeeds(self.hidden_states or other.hidden_states, self.qkv_layers | other.qkv_layers)


@dataclass(frozen=True)
class ModelShape:
    """The sizes a term checks its settings against (from a transformers config)."""

    layers: int
    hidden: int
    heads: int

    @classmethod
    def of(cls, config: Any) -> ModelShape:
        """BERT, RoBERTa and DistilBERT configs all answer these names (DistilBERT maps them)."""
        return cls(int(config.num_hidden_layers), int(config.hidden_size), int(config.num_attention_heads))


@dataclass(frozen=True)
class PairShape:
    """The student and the teacher as the layer-wise terms see them."""

    student: ModelShape
    teacher: ModelShape
    # The teacher layer each student layer was copied from (``config.distil_layers``); None when
    # the student records none (a student that was not cut from this teacher).
    layer_map: tuple[int, ...] | None = None

    @classmethod
    def of(cls, student_config: Any, teacher_config: Any) -> PairShape:
        layer_map = getattr(student_config, "distil_layers", None)
        return cls(ModelShape.of(student_config), ModelShape.of(teacher_config),
                   tuple(int(t) for t in layer_map) if layer_map else None)


class QKV(NamedTuple):
    """One attention layer's query, key and value projections, each (B, L, H)."""

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor


@dataclass
class ModelOutputs:
    """What one model's forward gave: hidden states (all of them, or the last only) and Q/K/V."""

    hidden_states: tuple[torch.Tensor, ...]  # (B, L, H) each; [0] the embeddings when all were asked for
    qkv: dict[int, QKV] = field(default_factory=dict)

    @property
    def last_hidden(self) -> torch.Tensor:
        return self.hidden_states[-1]


@dataclass
class TermInputs:
    """One batch, as every term sees it."""

    attention_mask: torch.Tensor  # (B, L) bool
    labels: torch.Tensor  # (B, L) MLM labels, IGNORE_INDEX off the targets
    student: ModelOutputs
    teacher: ModelOutputs
    pair: PairShape
    rows: torch.Tensor | None = None  # (B, L) bool: the rows the logits below hold
    student_logits: torch.Tensor | None = None  # (N, V) on ``rows``
    teacher_logits: torch.Tensor | None = None  # (N, V) on ``rows``


class LossTerm(ABC):
    """A weighted loss term; subclasses are frozen dataclasses whose fields are their config keys."""

    name: ClassVar[str]  # its key under distill.terms, and train/loss_<name>
    logits: ClassVar[LogitUse] = LogitUse.NONE
    weight: float

    @property
    def on(self) -> bool:
        return self.weight > 0

    def key(self, setting: str) -> str:
        """The full config key of one of this term's settings, for messages."""
        return f"distill.terms.{self.name}.{setting}"

    def check(self, pair: PairShape) -> None:
        """Refuse settings these models cannot honour, as a one-line :class:`ConfigError`."""
        return  # a term without model-dependent settings accepts any pair

    def needs(self, pair: PairShape) -> tuple[ModelNeeds, ModelNeeds]:
        """What the student and the teacher must expose (beyond the last hidden state)."""
        return ModelNeeds(), ModelNeeds()

    @abstractmethod
    def __call__(self, inputs: TermInputs) -> torch.Tensor:
        """The term's unweighted value on one batch (a scalar)."""

    @abstractmethod
    def what(self, logit_rows: str) -> str:
        """What it computes, in words with its settings (``logit_rows`` names the logit rows)."""


TERMS: dict[str, type[LossTerm]] = {}
Term = TypeVar("Term", bound=type[LossTerm])


def register(cls: Term) -> Term:
    """Class decorator: make a term available under ``distill.terms.<cls.name>``."""
    if cls.name in TERMS:
        raise RuntimeError(f"two loss terms are named {cls.name!r}: {TERMS[cls.name].__name__} and {cls.__name__}")
    TERMS[cls.name] = cls
    return cls


def build_term(name: str, settings: Mapping[str, Any]) -> LossTerm:
    """The term ``distill.terms.<name>`` with ``settings``; unknown names or keys are a ConfigError."""
    if name not in TERMS:
        raise ConfigError(f"distill.terms.{name}: no such loss term; the terms are {', '.join(TERMS)}")
    cls = TERMS[name]
    expected = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    if not isinstance(settings, Mapping):
        raise ConfigError(f"distill.terms.{name} must be a mapping with {', '.join(expected)}, got {settings!r}")
    unknown = sorted(set(settings) - set(expected))
    missing = [key for key in expected if key not in settings]
    if unknown or missing:
        problem = f"unknown {unknown}" if unknown else f"missing {missing}"
        raise ConfigError(f"distill.terms.{name}: {problem}; this term takes {', '.join(expected)}")
    term = cls(**dict(settings))
    if not isinstance(term.weight, int | float) or term.weight < 0:
        raise ConfigError(f"{term.key('weight')} must be a number >= 0, got {term.weight!r}")
    return term
