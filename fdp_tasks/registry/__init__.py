"""The registry: its declared data model, the SQL store, the HTTP server and the HTTP client."""
