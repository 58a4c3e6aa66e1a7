"""The audit log: who changed which setting, from where, and what it was before and after (docs/audit.md)."""
