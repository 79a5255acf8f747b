"""Services of the sandbox layer: the rules behind the views and commands."""
