"""The registered views: one small module per view, each defining ``VIEW``."""
