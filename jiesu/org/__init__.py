"""The organisation: the unit tree (city → district → street → community → grid, departments,
companies) and the users who work in it, each with one role bound to one unit."""
