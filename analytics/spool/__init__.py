"""The spool: where an acknowledged event waits, durably, for the loader.

Two implementations of one pair of protocols (:mod:`.base`): segment files on the
local disk with group commit (:mod:`.files`, read by :mod:`.reader`), and a NATS
JetStream stream (:mod:`.jetstream`) for several hosts.
"""
