"""Teleconsult sessions: scheduled for a referral, joined with a signed pass, closed with an outcome.

`service` holds the database work (create, join, end, consent, recordings),
`rules` the pure rules (join window, quota effect of an outcome, quality
summaries, local slots), `router` the thin HTTP routes.
"""
