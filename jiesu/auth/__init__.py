"""Authentication: argon2 password hashes and bearer tokens (opaque, stored hashed, revocable)."""
