"""SQLite: schema and migrations, the job store, events, outbox."""
