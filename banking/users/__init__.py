"""Users, tiers, sessions and one-time codes of the bank's open user system."""
