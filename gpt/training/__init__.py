"""Training: the Trainer and its loop, optimizers, low-precision copies, DDP, timing a shape."""
