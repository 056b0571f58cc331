"""The seed's HTTP API (FastAPI): the same jobs, rules and handlers as Slack and the console, answered in JSON."""
