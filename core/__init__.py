"""Foundation beneath every layer: configuration, database plumbing, keys, clock, base errors.

Nothing in here knows about operators, contracts or jobs; every other package may import it.
"""
