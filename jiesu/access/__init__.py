"""Who may see and do what: one policy for the API and the console (SPEC §1).

Visibility follows the org tree: a unit sees the tickets it leads or co-handles, a district sees
its streets' tickets (the unit path is a prefix of theirs), the service centre sees all. Requester
identity is masked except for the service centre and the lead unit; a confidential (保密)
requester is hidden from every unit.
"""
