"""Transfers: idempotency, limits by account class, clearing, step-up."""
