"""Measurement of a trial's model: latency, quality, energy and size."""
