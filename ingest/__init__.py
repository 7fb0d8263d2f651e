"""Sources of interaction data that land daily partitions: a simulator and real datasets."""
