"""Training objectives: language modelling / MNTP, masked auto-encoding, InfoNCE."""
