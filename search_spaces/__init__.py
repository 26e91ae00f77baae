"""What the search may choose: each trial becomes a frozen, hashable :class:`PrecisionPlan`."""

from search_spaces._errors import PlanValidationError
from search_spaces._plan import LOWER_TYPES, LowerType, PrecisionPlan

__all__ = ["LOWER_TYPES", "LowerType", "PlanValidationError", "PrecisionPlan"]
