"""LightningDataModules: each wraps a distribution or data source."""
