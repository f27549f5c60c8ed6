"""Shared needs of several stages, below all of them: the audit log, the gateway's hook
protocol, artifact directories and lineage, experiment tracking. Imports only ``config``."""
