"""The web dashboard: server-rendered pages on the API's server, from the same store, handlers and tokens."""
