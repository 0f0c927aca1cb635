"""LightningModules that train the networks."""
