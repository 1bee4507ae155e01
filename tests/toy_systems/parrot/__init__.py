"""A toy system for the registry tests: one folder, one record (docs/architecture.md, "Adding a system")."""
