"""dt-pytorch: distributed data-parallel training with Ray Train's TorchTrainer."""
