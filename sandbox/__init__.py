"""The sandbox: the job engine, the HTTP API, the web console and the command line.

The top layer. It runs jobs under ``authz``'s decisions and records them through ``audit``.
"""

__version__ = "0.1.0"
