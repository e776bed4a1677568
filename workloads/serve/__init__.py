"""serve: a Ray Serve HTTP application that answers predictions with the trained dt-pytorch model."""
