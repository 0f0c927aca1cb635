"""Data distributions as pure torch: sampling and their analytic truth (posteriors, scores, covariances)."""
