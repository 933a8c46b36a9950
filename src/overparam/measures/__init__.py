"""Measures: pure functions on (model, loss, data) with exact-answer tests."""
