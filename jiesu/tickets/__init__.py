"""The work order (工单): tickets, their assignments to units, the append-only event timeline,
ticket numbering and intake (受理)."""
