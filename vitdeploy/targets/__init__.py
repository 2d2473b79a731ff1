"""Export targets: each module turns a PyTorch model into a deployable artifact."""
