"""Metrics as pure functions of tensors."""
