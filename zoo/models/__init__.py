"""One sub-package per method: ``model.py`` (nn.Modules), ``module.py`` (LightningModule), ``convert.py``
(official checkpoints -> zoo), and registry ``ENTRIES`` in its ``__init__.py`` (no heavy imports there)."""
