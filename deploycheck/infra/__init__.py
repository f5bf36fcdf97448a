"""What the checks run against: database, catalog, targets, embedded server, PostgreSQL tools, services."""
