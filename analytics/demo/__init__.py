"""Demo data for analytics: a deterministic generator of a bank app's events.

``mpaas demo`` seeds the event store with it so that every report shows something on
first run: users in the four tiers, the 12 core journeys with realistic drop-off,
start-up times, crashes, ANRs and H5 performance across app versions, device models
and offline package versions, update adoption after a release, and a push campaign.
The same seed, size and anchor time give the same events, byte for byte.
"""
