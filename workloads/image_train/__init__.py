"""image-train: ResNet-18 on images read by Ray Data (see train.py)."""
