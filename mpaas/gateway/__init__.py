"""The gateway, MGS style: signed calls to named, versioned operations, answered with result codes.

Generic core (it knows no domain): request signatures (:mod:`.signing`), app and device
keys (:mod:`.keys`), the clock window, nonces and token buckets (:mod:`.admission`,
Redis in :mod:`.redis_admission`), result codes (:mod:`.codes`) and the pipeline
(:mod:`.pipeline`). A domain plugs in its operations and sessions through the Protocols
of :mod:`.operation`. The contract for app SDKs is docs/gateway.md.
"""
