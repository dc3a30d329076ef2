"""Luigi tasks of podiflow."""
