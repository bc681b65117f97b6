"""The durable delivery queue, in SQL: expansion, claiming with a lease, outcomes, sweeps.

Every function is one short transaction. Claiming uses ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL so that worker processes never wait on each other's rows; on SQLite the
``UPDATE … RETURNING`` runs under the single writer lock. A claim stamps
``claimed_by``/``lease_until`` and counts the attempt, so a worker killed mid-batch
only delays its rows until the lease ends, and a row that kills workers still runs
out of attempts. Outcomes are written only by the worker that holds the lease.

- :mod:`.tables`: the tables as SQLAlchemy Core, :func:`~.tables.execute`, failure reasons;
- :mod:`.expansion`: a due message into delivery rows, a batch of devices at a time;
- :mod:`.claims`: leasing due deliveries to a worker;
- :mod:`.retry`: the backoff policy;
- :mod:`.outcomes`: writing what the providers answered (sent, failed, retry later);
- :mod:`.sweeps`: housekeeping, expiry of overdue rows and fallbacks to the other channel.
"""
