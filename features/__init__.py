"""Features: the Feast adapter (offline and online stores) and the feature computation.

The declarative Feast definitions live beside this package in ``feature_repo/``.
"""
