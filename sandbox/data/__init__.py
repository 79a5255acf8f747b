"""The data database: the government tables, reached only through SQLAlchemy."""
