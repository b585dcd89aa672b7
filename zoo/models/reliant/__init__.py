"""RELIANT: fair knowledge distillation for GNNs (registry entries filled below)."""
ENTRIES = []
