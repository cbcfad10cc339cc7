"""Small interval helpers shared by the analyses and the verdict (pure Python: the verdict imports them)."""
from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (a sensible interval at 0 and 1, unlike the normal one)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def chance_line(chance: float, n: int) -> float:
    """Two binomial standard errors above ``chance`` (the majority share) on ``n`` images: accuracies at or below
    it have learned nothing."""
    return chance + 2 * math.sqrt(max(chance * (1 - chance), 1e-12) / max(n, 1))


def at_chance(accuracy: float, chance: float, n: int) -> bool:
    """Whether ``accuracy`` on ``n`` images is within two binomial standard errors of always answering the most
    common class (a run that ends there did not converge; features that probe there carry no information)."""
    return accuracy <= chance_line(chance, n) + 1e-12


__all__ = ["Z95", "at_chance", "chance_line", "wilson"]
