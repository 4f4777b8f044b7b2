"""The city pack (城市包): a folder of plain files that describes a city (docs/citypack.md),
validated by `parse` and loaded into the database by `load`."""
