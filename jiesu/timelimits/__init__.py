"""Time limits (时限): the official working-day calendar and deadline arithmetic. Pure."""
