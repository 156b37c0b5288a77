"""Names the command line needs before any analysis code loads: axes, metrics, step choices.

Kept free of imports so that ``lorasweep --help`` does not pay for numpy, scipy or
matplotlib; the modules that act on these names import them from here.
"""

AXES = ("rank", "model_params", "trainable_params", "train_size", "complexity", "alpha",
        "tokens_seen", "train_flops")
# Joint forms fitted over two or three axes (see joint_laws.py).
JOINT_FORMS = ("additive", "multiplicative")
METRICS = ("miub", "eval_ce", "eval_ppl", "eval_acc")
STEPS = ("final", "best")
DEFAULT_FORMS = ("saturating", "power")
