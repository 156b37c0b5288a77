"""Driver side of lorasweep: spec validation, sweep construction, result store, analysis."""
import os

# Ray picks Train V1 or V2 when ``ray.train`` is first imported (``ray.tune`` imports it), so
# the flag is set before anything imports Ray; trials get it through Ray's runtime environment.
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
