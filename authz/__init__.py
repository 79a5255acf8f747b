"""Who may do what: roles, permissions, accounts, tokens, contracts, consent, quotas.

Sits on ``audit``; the sandbox layer enforces its decisions.
"""
