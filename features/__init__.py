"""Features: the feature tables, their Feast offline and online stores, and their readers.

* :mod:`features.tables` computes the snapshot tables (pure pandas);
* :mod:`features.snapshots` writes them to the offline store, day by day;
* :mod:`features.store` is the Feast adapter (open the store, apply ``feature_repo/``);
* :mod:`features.materialize` runs the nightly step: snapshots, apply, online load;
* :mod:`features.historical` joins point-in-time training rows;
* :mod:`features.online` is the one online reader (service and CLI);
* :mod:`features.ranker_columns` names the ranker's columns.

The declarative Feast definitions live beside this package in ``feature_repo/``.
"""
