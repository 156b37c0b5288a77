"""Code that runs inside a trial: models, data, the LoRA trainable and the MIUB metric."""
