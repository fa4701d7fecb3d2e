"""Trainer, schedules, checkpoints and distributed set-up."""
