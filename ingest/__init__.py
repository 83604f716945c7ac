"""ingest: pull mail out of POP3 mailboxes and land it, exactly once, in object storage."""

__version__ = "0.1.0"
