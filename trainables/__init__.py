"""Code that runs inside a trial: models, data, the LoRA trainable and the MIUB metric."""
import os

# Ray Train V2 (see orchestrator/__init__.py): for code that imports trainables first.
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
