"""Reject actuators: fire(duration)."""
