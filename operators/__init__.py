"""The registry of licensed operators (API clients) and their credentials. Sits on ``audit``."""
