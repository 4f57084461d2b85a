"""Optimizers (update rules) and learning-rate schedules."""
