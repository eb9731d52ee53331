import os

from hypothesis import HealthCheck, settings

# Deterministic examples: a CI run either passes or fails, it never flakes. Shapes are small, so a
# gradient check per example is cheap; no deadline because the first call of a layer warms caches.
# Derandomized examples depend on the Hypothesis version, so the test extra pins it.
QUIET = [HealthCheck.too_slow, HealthCheck.differing_executors]
settings.register_profile("minilm", max_examples=25, deadline=None, derandomize=True, suppress_health_check=QUIET)
# New examples beyond CI's: HYPOTHESIS_PROFILE=explore python -m pytest --hypothesis-seed=N (tolerances.py).
settings.register_profile("explore", max_examples=1000, deadline=None, derandomize=False, database=None,
                          suppress_health_check=QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "minilm"))
