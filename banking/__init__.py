"""mpaas.banking: tiered users, sessions, the operations behind the gateway, and the catalogue."""
