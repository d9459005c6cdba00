"""Training: stage objectives, one trainer for every stage, checkpoints, LoRA, distribution."""
