"""Shipped evaluation protocols (``<dataset>-v<N>.yaml``) and class-name files, as package data."""
