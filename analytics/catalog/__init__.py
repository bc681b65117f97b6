"""The event catalogue: declared tracking points, and the built-in UX monitoring events."""
