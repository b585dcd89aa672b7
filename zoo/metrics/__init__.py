"""Metrics shared by two or more methods (torchmetrics ``Metric`` subclasses that accumulate across batches and
processes): cross-modal retrieval (A-CLIP, SimVTP, RSFD) and 3D detection (SSDA3D, CMT, LWSIS)."""
