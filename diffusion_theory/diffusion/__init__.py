"""Noise schedules, samplers and the evaluation noise grid."""
