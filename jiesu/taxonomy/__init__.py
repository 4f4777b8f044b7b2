"""What requests are about and who handles them: the 3-level category taxonomy with its
七有五性 tags and default tier, the request types, the dispatch catalogue (派单目录), the city's
settings from its pack and the working-day calendar overrides."""
