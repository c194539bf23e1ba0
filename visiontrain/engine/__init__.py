"""Training engine: the loop, the build step, optimiser and schedule, precision, checkpoints, torchrun."""
