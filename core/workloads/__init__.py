"""Workloads: the user-space programs whose threads drive the fault path."""
