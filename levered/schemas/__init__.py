"""Wire schemas (msgspec Structs) shared by server, client, CLI and dashboard."""
