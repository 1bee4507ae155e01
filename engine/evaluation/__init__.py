"""Offline evaluation: ``memlab eval`` (scoring response files; comparing systems)."""
