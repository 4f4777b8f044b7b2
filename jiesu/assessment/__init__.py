"""Assessment (考评): the three rates and friends per unit and period, rankings, rollups."""
