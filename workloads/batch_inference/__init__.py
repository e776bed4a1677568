"""batch-inference: offline predictions with Ray Data and the trained dt-pytorch model."""
