"""Funder and project reports: where credits went, how well GPUs were used, at what energy."""
