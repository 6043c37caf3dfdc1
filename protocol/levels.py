"""The national five-level scale (SPEC section 1).

Levels travel and are stored by id. Only an upstream adapter turns an id into a numeric code,
because the upstream interfaces and GB/T 39046-2020 number the scale in opposite directions.
"""

from __future__ import annotations

import enum


class Level(enum.Enum):
    """A rating level; ``value`` is the wire and database id."""

    VERY_SATISFIED = "very_satisfied"
    SATISFIED = "satisfied"
    BASIC = "basic"
    DISSATISFIED = "dissatisfied"
    VERY_DISSATISFIED = "very_dissatisfied"

    @property
    def score(self) -> int:
        """Mean-score weight: 5 for 非常满意 down to 1 for 非常不满意."""
        return _SCORES[self]

    @property
    def is_bad(self) -> bool:
        """True for the two levels that make a bad review (差评) and ask for a reason."""
        return self in (Level.DISSATISFIED, Level.VERY_DISSATISFIED)

    @property
    def label_zh(self) -> str:
        return _LABELS_ZH[self]

    @classmethod
    def parse(cls, text: str) -> Level:
        """The level with id ``text``; ValueError naming the valid ids otherwise."""
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"unknown level {text!r}; expected one of {', '.join(LEVEL_IDS)}") from None


_SCORES = {
    Level.VERY_SATISFIED: 5,
    Level.SATISFIED: 4,
    Level.BASIC: 3,
    Level.DISSATISFIED: 2,
    Level.VERY_DISSATISFIED: 1,
}
_LABELS_ZH = {
    Level.VERY_SATISFIED: "非常满意",
    Level.SATISFIED: "满意",
    Level.BASIC: "基本满意",
    Level.DISSATISFIED: "不满意",
    Level.VERY_DISSATISFIED: "非常不满意",
}

#: Ids from best to worst, the order every table and chart uses.
LEVEL_IDS: tuple[str, ...] = tuple(level.value for level in Level)

#: The three-button layout many cities use.
THREE_KEY_LEVELS: tuple[Level, ...] = (Level.SATISFIED, Level.BASIC, Level.DISSATISFIED)

#: Default bad-review reasons (冷 懒 推 乱 贪 + other); ``unspecified`` is what a timeout records.
DEFAULT_REASONS: tuple[str, ...] = ("cold", "lazy", "shirk", "arbitrary", "greedy", "other")
UNSPECIFIED_REASON = "unspecified"
#: Ids of the two levels that make a bad review (差评).
BAD_LEVEL_IDS: frozenset[str] = frozenset(level.value for level in Level if level.is_bad)
