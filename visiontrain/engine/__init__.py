"""Training engine: the loop, the fit driver, optimiser/schedule, precision, checkpoints."""
