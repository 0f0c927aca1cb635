"""Networks as plain nn.Modules (no Lightning)."""
