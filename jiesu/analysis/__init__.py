"""Analysis and proactive governance (SPEC §6): early warnings, hotspots, monthly themes."""
