"""The loader: the single consumer of the spool and the single writer of the event store."""
