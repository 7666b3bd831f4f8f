"""Analysis settings that the methods chapter states: follow-up windows, recovery,
plausible ranges. Change them here (or pass them explicitly), never inline."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Window", "WINDOWS", "RECOVERY_THRESHOLD", "RECOVERY_IMPROVEMENT", "COVARIATES", "BINARY_COVARIATES",
           "COMPARISONS", "OUTCOMES", "PLAUSIBLE", "ARM_TYPES", "AGHQ_NODES"]


@dataclass(frozen=True)
class Window:
    name: str
    target: float  # months
    low: float  # inclusive
    high: float  # exclusive unless closed_high
    closed_high: bool = False

    def contains(self, months: float) -> bool:
        return self.low <= months < self.high or (self.closed_high and months == self.high)


# CONTRACT.md: short = nearest 3 months within 0-<5; moderate = nearest 6 within 5-<9;
# long = nearest 12 within 9-18. Baseline (month 0) is not a follow-up.
WINDOWS = (
    Window("short", 3.0, 0.0, 5.0),
    Window("moderate", 6.0, 5.0, 9.0),
    Window("long", 12.0, 9.0, 18.0, closed_high=True),
)

# Global recovery: pain <= 10 and function <= 10 on the 0-100 scale at that window.
RECOVERY_THRESHOLD = 10.0
# Sensitivity definition of recovery: at least 30 % improvement from baseline in both.
RECOVERY_IMPROVEMENT = 0.30
# Recovery compares rescaled scores with a threshold: a score on it is on it even when floating point
# (100 * 7/24 against 0.7 * 100 * 10/24) or the 10 digits of the derived CSV files put it a few ulps
# above. Far below any real score difference.
RECOVERY_TOLERANCE = 1e-6

ARM_TYPES = ("exercise", "none_usual_care", "other_conservative")
COMPARISONS = ("none_usual_care", "other_conservative", "any_non_exercise")
OUTCOMES = ("pain", "function", "recovered")
COVARIATES = (
    "age", "female", "bmi", "heavy_work", "medication", "employed",
    "education_post_secondary", "duration_months", "pain_bl", "function_bl",
)
BINARY_COVARIATES = ("female", "heavy_work", "medication", "employed", "education_post_secondary")

# Values outside these ranges are implausible and exclude the record (with a reason).
PLAUSIBLE = {
    "age": (16.0, 100.0),
    "bmi": (12.0, 70.0),
    "height_cm": (120.0, 230.0),
    "weight_kg": (30.0, 250.0),
    "duration_months": (0.0, 600.0),
}

# Adaptive Gauss-Hermite quadrature nodes per trial in the mixed logistic models (as glmer's nAGQ).
AGHQ_NODES = 15
