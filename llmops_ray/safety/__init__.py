"""Safety checks shared by the data pipeline and serving: PII detection and masking (``pii``).

Other checks (prompt injection, moderation) live beside it in their own modules.
"""
