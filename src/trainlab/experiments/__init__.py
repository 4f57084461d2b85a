"""Studies of the seed's claims; each returns numbers, figures and verdicts."""
