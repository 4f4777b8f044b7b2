"""Storage: the declarative base (`db.base`), engines and sessions for SQLite and PostgreSQL
(`db.engine`), the read replica for analysis (`db.replica`), migrations. Import from the
modules themselves: the package runs nothing, so that its modules may import one another."""
