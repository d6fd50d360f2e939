"""Statistics of fault campaigns: Wilson score intervals and the statistical-fault-injection sample size.

Wilson score interval (Wilson 1927) for k "successes" (e.g. critical outcomes) in n independent Bernoulli trials,
p_hat = k / n, z = the normal quantile (1.96 for 95 %)::

    centre    = (p_hat + z^2 / (2n)) / (1 + z^2 / n)
    halfwidth = z / (1 + z^2 / n) * sqrt(p_hat (1 - p_hat) / n + z^2 / (4 n^2))
    CI        = [centre - halfwidth, centre + halfwidth]

It stays inside [0, 1] and behaves at k = 0 or k = n (where the normal "Wald" interval collapses to a point).
Campaign CIs are over (fault, input) experiments drawn uniformly; per-fault rates (a fault is critical if it is
critical on any input) use the same formula over faults.

Sample size of statistical fault injection (Leveugle et al., DATE 2009) for a population of N possible faults,
error margin e, confidence quantile t and expected proportion p (0.5 = worst case)::

    n = N / (1 + e^2 (N - 1) / (t^2 p (1 - p)))
"""
from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (lo, hi) of a proportion k/n; (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z / den * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def sample_size(population: int, margin: float = 0.01, t: float = 2.5758, p: float = 0.5) -> int:
    """Faults to inject for margin ``margin`` at confidence quantile ``t`` (2.5758 = 99 %): Leveugle 2009."""
    if population <= 0:
        return 0
    n = population / (1 + margin * margin * (population - 1) / (t * t * p * (1 - p)))
    return int(math.ceil(n))


def proportion(k: int, n: int, z: float = Z95) -> dict:
    """{"k", "n", "p", "lo", "hi"}: a proportion with its Wilson interval, JSON-ready."""
    lo, hi = wilson(k, n, z)
    return {"k": int(k), "n": int(n), "p": (k / n) if n else 0.0, "lo": lo, "hi": hi}


__all__ = ["wilson", "sample_size", "proportion", "Z95"]
