"""Intake intelligence: suggestions for a new ticket (category, request type, urgency, place)."""
