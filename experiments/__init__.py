"""Experiment scripts (absl commands) built on the vl4pose_jax library."""
