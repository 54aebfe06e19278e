"""Shared test configuration: hypothesis profiles.

`ci` (the default) keeps the suite fast on 2 cores; `deep` (set
CATAD_HYPOTHESIS_PROFILE=deep) runs thousands of examples per property.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("CATAD_HYPOTHESIS_PROFILE", "ci"))
