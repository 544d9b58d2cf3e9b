"""People: faces grouped into persons, named once by an operator (domain layer: uses pipeline, store, matching)."""
