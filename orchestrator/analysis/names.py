"""Names the command line needs before any analysis code loads: axes, metrics, step choices.

Kept free of imports so that ``lorasweep --help`` does not pay for numpy, scipy or
matplotlib; the modules that act on these names import them from here.
"""

AXES = ("rank", "model_params", "trainable_params", "train_size", "complexity")
METRICS = ("miub", "eval_ce", "eval_ppl", "eval_acc")
STEPS = ("final", "best")
DEFAULT_FORMS = ("saturating", "power")
