"""What the checks run against: database, catalog, targets, embedded server, PostgreSQL tools, the bot host
(every command bounded), the bot service (one interface: systemd, compose, the rehearsal's process)."""
