"""Risk: the decision engine (CEL rules), its decisions and their records."""
