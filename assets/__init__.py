"""MIRAGE's shipped weights and their model cards, installed as package data (see `mirage_core.config.shipped`)."""
