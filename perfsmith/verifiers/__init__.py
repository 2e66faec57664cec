"""Verifiers: is a candidate correct (differential testing) and is it faster (statistics)."""
